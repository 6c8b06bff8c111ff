"""Sphinx configuration of the dlpde documentation.

Build with ``make -C docs html`` (``sphinx-build -W``: warnings are errors). The build needs no
network: MathJax is copied into the site from the ``sphinx-mathjax-offline`` package, and no
intersphinx inventories are fetched.

Generated at build time (never committed, see ``docs/.gitignore``):

- ``api/dlpde.<subpackage>.rst``: one page per subpackage listing every name of its ``__all__``
  (autosummary then writes a page per name into ``api/generated/``), so new public names appear
  without editing the docs;
- ``_generated/``: the ``dlpde`` command's help texts and the table of studies and presets;
- ``results/<thread>.md``: tables of study metrics, by ``results/make_results.py``;
- ``auto_examples/``: the gallery, executed by sphinx-gallery from ``examples/``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import io
import os
import runpy
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
os.environ.setdefault("OMP_NUM_THREADS", "1")  # the gallery's small examples gain nothing from threads
os.environ.setdefault("MPLBACKEND", "agg")

import dlpde  # noqa: E402
from dlpde._registry import public_subpackages  # noqa: E402

project = "dlpde"
author = "The dlpde developers"
copyright = "The dlpde developers"
release = dlpde.__version__
version = dlpde.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
    # Copies MathJax 3 into _static/mathjax and points mathjax_path at it: no CDN.
    "sphinx-mathjax-offline",
]

# No intersphinx: torch, numpy and scipy ship no objects.inv inside their wheels, and fetching
# inventories would need the network at build time.

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "_generated", "examples", "Thumbs.db", ".DS_Store", "results/data",
                    "**.ipynb_checkpoints"]
templates_path = ["_templates"]

myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3

# --- API reference -----------------------------------------------------------------------------


SUBPACKAGES = public_subpackages()

autosummary_generate = True
autosummary_imported_members = True
autosummary_ignore_module_all = False
autodoc_default_options = {"member-order": "bysource"}
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented_params"
autodoc_class_signature = "separated"
autodoc_inherit_docstrings = False  # torch.nn.Module's own docstrings would drown the class pages
napoleon_google_docstring = True
napoleon_numpy_docstring = True
napoleon_use_ivar = True  # attributes as fields, not as second object descriptions of dataclass fields
napoleon_use_rtype = False

suppress_warnings: list[str] = []

# --- pages and theme ---------------------------------------------------------------------------
html_theme = "furo"
html_title = f"dlpde {release}"
html_static_path = ["_static"]
html_css_files = ["dlpde.css"]
html_show_sourcelink = False
html_theme_options = {"navigation_with_keys": True}
pygments_style = "sphinx"
pygments_dark_style = "monokai"

# --- gallery -----------------------------------------------------------------------------------
THREAD_GALLERIES = ("hjb", "symmetry", "meanfield", "ntk", "inverse")

sphinx_gallery_conf = {
    "examples_dirs": "examples",
    "gallery_dirs": "auto_examples",
    "subsection_order": [f"examples/{t}" for t in THREAD_GALLERIES],
    "within_subsection_order": "FileNameSortKey",
    "filename_pattern": r"/plot_",
    "image_scrapers": ("matplotlib",),
    "reset_modules": ("matplotlib",),
    "remove_config_comments": True,
    "download_all_examples": False,
    "show_memory": False,
    "min_reported_time": 1,
    "write_computation_times": True,
    "matplotlib_animations": False,
    # DLPDE_DOCS_GALLERY=0 skips running the examples (a quick build while editing pages).
    "plot_gallery": "False" if os.environ.get("DLPDE_DOCS_GALLERY") == "0" else "True",
    "capture_repr": (),
}


# --- generated sources -------------------------------------------------------------------------
def _kind(obj) -> str:
    import inspect

    if inspect.ismodule(obj):
        return "Modules"
    if inspect.isclass(obj):
        if issubclass(obj, BaseException):
            return "Exceptions"
        return "Classes"
    if callable(obj):
        return "Functions"
    return "Constants and data"


KIND_ORDER = ("Classes", "Functions", "Exceptions", "Modules", "Constants and data")


def write_api_pages(out: Path) -> None:
    """``api/dlpde.<sub>.rst``: the subpackage docstring and an autosummary of its ``__all__``."""
    for name in SUBPACKAGES:
        module = importlib.import_module(name)
        groups: dict[str, list[str]] = {}
        for public in module.__all__:
            groups.setdefault(_kind(getattr(module, public)), []).append(public)
        lines = [name, "=" * len(name), "", f".. automodule:: {name}", "", f".. currentmodule:: {name}", ""]
        for kind in KIND_ORDER:
            if kind not in groups:
                continue
            lines += [kind, "-" * len(kind), "", ".. autosummary::", "   :toctree: generated",
                      "   :nosignatures:", ""]
            lines += [f"   {public}" for public in groups[kind]]
            lines.append("")
        _write_if_changed(out / f"{name}.rst", "\n".join(lines))


def write_cli_help(out: Path) -> None:
    """The ``dlpde`` command's ``--help`` for each subcommand, captured from its own parser."""
    from dlpde.cli import main

    out.mkdir(parents=True, exist_ok=True)
    for command in ("", "list", "run", "sweep", "sweep-plot", "cite", "tour", "denoise"):
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer), contextlib.suppress(SystemExit):
            main([command, "--help"] if command else ["--help"])
        text = buffer.getvalue().replace(os.path.basename(sys.argv[0]), "dlpde", 1)
        _write_if_changed(out / f"cli_{command or 'dlpde'}.txt", text)


