"""Reports of runs and of the tour: one document model rendered as Markdown and as self-contained HTML.

A document is a list of blocks (``Heading``, ``Text`` (a Markdown fragment), ``Table``, ``Figure``,
``Details``, ``Cards``). ``to_markdown`` and ``to_html`` render the same blocks, so ``report.md``
and ``report.html`` say the same thing; the HTML embeds every figure as a data URI and carries
its own CSS (no fonts, scripts or style sheets from elsewhere: it opens offline).

A study may declare ``headline=`` (see ``Study``): a function of its metrics returning a dict

- ``sentence``: one sentence of what the study shows;
- ``numbers``: a list of ``number(label, value, unit, target, passed)`` (the headline numbers
  against the exact answer or a peer, with the target and whether it is met: True, False or
  None when not judged);
- ``expectation``: what the tour's (quick) preset is expected to show;
- ``full``: the full preset's measured numbers, quoted beside;
- ``figure``: the file name of the main figure.

Headline functions read metrics through ``metric(metrics, "d1", "dgm", "u_near")``, which returns
None (shown as "n/a") for a missing or non-numeric key, so a renamed metric never breaks a report.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["metric", "number", "below", "above", "within", "format_number", "headline_of",
           "card_mark", "study_blocks", "to_markdown", "to_html", "anchor", "html_page",
           "Heading", "Text", "Table", "Figure", "Details", "Cards", "Card"]


# ----------------------------------------------------------------------------------------------
# helpers for headline functions


def metric(metrics, *path):
    """The number at ``metrics[path[0]][path[1]]...`` (nested dicts or dotted flat keys), else None.

    Booleans, strings such as ``"nan"``, non-finite values and missing keys give None.
    """
    value = metrics
    keys = [str(k) for k in path]
    while keys:
        if not isinstance(value, Mapping):
            return None
        for size in range(len(keys), 0, -1):  # longest dotted key first: {"a.b": 1} or {"a": {"b": 1}}
            joined = ".".join(keys[:size])
            if joined in value:
                value, keys = value[joined], keys[size:]
                break
        else:
            return None
    if isinstance(value, bool):
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def number(label: str, value, unit: str = "", target: str = "", passed: bool | None = None) -> dict:
    """One headline number: ``value`` (None: n/a) in ``unit`` against ``target`` (text)."""
    return {"label": str(label), "value": value, "unit": str(unit), "target": str(target),
            "passed": passed if isinstance(passed, bool) else None}


def below(value, bound) -> bool | None:
    """``value < bound``, or None when either is missing."""
    return None if value is None or bound is None else bool(value < bound)


def above(value, bound) -> bool | None:
    """``value > bound``, or None when either is missing."""
    return None if value is None or bound is None else bool(value > bound)


def within(value, centre, tolerance) -> bool | None:
    """``|value - centre| <= tolerance``, or None when the value is missing."""
    return None if value is None else bool(abs(value - centre) <= tolerance)


# ----------------------------------------------------------------------------------------------
# numbers


def format_number(value, digits: int = 3) -> str:
    """A number rounded to ``digits`` significant digits for a reader (1.23e-4, 0.0123, 12.3, 1853)."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    try:
        value = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(value):
        return "n/a"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if value == 0:
        return "0"
    size = abs(value)
    if 1e3 <= size < 1e6:
        return f"{value:.0f}"
    if 1e-3 <= size < 1e3:
        return f"{value:.{digits}g}"
    mantissa, exponent = f"{value:.{digits - 1}e}".split("e")
    mantissa = mantissa.rstrip("0").rstrip(".") if "." in mantissa else mantissa
    return f"{mantissa}e{int(exponent)}"


def _format_value(value, digits: int = 3) -> str:
    if isinstance(value, (list, tuple)):
        shown = ", ".join(_format_value(v, digits) for v in value[:8])
        return f"[{shown}{', ...' if len(value) > 8 else ''}]"
    if isinstance(value, (int, float)) or value is None:
        return format_number(value, digits)
    if isinstance(value, str) and value in ("nan", "inf", "-inf"):
        return "n/a" if value == "nan" else value
    return str(value)


