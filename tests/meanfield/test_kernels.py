"""The meanfield kernels registered for benchmarks/gpu_check.py run (CPU against CPU, tiny sizes)."""

import torch

from dlpde.meanfield._kernels import KERNELS, _fused_squared_loss
from dlpde.meanfield._two_layer import TwoLayerMeanField
from dlpde.shared import make_generator
from dlpde.shared.kernels import compare_kernel


def test_fused_blocked_loss_is_registered_and_runs():
    names = [check.name for check in KERNELS]
    assert "meanfield.two_layer.fused_loss_blocked" in names
    check = KERNELS[names.index("meanfield.two_layer.fused_loss_blocked")]
    row = compare_kernel(check, "cpu", tiny=True, repeats=1)
    assert row["ok"], row


def test_registered_fused_kernel_matches_autograd():
    # the registered build (seeded model, 3 blocks of 32 particles) against autograd through model(x)
    loss, grad = _fused_squared_loss(torch.device("cpu"), True)()
    model = TwoLayerMeanField(96, 5, "tanh", bias=True, generator=11, dtype=torch.float64)
    g = make_generator(12)
    x = torch.randn(8, 5, generator=g, dtype=torch.float64)
    reference = ((torch.sin(x[:, 0]) - model(x)) ** 2).mean()
    (reference_grad,) = torch.autograd.grad(reference, model.particles)
    assert torch.allclose(loss, reference, rtol=1e-13, atol=0)  # float64, sums reordered by the blocks
    assert torch.allclose(grad, reference_grad, rtol=1e-12, atol=1e-15)