def _short(value) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(_short(v) for v in value) if len(value) <= 8 else f"{len(value)} values"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def write_studies_table(out: Path) -> None:
    """A section per study: description, citations and the fields in which the presets differ."""
    from dlpde._registry import discover_studies

    lines = []
    for name, study in discover_studies().items():
        lines += [f"### `{name}`", "", study.description.replace("|", "\\|"), ""]
        if study.in_tour:
            lines += ["Runs in `dlpde tour` (quick preset).", ""]
        presets = {p: dataclasses.asdict(c) for p, c in study.presets.items()}
        keys = [f.name for f in dataclasses.fields(study.config)
                if len({repr(cfg.get(f.name)) for cfg in presets.values()}) > 1]
        if keys:
            lines += ["| field | " + " | ".join(presets) + " |", "|---" * (len(presets) + 1) + "|"]
            for key in keys:
                cells = [_short(presets[p][key]).replace("|", "\\|") for p in presets]
                lines.append(f"| `{key}` | " + " | ".join(cells) + " |")
            lines.append("")
        if study.citations:
            lines += ["Cites: " + ", ".join(f"`{c}`" for c in study.citations) + f" (`dlpde cite {name}`).",
                      ""]
    _write_if_changed(out / "studies_table.md", "\n".join(lines))