# ----------------------------------------------------------------------------------------------
# the document model


@dataclasses.dataclass
class Heading:
    level: int
    text: str
    anchor: str | None = None


@dataclasses.dataclass
class Text:
    """A Markdown fragment: paragraphs, pipe tables, lists, **bold**, *italic*, `code`, [links](#a)."""

    markdown: str


@dataclasses.dataclass
class Table:
    header: Sequence[str]
    rows: Sequence[Sequence[str]]


@dataclasses.dataclass
class Figure:
    path: str  # relative to the document's folder
    caption: str = ""


@dataclasses.dataclass
class Details:
    summary: str
    blocks: list


@dataclasses.dataclass
class Card:
    title: str
    anchor: str
    mark: str  # "pass", "behind", "n/a" or "failed"
    sentence: str
    numbers: list
    expectation: str = ""
    full: str = ""
    figure: str | None = None  # relative to the document's folder
    footer: str = ""


@dataclasses.dataclass
class Cards:
    cards: list


def anchor(name: str) -> str:
    """The HTML id of a study's section: ``hjb.crossing`` -> ``hjb-crossing``."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


# ----------------------------------------------------------------------------------------------
# headlines


def headline_of(study, metrics: Mapping) -> dict:
    """The study's headline (normalised), or a fallback from its description; never raises."""
    fallback = {"sentence": study.description, "numbers": [], "expectation": "", "full": "",
                "figure": None, "note": ""}
    function = getattr(study, "headline", None)
    if function is None:
        return fallback
    try:
        raw = function(metrics)
        if not isinstance(raw, Mapping):
            raise TypeError(f"returned {type(raw).__name__}, expected a dict")
        numbers = []
        for item in raw.get("numbers") or ():
            if isinstance(item, Mapping):
                value = item.get("value")
                value = value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
                numbers.append(number(item.get("label", ""), value, item.get("unit", ""),
                                      item.get("target", ""), item.get("passed")))
        figure = raw.get("figure")
        return {"sentence": str(raw.get("sentence") or study.description), "numbers": numbers,
                "expectation": str(raw.get("expectation") or ""), "full": str(raw.get("full") or ""),
                "figure": str(figure) if figure else None, "note": ""}
    except Exception as error:  # a report must not fail because a metric was renamed
        return {**fallback, "note": f"headline unavailable ({type(error).__name__}: {error})"}


def card_mark(numbers: Sequence[Mapping]) -> str:
    """``behind`` if a judged number misses its target, ``pass`` if all judged ones meet it, else ``n/a``."""
    judged = [n["passed"] for n in numbers if n.get("passed") is not None]
    if not judged:
        return "n/a"
    return "pass" if all(judged) else "behind"


def _numbers_table(numbers: Sequence[Mapping]) -> Table:
    rows = []
    for n in numbers:
        value = format_number(n["value"])
        if n["value"] is not None and n["unit"]:
            value += f" {n['unit']}"
        mark = {True: "pass", False: "behind", None: ""}[n["passed"]]
        rows.append([n["label"], value, n["target"] or "", mark])
    return Table(["quantity", "value", "target", "mark"], rows)


def _main_figure(headline: Mapping, figures: Sequence[tuple[str, str]]) -> str | None:
    names = [name for name, _ in figures]
    if headline.get("figure"):
        wanted = headline["figure"]
        for name in names:
            if name == wanted or Path(name).stem == Path(wanted).stem:
                return name
    return names[0] if names else None


def study_card(study, metrics: Mapping, figures: Sequence[tuple[str, str]], prefix: str = "") -> Card:
    """The summary card of one study (figure path prefixed with ``prefix``, e.g. its folder)."""
    headline = headline_of(study, metrics)
    figure = _main_figure(headline, figures)
    sentence = headline["sentence"] + (f" ({headline['note']})" if headline["note"] else "")
    return Card(study.name, anchor(study.name), card_mark(headline["numbers"]), sentence,
                headline["numbers"], headline["expectation"], headline["full"],
                prefix + figure if figure else None)


