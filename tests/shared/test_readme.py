"""The README's studies table lists exactly the studies `dlpde list` discovers."""

import re
from pathlib import Path

from dlpde._registry import discover_studies

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_studies_table_lists_every_study():
    text = README.read_text()
    table = re.search(r"<!-- studies-table -->\n(.*?)<!-- /studies-table -->", text, flags=re.S)
    assert table is not None, "README.md lacks the studies-table markers"
    rows = [line for line in table.group(1).splitlines() if line.startswith("| `")]
    listed = {re.match(r"\| `([^`]+)`", line).group(1) for line in rows}
    assert listed == set(discover_studies()), listed ^ set(discover_studies())
    for line in rows:  # three cells each: an unescaped | in a description would split a cell
        assert len(re.split(r"(?<!\\)\|", line)) == 5, line
