"""Every study's ``Config`` refuses out-of-range values at construction (issue: reliability).

Generated from the study registry, so a new study or a new field is covered automatically: for
every numeric field (``int``, ``float``, tuples of them), the values ``-4`` and ``0`` given with
``--set`` must be refused with a one-line ``ConfigError`` by ``make_config`` -- before any work
starts -- unless the study's ``Config`` declares the value meaningful in its class attribute
``MEANINGFUL_VALUES`` (field -> tuple of meaningful values, or ``"any"`` for a field that takes any
real number), which documents the special values for users too (``pretrain_steps=0`` skips the
pretraining).
"""

from __future__ import annotations

import dataclasses
import typing

import pytest

from dlpde._registry import discover_studies
from dlpde.shared.studies import ConfigError, _field_types, make_config


def _numeric(tp) -> bool:
    origin = typing.get_origin(tp)
    args = [a for a in typing.get_args(tp) if a is not type(None) and a is not Ellipsis]
    if origin in (typing.Union,) or str(origin) == "<class 'types.UnionType'>":
        return any(_numeric(a) for a in args)
    if origin in (tuple, list):
        return bool(args) and all(_numeric(a) for a in args)
    return tp in (int, float)


def _cases():
    studies = discover_studies()
    for name in sorted(studies):
        study = studies[name]
        for field, tp in _field_types(study.config).items():
            if field == "seed" or not _numeric(tp):  # make_config checks seeds itself
                continue
            allowed = getattr(study.config, "MEANINGFUL_VALUES", {}).get(field, ())
            for value in ("-4", "0"):
                if allowed == "any" or float(value) in allowed:
                    continue
                yield pytest.param(study, field, value, id=f"{name}.{field}={value}")


@pytest.mark.parametrize(("study", "field", "value"), list(_cases()))
def test_out_of_range_config_values_are_refused(study, field, value):
    with pytest.raises(ConfigError) as info:
        make_config(study, "smoke", [f"{field}={value}"])
    assert "\n" not in str(info.value)


def test_meaningful_values_name_real_fields():
    for name, study in discover_studies().items():
        declared = getattr(study.config, "MEANINGFUL_VALUES", {})
        fields = {f.name for f in dataclasses.fields(study.config)}
        assert set(declared) <= fields, f"{name}: MEANINGFUL_VALUES names unknown fields"
        for field, values in declared.items():
            assert values == "any" or (isinstance(values, tuple) and values), (name, field)