def _bibliography_line(key: str) -> str:
    from .citations import bibliography

    entry = bibliography().get(key, "")

    def field(name):
        match = re.search(rf"\b{name}\s*=\s*", entry)
        if not match:
            return ""
        rest, depth, out = entry[match.end():], 0, []
        if rest[:1] == '"':
            end = rest.find('"', 1)
            return rest[1:end] if end > 0 else ""
        for ch in rest:
            if ch == "{":
                depth += 1
                if depth == 1:
                    continue
            elif ch == "}":
                depth -= 1
                if depth == 0:
                    break
            elif depth == 0 and ch in ",\n":
                break
            out.append(ch)
        text = "".join(out)
        text = re.sub(r"\\['`^\"~]\{?(\w)\}?", r"\1", text)  # accents: {\'e} -> e
        return " ".join(text.replace("{", "").replace("}", "").split())

    corporate = re.search(r"\bauthor\s*=\s*\{\{", entry) is not None  # author = {{The dlpde developers}}
    names = field("author")
    authors = [names] if corporate else [a.strip() for a in names.split(" and ") if a.strip()]
    surnames = authors if corporate else [a.split(",")[0].strip() if "," in a else a.split()[-1]
                                          for a in authors]
    who = (surnames[0] + (" et al." if len(surnames) > 2 else f" and {surnames[1]}" if len(surnames) == 2
                          else "")) if surnames else key
    title, year = field("title"), field("year")
    return f"{who} ({year}). {title}. [`{key}`]" if title else f"`{key}`"


def study_blocks(study, config: Mapping, metrics: Mapping, sections: Sequence[tuple[str, str]],
                 figures: Sequence[tuple[str, str]], seconds: float | None, folder: str, level: int = 1,
                 prefix: str = "", preset: str | None = None) -> list:
    """One study's report in reader order: finding, figures, result tables, then configuration and
    all metrics folded, references last. ``level`` is the level of the study's heading; figure
    paths are prefixed with ``prefix`` (the study's folder, seen from the document)."""
    from .studies import flatten_metrics

    headline = headline_of(study, metrics)
    blocks: list = [Heading(level, study.name, anchor(study.name)), Text(study.description)]
    if getattr(study, "headline", None) is not None:
        finding = f"**Finding.** {headline['sentence']}"
        if headline["note"]:
            finding += f" ({headline['note']})"
        blocks.append(Text(finding))
    if headline["numbers"]:
        blocks.append(_numbers_table(headline["numbers"]))
    notes = []
    if headline["expectation"]:
        notes.append(f"- **Expected at the quick preset:** {headline['expectation']}")
    if headline["full"]:
        notes.append(f"- **Full preset, measured:** {headline['full']}")
    if notes:
        blocks.append(Text("\n".join(notes)))
    main = _main_figure(headline, figures)
    ordered = sorted(figures, key=lambda f: f[0] != main)
    for name, caption in ordered:
        blocks.append(Figure(prefix + name, caption))
    for title, body in sections:
        blocks.append(Heading(level + 1, title))
        blocks.append(Text(_tidy_exponents(_shift_headings(body.strip(), level + 1))))
    config_rows = [[k, _format_value(v, 6)] for k, v in config.items()]
    metric_rows = [[k, _format_value(v)] for k, v in flatten_metrics(metrics).items()]
    run_line = []
    if preset:
        run_line.append(f"preset {preset}")
    if seconds is not None:
        run_line.append(f"run time {seconds:.1f} s")
    run_line.append(f"folder `{folder}`")
    blocks.append(Details("Configuration and run", [Text(", ".join(run_line).capitalize() + "."),
                                                    Table(["key", "value"], config_rows)]))
    blocks.append(Details(f"All metrics ({len(metric_rows)})", [Table(["metric", "value"], metric_rows)]))
    keys = ["dlpde", *study.citations]
    blocks.append(Text("**References** (BibTeX in `references.bib`):\n\n"
                       + "\n".join(f"- {_bibliography_line(k)}" for k in keys)))
    return blocks


def _tidy_exponents(markdown: str) -> str:
    """``4.59e+00`` -> ``4.59``, ``1.61e-02`` -> ``1.61e-2`` in the tables studies write."""
    def tidy(match):
        exponent = int(match.group(2))
        return match.group(1) + (f"e{exponent}" if exponent else "")
    return re.sub(r"(?<![\w.])(\d\.\d+)e([+-]\d{2,3})(?![\w.])", tidy, markdown)


