"""The argument-check vocabulary of dlpde.shared.checks: each check accepts what it documents and
refuses the rest with a ValueError/TypeError that names the argument."""

import math

import pytest
import torch

from dlpde.shared.checks import (
    NonFiniteResultError,
    check_bool,
    check_choice,
    check_finite_result,
    check_int,
    check_positive_int,
    check_probability,
    check_real,
    check_tensor,
)


def test_check_tensor_accepts_a_matching_tensor_and_names_the_argument_otherwise():
    x = torch.zeros(5, 3, dtype=torch.float64)
    assert check_tensor(x, "x", dim=2, shape=(None, 3)) is x
    with pytest.raises(ValueError, match=r"points must have shape \(\*, 2\), got \(5, 3\)"):
        check_tensor(x, "points", shape=(None, 2))
    with pytest.raises(TypeError, match="points must be a floating-point tensor"):
        check_tensor(x.long(), "points")
    with pytest.raises(TypeError, match="points must be a torch.Tensor, got list"):
        check_tensor([1.0], "points")
    with pytest.raises(ValueError, match="points must not be empty"):
        check_tensor(x[:0], "points")


def test_finite_check_counts_the_bad_entries_and_accepts_huge_finite_ones():
    x = torch.ones(1000, dtype=torch.float64)
    x[[3, 7]] = float("nan")
    x[11] = float("inf")
    with pytest.raises(ValueError, match="x must be finite, got 3 non-finite"):
        check_tensor(x, "x")
    assert check_tensor(x, "x", finite=False) is x
    huge = torch.full((4,), torch.finfo(torch.float32).max)  # finite entries whose sum overflows
    assert not torch.isfinite(huge.sum())
    assert check_tensor(huge, "huge") is huge


def test_scalar_checks():
    assert check_int(3, "n", minimum=1) == 3
    with pytest.raises(ValueError, match="n"):
        check_positive_int(0, "n")
    with pytest.raises(TypeError, match="n"):
        check_int(2.5, "n")
    with pytest.raises(TypeError, match="flag"):
        check_bool(1, "flag")
    assert check_real(0.5, "lr", 0.0, 1.0) == 0.5
    with pytest.raises(ValueError, match="lr"):
        check_real(math.nan, "lr")
    with pytest.raises(ValueError, match="p"):
        check_probability(1.5, "p")
    with pytest.raises(ValueError, match="method.*'a', 'b'|method"):
        check_choice("c", "method", ("a", "b"))


def test_check_finite_result_raises_a_named_error():
    with pytest.raises(NonFiniteResultError, match="ista iterate became non-finite"):
        check_finite_result(torch.tensor([1.0, math.inf]), "ista iterate", hint="lower the step")
    assert issubclass(NonFiniteResultError, ValueError)


def test_check_sequence_checks_every_item_and_names_it():
    from dlpde.shared import check_choice, check_positive_int, check_sequence

    assert check_sequence([16, 32], "widths", check_positive_int) == (16, 32)
    with pytest.raises(ValueError, match=r"widths\[1\] must be an integer >= 1, got -4"):
        check_sequence((16, -4), "widths", check_positive_int)
    with pytest.raises(ValueError, match="widths must have at least one entry"):
        check_sequence((), "widths", check_positive_int)
    assert check_sequence((), "widths", check_positive_int, nonempty=False) == ()
    with pytest.raises(TypeError, match="widths must be a tuple or list"):
        check_sequence("16", "widths", check_positive_int)
    names = ("relu", "tanh")
    assert check_sequence(["tanh"], "activations", check_choice, names, distinct=True) == ("tanh",)
    with pytest.raises(ValueError, match="must not repeat"):
        check_sequence(("tanh", "tanh"), "activations", check_choice, names, distinct=True)
    with pytest.raises(ValueError, match=r"activations\[0\] must be one of 'relu', 'tanh'"):
        check_sequence(("erf",), "activations", check_choice, names)


def test_check_dtype_and_check_path():
    import os
    from pathlib import Path

    from dlpde.shared import check_dtype, check_path

    assert check_dtype(torch.float64) is torch.float64
    for bad in (torch.float16, torch.int64, "float32", None):
        with pytest.raises(TypeError, match="dtype must be torch.float32 or torch.float64"):
            check_dtype(bad)
    assert check_path(Path("a") / "b", "out") == os.path.join("a", "b")
    assert check_path(None, "checkpoint", allow_none=True) is None
    with pytest.raises(TypeError, match="checkpoint must be a path"):
        check_path(None, "checkpoint")
    with pytest.raises(ValueError, match="out must be a non-empty path"):
        check_path("", "out")
    with pytest.raises(ValueError, match="NUL"):
        check_path("a\x00b", "out")
