"""A registry of BibTeX entries keyed by method, read from the package's ``references.bib``."""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources

__all__ = ["cite", "bibliography", "citation_keys"]

_ENTRY = re.compile(r"@(\w+)\s*\{\s*([^,\s]+)\s*,")


@lru_cache(maxsize=1)
def bibliography() -> dict[str, str]:
    """All entries of ``references.bib``: key -> BibTeX text (read once, never modified)."""
    text = resources.files("dlpde.shared").joinpath("references.bib").read_text(encoding="utf-8")
    entries: dict[str, str] = {}
    starts = [m for m in _ENTRY.finditer(text)]
    for i, match in enumerate(starts):
        end = starts[i + 1].start() if i + 1 < len(starts) else len(text)
        key = match.group(2)
        if key in entries:
            raise ValueError(f"duplicate BibTeX key {key!r} in references.bib")
        entries[key] = text[match.start():end].strip()
    return entries


def citation_keys() -> list[str]:
    return sorted(bibliography())


def cite(*keys: str, include_library: bool = True) -> str:
    """BibTeX of the given keys (and of dlpde itself), in order, without duplicates.

    Unknown keys raise ``ValueError`` naming them.
    """
    if not isinstance(include_library, bool):
        raise TypeError(f"include_library must be True or False, got {type(include_library).__name__}")
    bad = [k for k in keys if not isinstance(k, str)]
    if bad:
        raise TypeError(f"citation keys must be str, got {bad[0]!r}")
    entries = bibliography()
    ordered = (["dlpde"] if include_library else []) + list(keys)
    unknown = [k for k in ordered if k not in entries]
    if unknown:
        raise ValueError(f"unknown citation keys {unknown}; known keys: {', '.join(sorted(entries))}")
    seen: list[str] = []
    for key in ordered:
        if key not in seen:
            seen.append(key)
    return "\n\n".join(entries[k] for k in seen) + "\n"