def _shift_headings(markdown: str, level: int) -> str:
    """Headings inside a study's own section sit below the section's heading."""
    return re.sub(r"^(#+) ", lambda m: "#" * min(6, level + len(m.group(1))) + " ", markdown, flags=re.M)


# ----------------------------------------------------------------------------------------------
# Markdown


def _md_cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _md_table(table: Table) -> list[str]:
    lines = ["| " + " | ".join(_md_cell(h) for h in table.header) + " |",
             "|" + "---|" * len(table.header)]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in table.rows]
    return lines


_MARK_TEXT = {"pass": "PASS", "behind": "BEHIND", "n/a": "not judged", "failed": "FAILED"}


def to_markdown(blocks: Sequence) -> str:
    """The blocks as GitHub-flavoured Markdown (``<details>`` for folded parts, anchors as ``<a id>``)."""
    lines: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            if block.anchor:
                lines += [f'<a id="{block.anchor}"></a>', ""]
            lines += ["#" * block.level + " " + block.text, ""]
        elif isinstance(block, Text):
            lines += [block.markdown.strip(), ""]
        elif isinstance(block, Table):
            lines += _md_table(block) + [""]
        elif isinstance(block, Figure):
            lines += [f"![{block.caption or Path(block.path).stem}]({block.path})", ""]
            if block.caption:
                lines += [f"*{block.caption}*", ""]
        elif isinstance(block, Details):
            lines += [f"<details><summary>{html.escape(block.summary)}</summary>", ""]
            lines += [to_markdown(block.blocks).rstrip(), "", "</details>", ""]
        elif isinstance(block, Cards):
            for card in block.cards:
                lines += [f"**[{card.title}](#{card.anchor})**: {_MARK_TEXT.get(card.mark, card.mark)}. "
                          f"{card.sentence}", ""]
                if card.numbers:
                    lines += _md_table(_numbers_table(card.numbers)) + [""]
                if card.expectation:
                    lines += [f"Expected at the quick preset: {card.expectation}", ""]
                if card.full:
                    lines += [f"Full preset, measured: {card.full}", ""]
                if card.figure:
                    lines += [f"![main figure of {card.title}]({card.figure})", ""]
                if card.footer:
                    lines += [f"*{card.footer}*", ""]
        else:
            raise TypeError(f"unknown report block {type(block).__name__}")
    return "\n".join(lines).rstrip() + "\n"


# ----------------------------------------------------------------------------------------------
# HTML


def _inline(text: str) -> str:
    """Escape, then the inline Markdown our reports use: `code`, **bold**, *italic*, [text](link)."""
    parts = re.split(r"(`[^`]*`)", str(text))
    out = []
    for part in parts:
        if len(part) >= 2 and part.startswith("`") and part.endswith("`"):
            out.append(f"<code>{html.escape(part[1:-1])}</code>")
            continue
        part = html.escape(part, quote=False)
        part = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", part)
        part = re.sub(r"(?<![\w*])\*(?![\s*])(.+?)(?<![\s*])\*(?![\w*])", r"<em>\1</em>", part)
        part = re.sub(r"\[([^\]]+)\]\((#[\w-]+|https?://[^)\s]+)\)",
                      lambda m: f'<a href="{html.escape(m.group(2))}">{m.group(1)}</a>', part)
        out.append(part)
    return "".join(out)


def _image(path: Path, alt: str, css: str = "") -> str:
    alt = html.escape(alt)
    if not path.is_file():
        return f'<p class="missing">figure not found: {html.escape(path.name)}</p>'
    kind = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".gif": "gif"}.get(path.suffix.lower())
    if kind is None:
        return f'<p class="missing">figure not embeddable: {html.escape(path.name)}</p>'
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img{css} alt="{alt}" src="data:image/{kind};base64,{data}">'


def _is_number(cell: str) -> bool:
    return bool(re.fullmatch(r"[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?( \S+)?", cell.strip()))