def _write_if_changed(path: Path, text: str) -> None:
    """Rewriting an unchanged file would make Sphinx re-read it on every incremental build."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


write_api_pages(HERE / "api")
write_cli_help(HERE / "_generated")
write_studies_table(HERE / "_generated")
runpy.run_path(str(HERE / "results" / "make_results.py"))["main"]([])


# --- docstrings written as plain-text mathematics ----------------------------------------------
# The house style writes equations in docstrings as plain text (``|x|``, ``a * b``, ``|p|^2/2``).
# reStructuredText reads ``|x|`` as a substitution and a lone ``*`` as the start of emphasis, so
# with -W those docstrings would fail the build. Before napoleon parses a docstring, this escapes
# ``|`` and every ``*`` that is not part of well-formed emphasis, outside literals, roles, literal
# blocks, doctests and directives. Nothing else is changed or suppressed.
import re  # noqa: E402

_KEEP = re.compile(
    r"``.+?``"  # inline literal
    r"|(?::[\w:.+-]+:)?`[^`]+`_{0,2}"  # interpreted text, roles, references
    r"|(?:(?<=^)|(?<=[\s'\"(\[{<\-/:]))(\*\*?)(?=\S)[^*]*?\S\1(?=$|[\s'\")\]}>\-/:.,;!?\\])"  # emphasis
)


def escape_plain_math(line: str) -> str:
    out, last = [], 0
    for match in _KEEP.finditer(line):
        out.append(re.sub(r"(?<!\\)([|*])", r"\\\1", line[last:match.start()]))
        kept = match.group(0)
        if kept.startswith("``"):
            # autosummary cuts the summary at ". ": a period inside a literal (``P . f``) would cut it
            # mid-literal. A no-break space keeps the sentence whole and looks the same.
            kept = kept.replace(". ", ".\u00a0")
        out.append(kept)
        last = match.end()
    out.append(re.sub(r"(?<!\\)([|*])", r"\\\1", line[last:]))
    return "".join(out)


_SECTION_NAMES = ("Args|Arguments|Attributes|Example|Examples|Keyword Args|Keyword Arguments|Methods|Note|"
                  "Notes|Other Parameters|Parameters|Return|Returns|Raises|References|See Also|Todo|"
                  "Warning|Warnings|Warns|Yield|Yields")
_SECTION = re.compile(rf"^\s*({_SECTION_NAMES})\s*:\s*$")
_BULLET = re.compile(r"^(\s*)([-*+]|\d+[.)])\s+")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _fix_layout(lines: list[str]) -> list[str]:
    """Blank lines where plain-text docstrings change indentation inside a paragraph.

    Plain text often starts a bullet list right under a sentence (``Methods:`` then ``- ...``) or
    indents a continuation; reStructuredText needs a blank line there (otherwise "Unexpected
    indentation"). Inside Google-style sections (napoleon parses those) and literal blocks
    nothing is touched."""
    out: list[str] = []
    section = verbatim = None  # indentation of the current section header / literal-block opener
    list_text = None  # text offset of the current bullet item
    for line in lines:
        if not line.strip():
            out.append(line)
            continue
        indent = _indent(line)
        previous = out[-1] if out else ""
        if verbatim is not None and indent > verbatim:
            out.append(line)
            continue
        verbatim = None
        if section is not None and indent > section:
            out.append(line)
            continue
        section = None
        bullet = _BULLET.match(line)
        if previous.strip() and not previous.rstrip().endswith("::"):
            if bullet and list_text is None:
                out.append("")  # a list right under a paragraph
            elif not bullet and list_text is not None and indent < list_text:
                out.append("")  # a paragraph right after a list
                list_text = None
            elif list_text is None and indent != _indent(previous):
                out.append("")  # a block quote in or after a paragraph
        elif not previous.strip() and not bullet and list_text is not None and indent < list_text:
            list_text = None
        if bullet:
            list_text = bullet.end()
        if _SECTION.match(line):
            section, list_text = indent, None
        if line.rstrip().endswith("::") or line.lstrip().startswith(".. "):
            verbatim = indent
        out.append(line)
    return out


def _escape_docstring(lines: list[str]) -> list[str]:
    result, verbatim_indent = [], None
    for line in lines:
        stripped = line.lstrip()
        indent = len(line) - len(stripped)
        if verbatim_indent is not None:
            if not stripped or indent > verbatim_indent:
                result.append(line)
                continue
            verbatim_indent = None
        if stripped.startswith((">>>", "... ")) or stripped == "...":
            result.append(line)
            continue
        if stripped.startswith(".. "):
            verbatim_indent = indent
            result.append(line)
            continue
        result.append(escape_plain_math(line))
        if stripped.endswith("::"):
            verbatim_indent = indent
    return result


def _process_docstring(app, what, name, obj, options, lines):
    import inspect

    if what in ("data", "attribute") and not inspect.isclass(obj) and not callable(obj):
        # A module-level constant (a dict of integrators, of PES systems) has no docstring of its own:
        # autodoc would show its type's (dict's), which is not about it.
        own = inspect.getdoc(type(obj)) or ""
        if own and "\n".join(lines).strip() == own.strip():
            keys = list(obj) if isinstance(obj, dict) else []
            lines[:] = [f"A ``{type(obj).__name__}``" + (" with keys " + ", ".join(f"``{k!s}``" for k in keys)
                                                         if keys else "") + "."]
            return
    lines[:] = _escape_docstring(_fix_layout(lines))


def setup(app):
    # Priority 400: before napoleon (500) turns Google/NumPy sections into fields.
    app.connect("autodoc-process-docstring", _process_docstring, priority=400)
