import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import dlpde
from dlpde.shared.citations import bibliography, cite
from dlpde.shared.runs import RunDir, atomic_write_text, to_jsonable

ROOT = Path(__file__).resolve().parents[2]


def test_atomic_write_leaves_no_temp_files(tmp_path):
    target = tmp_path / "a" / "b.txt"
    atomic_write_text("hello", target)
    atomic_write_text("world", target)
    assert target.read_text() == "world"
    assert [p.name for p in target.parent.iterdir()] == ["b.txt"]


def test_atomic_write_gives_the_permissions_of_an_ordinary_file(tmp_path):
    import os

    plain = tmp_path / "plain.txt"
    plain.write_text("x")  # what open() gives under the current umask
    target = tmp_path / "atomic.txt"
    atomic_write_text("x", target)
    assert os.stat(target).st_mode & 0o777 == os.stat(plain).st_mode & 0o777


def test_to_jsonable():
    value = to_jsonable({"t": torch.tensor([1.0, float("nan")]), "n": np.float32(2.5), "i": np.int64(3),
                         "tuple": (1, 2), "p": Path("/x"), "inf": float("inf")})
    assert value == {"t": [1.0, "nan"], "n": 2.5, "i": 3, "tuple": [1, 2], "p": "/x", "inf": "inf"}
    json.dumps(value)


def test_run_dir_files_and_map_resume(tmp_path):
    run = RunDir(tmp_path / "run")
    run.write_csv("h.csv", [{"a": 1, "b": 2.0}, {"a": 2, "c": "x"}])
    assert run.path.joinpath("h.csv").read_text().splitlines()[0] == "a,b,c"
    run.save_arrays("arr", x=torch.arange(3), y=np.ones(2))
    assert np.load(run.path / "arr.npz")["x"].tolist() == [0, 1, 2]
    assert run.map(math.sqrt, [4.0, 9.0]) == [2.0, 3.0]
    calls = []
    resumed = RunDir(tmp_path / "run", resume=True)
    assert resumed.cached("k", lambda: calls.append(1) or 5) == 5
    assert resumed.cached("k", lambda: calls.append(1) or 6) == 5 and len(calls) == 1
    # finished tasks are not recomputed on resume
    assert resumed.map(math.floor, [4.0, 9.0]) == [2.0, 3.0]
    with pytest.raises(ValueError, match="keys"):
        run.map(math.sqrt, [1.0, 2.0], keys=["a", "a"])


def test_figures_png_and_pdf_without_pyplot(tmp_path):
    code = ("import sys; from dlpde.shared.plotting import new_figure, save_figure; "
            "fig, ax = new_figure(); ax.plot([0, 1]); "
            f"paths = save_figure(fig, r'{tmp_path}/fig'); "
            "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'; print(paths)")
    subprocess.run([sys.executable, "-c", code], check=True)
    assert (tmp_path / "fig.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "fig.pdf").read_bytes()[:4] == b"%PDF"


def test_citations():
    entries = bibliography()
    assert len(entries) >= 50
    text = cite("jacot2018ntk", "chizat2019lazy", "jacot2018ntk")
    keys = re.findall(r"@\w+\{([^,]+),", text)
    assert keys == ["dlpde", "jacot2018ntk", "chizat2019lazy"]
    for key, entry in entries.items():
        assert entry.count("{") == entry.count("}"), key
        assert re.search(r"\b(title)\s*=", entry), key
    with pytest.raises(ValueError, match="unknown citation keys"):
        cite("nobody2099")


def test_citation_cff_version_matches_package():
    cff = (ROOT / "CITATION.cff").read_text()
    version = re.search(r"^version:\s*(\S+)", cff, re.M).group(1)
    assert version == dlpde.__version__
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^version = "([^"]+)"', pyproject, re.M).group(1) == dlpde.__version__
