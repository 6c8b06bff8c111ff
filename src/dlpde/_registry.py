"""Discovery of studies: every module of ``dlpde.<thread>.studies`` that defines ``STUDY``.

Extra study modules (a user's own, or a test's) are added by listing their import paths in the
environment variable ``DLPDE_EXTRA_STUDIES`` (comma-separated) or by passing ``extra_modules``.
"""

from __future__ import annotations

import importlib
import os
import pkgutil

from .shared.studies import ConfigError, Study

THREADS = ("hjb", "symmetry", "meanfield", "ntk", "inverse")


def _studies_in(module) -> list[Study]:
    found = []
    study = getattr(module, "STUDY", None)
    if isinstance(study, Study):
        found.append(study)
    for extra in getattr(module, "STUDIES", ()):
        if isinstance(extra, Study):
            found.append(extra)
    return found


def discover_studies(extra_modules=()) -> dict[str, Study]:
    """All studies by name, threads in their canonical order, then extra modules."""
    studies: dict[str, Study] = {}

    def add(study):
        if study.name in studies and studies[study.name] is not study:
            raise RuntimeError(f"two studies are named {study.name!r}")
        studies[study.name] = study

    for thread in THREADS:
        package = importlib.import_module(f"dlpde.{thread}.studies")
        for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda i: i.name):
            if info.name.startswith("_"):
                continue
            module = importlib.import_module(f"{package.__name__}.{info.name}")
            for study in _studies_in(module):
                add(study)
    env = os.environ.get("DLPDE_EXTRA_STUDIES", "")
    for name in [*extra_modules, *[m.strip() for m in env.split(",") if m.strip()]]:
        try:
            module = importlib.import_module(name)
        except ImportError as error:
            raise ConfigError(f"cannot import study module {name!r} (DLPDE_EXTRA_STUDIES): {error}") from None
        for study in _studies_in(module):
            add(study)
    return studies


def public_subpackages() -> list[str]:
    """Every non-private subpackage of dlpde with an ``__all__`` (studies excluded), in import
    order: the public surface that the API reference documents and the fuzz test covers, so a new
    subpackage is picked up by both without editing either."""
    import dlpde

    names = []
    for info in pkgutil.walk_packages(dlpde.__path__, "dlpde."):
        parts = info.name.split(".")
        if not info.ispkg or any(p.startswith("_") or p == "studies" for p in parts):
            continue
        if hasattr(importlib.import_module(info.name), "__all__"):
            names.append(info.name)
    return names