def _html_table(header: Sequence[str], rows: Sequence[Sequence[str]], raw: bool = False) -> str:
    cell = (lambda c: _inline(c)) if raw else (lambda c: html.escape(str(c)))
    out = ["<table>"]
    if header:
        out.append("<thead><tr>" + "".join(f"<th>{cell(h)}</th>" for h in header) + "</tr></thead>")
    out.append("<tbody>")
    for row in rows:
        out.append("<tr>" + "".join(
            f'<td class="num">{cell(c)}</td>' if _is_number(str(c)) else
            f'<td class="{c}">{cell(c)}</td>' if c in ("pass", "behind") else f"<td>{cell(c)}</td>"
            for c in row) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def markdown_to_html(markdown: str, folder: Path) -> str:
    """A Markdown fragment (the subset studies write) to HTML; images embedded from ``folder``."""
    lines = markdown.splitlines()
    out, i = [], 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if not stripped:
            i += 1
            continue
        image = re.fullmatch(r"!\[(.*)\]\((.+)\)", stripped)
        if image:
            out.append(f"<figure>{_image(folder / image.group(2), image.group(1))}</figure>")
            i += 1
            continue
        heading = re.match(r"(#{1,6}) (.*)", stripped)
        if heading:
            level = len(heading.group(1))
            out.append(f"<h{level}>{_inline(heading.group(2))}</h{level}>")
            i += 1
            continue
        if stripped.startswith("|"):
            rows = []
            while i < len(lines) and lines[i].strip().startswith("|"):
                body = lines[i].strip().strip("|")
                rows.append([c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", body)])
                i += 1
            if len(rows) >= 2 and all(set(c) <= set("-: ") and c for c in rows[1]):
                out.append(_html_table(rows[0], rows[2:], raw=True))
            else:
                out.append(_html_table([], rows, raw=True))
            continue
        if re.match(r"[-*] ", stripped):
            items = []
            while i < len(lines) and re.match(r"\s*[-*] ", lines[i]):
                items.append(re.sub(r"^\s*[-*] ", "", lines[i]))
                i += 1
                while i < len(lines) and lines[i].startswith("  ") and lines[i].strip() \
                        and not re.match(r"\s*[-*] ", lines[i]):
                    items[-1] += " " + lines[i].strip()
                    i += 1
            out.append("<ul>" + "".join(f"<li>{_inline(t)}</li>" for t in items) + "</ul>")
            continue
        paragraph = []
        while i < len(lines) and lines[i].strip() and not lines[i].strip().startswith(("|", "#", "![")) \
                and not (paragraph and re.match(r"[-*] ", lines[i].strip())):
            paragraph.append(lines[i].strip())
            i += 1
        out.append(f"<p>{_inline(' '.join(paragraph))}</p>")
    return "\n".join(out)


def _html_card(card: Card, folder: Path) -> str:
    label = _MARK_TEXT.get(card.mark, card.mark)
    parts = [f'<article class="card" id="card-{card.anchor}">',
             f'<div class="card-title"><a href="#{card.anchor}">{html.escape(card.title)}</a>'
             f'<span class="mark {anchor(card.mark)}">{html.escape(label)}</span></div>',
             f"<p>{_inline(card.sentence)}</p>"]
    if card.numbers:
        table = _numbers_table(card.numbers)
        parts.append(_html_table(table.header, table.rows).replace("<table>", '<table class="numbers">', 1))
    if card.expectation:
        parts.append(f'<p class="small"><strong>Expected (quick):</strong> {_inline(card.expectation)}</p>')
    if card.full:
        parts.append(f'<p class="small"><strong>Full preset:</strong> {_inline(card.full)}</p>')
    if card.figure:
        parts.append(f'<a class="thumb" href="#{card.anchor}">'
                     f"{_image(folder / card.figure, f'main figure of {card.title}')}</a>")
    footer = f"{html.escape(card.footer)} &middot; " if card.footer else ""
    parts.append(f'<p class="small">{footer}<a href="#{card.anchor}">Full section &darr;</a></p></article>')
    return "\n".join(parts)


def to_html(blocks: Sequence, folder: str | Path) -> str:
    """The blocks as an HTML fragment; figures (paths relative to ``folder``) embedded as data URIs."""
    folder = Path(folder)
    out = []
    for block in blocks:
        if isinstance(block, Heading):
            ident = f' id="{block.anchor}"' if block.anchor else ""
            out.append(f"<h{block.level}{ident}>{html.escape(block.text)}</h{block.level}>")
        elif isinstance(block, Text):
            out.append(markdown_to_html(block.markdown, folder))
        elif isinstance(block, Table):
            out.append(_html_table(block.header, block.rows))
        elif isinstance(block, Figure):
            caption = f"<figcaption>{_inline(block.caption)}</figcaption>" if block.caption else ""
            out.append(f"<figure>{_image(folder / block.path, block.caption or Path(block.path).stem)}"
                       f"{caption}</figure>")
        elif isinstance(block, Details):
            out.append(f"<details><summary>{html.escape(block.summary)}</summary>\n"
                       f"{to_html(block.blocks, folder)}\n</details>")
        elif isinstance(block, Cards):
            out.append('<div class="cards">\n' + "\n".join(_html_card(c, folder) for c in block.cards)
                       + "\n</div>")
        else:
            raise TypeError(f"unknown report block {type(block).__name__}")
    return "\n".join(out)


_CSS = """
:root{--fg:#1b1f24;--muted:#57606a;--line:#d0d7de;--bg:#f6f8fa;--pass:#1a7f37;--behind:#bc4c00;
--na:#6e7781;--failed:#cf222e}
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;
color:var(--fg);max-width:1180px;margin:0 auto;padding:1rem 1.5rem 4rem;line-height:1.45}
h1{font-size:1.7rem;margin:.6rem 0 .2rem}h2{border-bottom:1px solid var(--line);padding-bottom:.2rem;
margin-top:2.6rem}h3{margin-top:1.6rem}
code{background:var(--bg);padding:0 .25em;border-radius:3px;font-size:.9em}
table{border-collapse:collapse;margin:.6rem 0;font-size:.88rem;display:block;overflow-x:auto}
th,td{border:1px solid var(--line);padding:.2rem .5rem;text-align:left;vertical-align:top}
th{background:var(--bg)}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.pass{color:var(--pass);font-weight:600}td.behind{color:var(--behind);font-weight:600}
figure{margin:1rem 0}figure img{max-width:100%;height:auto;border:1px solid var(--line)}
figcaption{color:var(--muted);font-size:.88rem}
details{margin:.6rem 0;border:1px solid var(--line);border-radius:6px;padding:.3rem .7rem}
summary{cursor:pointer;font-weight:600}
.lead{color:var(--muted)}.small{font-size:.85rem;color:var(--muted);margin:.3rem 0}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(430px,1fr));gap:1rem;margin:1rem 0}
.card{border:1px solid var(--line);border-radius:8px;padding:.7rem .9rem;background:#fff;
box-shadow:0 1px 2px rgba(0,0,0,.05)}
.card p{margin:.35rem 0}.card table{font-size:.8rem}
.card-title{display:flex;justify-content:space-between;align-items:center;font-weight:700;font-size:1.05rem}
.card-title a{color:inherit;text-decoration:none}
.mark{font-size:.75rem;font-weight:700;padding:.1rem .5rem;border-radius:999px;color:#fff;
text-transform:uppercase;letter-spacing:.03em}
.mark.pass{background:var(--pass)}.mark.behind{background:var(--behind)}.mark.n-a{background:var(--na)}
.mark.failed{background:var(--failed)}
.thumb img{display:block;width:100%;height:210px;object-fit:contain;border:1px solid var(--line);
margin-top:.3rem;background:#fff}
figure img{max-height:640px;object-fit:contain}
.missing{color:var(--failed)}
"""


def html_page(title: str, body: str) -> str:
    """A complete, self-contained HTML page (inline CSS only)."""
    return ("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{html.escape(title)}</title><style>{_CSS}</style></head>\n<body>\n{body}\n"
            "</body></html>\n")


def study_report_markdown(study, config: Mapping, metrics: Mapping, sections, figures, seconds,
                          folder: str, preset: str | None = None) -> str:
    """``report.md`` of one run folder."""
    return to_markdown(study_blocks(study, config, metrics, sections, figures, seconds, folder, 1,
                                    preset=preset))



# ----------------------------------------------------------------------------------------------
# the tour


def cpu_seconds() -> float:
    """CPU seconds (user + system) of this process and of its finished child processes (the
    workers of a local engine). ``getrusage`` counts in microseconds; ``os.times`` counts clock
    ticks (10 ms), too coarse for a short attempt of a resumed run."""
    try:
        import resource
    except ImportError:  # not on POSIX
        import time

        return time.process_time()
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


@dataclasses.dataclass
class TourEntry:
    """One study of the tour: its run (or the error that stopped it) and its cost."""

    study: object
    wall: float
    cpu: float
    metrics: Mapping | None = None
    config: Mapping | None = None
    sections: Sequence = ()
    figures: Sequence = ()
    folder: str = ""
    error: str | None = None


def tour_blocks(entries: Sequence[TourEntry], preset: str, seed: int, wall: float, cpu: float,
                planned: int, missing_threads: Sequence[str] = (), environment: Mapping | None = None,
                finished: bool = True) -> list:
    """The tour report: a summary card per study on top, then each study's section."""
    env = environment or {}
    about = [f"{preset} preset, seed {seed}"]
    if env.get("device"):
        about.append(f"device {env['device']}")
    version = env.get("dlpde") or env.get("dlpde_version")
    if version:
        about.append(f"dlpde {version}")
    if env.get("git_commit"):
        commit = str(env["git_commit"])
        about.append(f"commit `{commit[:7]}`" + (" with local changes" if commit.endswith("-dirty") else ""))
    if env.get("time"):
        about.append(f"started {env['time']}")
    count = f"{len(entries)} {'study' if len(entries) == 1 else 'studies'}"
    state = (f"{count} in {wall:.0f} s wall, {cpu:.0f} s CPU" if finished else
             f"in progress: {len(entries)} of {planned} studies done, {wall:.0f} s wall, "
             f"{cpu:.0f} s CPU so far")
    blocks: list = [
        Heading(1, "dlpde tour: what each thread shows"),
        Text(f"{'; '.join(about)}. {state}."),
        Text("One card per thread: what its headline study shows, its numbers against the exact answer "
             "or a peer, and a mark: **pass** when every judged number meets the expectation the study "
             "states for the quick preset (the tour's size), **behind** when one misses it. The full "
             "preset's measured numbers are quoted beside. Each card links to the study's section."),
    ]
    if preset != "quick":
        blocks.append(Text(f"*This tour ran the {preset} preset: the marks still compare against the quick "
                           "preset's expectations.*"))
    cards = []
    for entry in entries:
        study = entry.study
        footer = f"{entry.wall:.0f} s wall, {entry.cpu:.0f} s CPU"
        if entry.error is not None:
            cards.append(Card(study.name, anchor(study.name), "failed",
                              f"{study.description} The run failed: {entry.error}", [], footer=footer))
            continue
        card = study_card(study, entry.metrics or {}, entry.figures, prefix=f"{study.name}/")
        card.footer = footer
        cards.append(card)
    tally = ", ".join(f"{sum(c.mark == m for c in cards)} {_MARK_TEXT[m].lower()}"
                      for m in ("pass", "behind", "n/a", "failed") if any(c.mark == m for c in cards))
    if tally:
        blocks[1] = Text(blocks[1].markdown + f" Marks: {tally}.")
    blocks += [Heading(2, "Summary", "summary"), Cards(cards)]
    if missing_threads:
        blocks.append(Text("Threads with no study yet: " + ", ".join(missing_threads) + "."))
    for entry in entries:
        study = entry.study
        if entry.error is not None:
            blocks += [Heading(2, study.name, anchor(study.name)), Text(study.description),
                       Text(f"**FAILED** after {entry.wall:.0f} s: `{entry.error}`")]
            continue
        blocks += study_blocks(study, entry.config or {}, entry.metrics or {}, entry.sections, entry.figures,
                               entry.wall, entry.folder, level=2, prefix=f"{study.name}/", preset=preset)
    return blocks
