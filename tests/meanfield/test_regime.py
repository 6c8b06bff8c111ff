"""coordinate_check on two-layer nets whose width scalings are known in closed form.

``f = c_n sum_i a_i tanh(<w_i, x> / sqrt(d))`` with ``w_i ~ N(0, I)``, trained by full-batch SGD:

- NTK parameterisation (``a ~ N(0, 1)``, ``c_n = n^-1/2``, fixed step): NTK O(1), output update
  O(1), hidden preactivations move by O(n^-1/2) (each ``w_i`` gets a gradient of size
  ``c_n |a_i| = n^-1/2``) -> lazy;
- mean-field (``c_n = 1/n``, step ``lr n``): the gradient per particle is O(1/n), the step O(n),
  so every ``w_i`` moves by O(1) -> feature learning; output at initialisation O(n^-1/2) (CLT),
  NTK O(1/n) and the step-weighted NTK O(1);
- standard (``a ~ N(0, 1/n)``, ``c_n = 1``, fixed step): NTK = sum_i tanh(h_i)^2 + ... = O(n), one
  step moves the output by O(n) -> unstable;
- mean-field multipliers with a fixed step: output update O(1/n) -> trivial.

Tolerances: the fitted exponents are least-squares slopes over widths 64..2048 with 3
initialisations each. Over 6 seeds of data and initialisation the checked exponents stayed within
0.1 of the exact values (largest: 0.10 for the CLT-limited output size at initialisation, 0.09 for
the NTK relative feature update, 0.08 for the standard output update); each is checked within
0.15 (0.2 for the output at initialisation), and the verdict was the same on all 6 seeds.
"""

import math

import pytest
import torch
from torch import nn

from dlpde import meanfield as mf

WIDTHS = (64, 128, 256, 512, 1024, 2048)


class TwoLayer(nn.Module):
    def __init__(self, width, parameterization, generator, d=8):
        super().__init__()
        self.hidden = nn.Linear(d, width, bias=False, dtype=torch.float64)
        self.readout = nn.Linear(width, 1, bias=False, dtype=torch.float64)
        with torch.no_grad():
            self.hidden.weight.copy_(torch.randn(width, d, generator=generator, dtype=torch.float64))
            a = torch.randn(1, width, generator=generator, dtype=torch.float64)
            self.readout.weight.copy_(a / math.sqrt(width) if parameterization == "standard" else a)
        self.d = d
        self.multiplier = {"standard": 1.0, "ntk": width**-0.5, "meanfield": 1.0 / width}[parameterization]

    def forward(self, x):
        return self.readout(torch.tanh(self.hidden(x / math.sqrt(self.d)))).squeeze(-1) * self.multiplier


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(16, 8, generator=g, dtype=torch.float64)
    return x, torch.sin(2 * x[:, 0])


def _close(result, name, expected, tol=0.15):
    assert abs(result.exponents[name] - expected) <= tol, (name, result.exponents[name], expected)


def test_ntk_parameterisation_is_lazy(data):
    result = mf.coordinate_check(TwoLayer, WIDTHS, "ntk", data, steps=3, lr=0.5)
    assert result.verdict == "lazy/NTK", result.summary()
    assert result.hidden == ("[hidden]",)  # the readout (1 output at every width) is no coordinate
    _close(result, "ntk", 0.0)
    _close(result, "output_update", 0.0)
    _close(result, "[hidden]", 0.0)
    _close(result, "[hidden]/relative_update", -0.5)


def test_mean_field_parameterisation_learns_features(data):
    result = mf.coordinate_check(TwoLayer, WIDTHS, "meanfield", data, steps=3, lr=0.5)
    assert result.verdict == "mean-field/feature learning", result.summary()
    assert result.learning_rates == tuple(0.5 * n for n in WIDTHS)
    _close(result, "[hidden]/relative_update", 0.0)
    _close(result, "output_update", 0.0)
    _close(result, "output", -0.5, tol=0.2)
    _close(result, "ntk", -1.0)
    _close(result, "effective_ntk", 0.0)


def test_standard_parameterisation_with_fixed_step_explodes(data):
    result = mf.coordinate_check(TwoLayer, WIDTHS, "standard", data, steps=1, lr=0.05)
    assert result.verdict == "unstable/exploding", result.summary()
    _close(result, "output_update", 1.0)
    _close(result, "ntk", 1.0)
    _close(result, "output", 0.0)


def test_mean_field_multipliers_with_a_fixed_step_are_trivial(data):
    result = mf.coordinate_check(TwoLayer, WIDTHS, "meanfield", data, steps=3, lr=lambda n: 0.5)
    assert result.verdict == "trivial/vanishing", result.summary()
    _close(result, "output_update", -1.0)
    assert "regime: trivial/vanishing" in result.summary()


def test_summary_and_plot(data, tmp_path):
    result = mf.coordinate_check(TwoLayer, WIDTHS[:3], "ntk", data, steps=1, seeds=1)
    table = result.summary()
    assert "[hidden]/relative_update" in table and f"regime: {result.verdict}" in table
    paths = result.plot(tmp_path / "coordinates")
    assert all(path.stat().st_size > 0 for path in paths)


def test_coordinate_check_refuses_bad_arguments(data):
    with pytest.raises(ValueError, match="widths"):
        mf.coordinate_check(TwoLayer, (64, 128), "ntk", data)
    with pytest.raises(ValueError, match="parameterization"):
        mf.coordinate_check(TwoLayer, WIDTHS, "bogus", data)
    with pytest.raises(TypeError, match="nn.Module"):
        mf.coordinate_check(lambda n, p, g: torch.zeros(3), WIDTHS, "ntk", data)
    with pytest.raises(ValueError, match="shape"):
        mf.coordinate_check(TwoLayer, WIDTHS, "ntk", (data[0], data[1][:, None]))
    with pytest.raises(ValueError, match="layers"):
        mf.coordinate_check(TwoLayer, WIDTHS, "ntk", data, layers=["nope"])
