"""The rule of the house that keeps the architecture a star around ``dlpde.shared``: a thread
imports from ``dlpde.shared`` and from nothing else of dlpde (DESIGN.md). Checked on the source
of every module, lazy imports inside functions included."""

from __future__ import annotations

import ast
from pathlib import Path

import dlpde
from dlpde._registry import THREADS

ROOT = Path(dlpde.__file__).parent


def _imported_dlpde_modules(path: Path) -> set[str]:
    """Absolute names of the dlpde modules that ``path`` imports (relative imports resolved)."""
    package = ".".join(("dlpde", *path.relative_to(ROOT).with_suffix("").parts))
    if path.name != "__init__.py":
        package = package.rsplit(".", 1)[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names if a.name.split(".")[0] == "dlpde")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if module.split(".")[0] == "dlpde":
                names.add(module)
    return names


def test_threads_import_only_shared_and_themselves():
    offences = []
    for thread in THREADS:
        for path in sorted((ROOT / thread).rglob("*.py")):
            for module in _imported_dlpde_modules(path):
                parts = module.split(".")
                if len(parts) == 1 or parts[1] in (thread, "shared"):
                    continue
                offences.append(f"{path.relative_to(ROOT)} imports {module}")
    assert not offences, "threads must not import each other (move the shared piece to dlpde.shared):\n" + \
        "\n".join(offences)


def test_shared_imports_no_thread():
    offences = [f"{path.relative_to(ROOT)} imports {module}"
                for path in sorted((ROOT / "shared").rglob("*.py"))
                for module in _imported_dlpde_modules(path)
                if len(module.split(".")) > 1 and module.split(".")[1] in THREADS]
    assert not offences, "\n".join(offences)
