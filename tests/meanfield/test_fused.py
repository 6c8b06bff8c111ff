"""The fused squared loss of TwoLayerMeanField against autograd through model(x) (float64)."""

import pytest
import torch

from dlpde.meanfield import GaussianWellActivation, TwoLayerMeanField, _fused, mean_field_sgd

ACTIVATIONS = ["tanh", "relu", "sigmoid", "erf", "linear", GaussianWellActivation(3.0, 1.5, 1.0),
               torch.nn.functional.softplus]


@pytest.mark.parametrize(
    "activation", ACTIVATIONS, ids=lambda a: a if isinstance(a, str) else type(a).__name__
)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("kept", [True, False])
def test_fused_loss_and_gradient_match_autograd(activation, bias, kept, monkeypatch):
    if not kept:  # force pass 2 to recompute the blocks
        monkeypatch.setattr(_fused, "_KEPT_BYTES", 0)
    model = TwoLayerMeanField(300, 7, activation, bias=bias, bias_scale=0.5, generator=1, dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(20, 7, generator=g, dtype=torch.float64)
    y = torch.randn(20, generator=g, dtype=torch.float64)
    reference = ((y - model(x)) ** 2).mean()
    (grad_reference,) = torch.autograd.grad(reference, model.particles)
    for block in (None, 64):
        loss = model.squared_loss(x, y, block=block)
        (grad,) = torch.autograd.grad(loss, model.particles)
        assert abs(float(loss.detach()) - float(reference.detach())) < 1e-13
        assert float((grad - grad_reference).abs().max()) < 1e-14 * float(grad_reference.abs().max()) * 100


def test_fused_sgd_matches_autograd_sgd():
    g = torch.Generator().manual_seed(3)
    batches = [(torch.randn(16, 5, generator=g, dtype=torch.float64),) for _ in range(10)]
    batches = [(x, torch.sin(x[:, 0])) for (x,) in batches]
    finals = []
    for form in ("fused", "set_grad", "autograd"):
        model = TwoLayerMeanField(200, 5, "tanh", generator=2, dtype=torch.float64)

        def loss(k, model=model, form=form):
            x, y = batches[k]
            if form == "autograd":
                return ((y - model(x)) ** 2).mean()
            return model.squared_loss(x, y, set_grad=form == "set_grad")

        mean_field_sgd(model, loss, 0.1, 0.01, progress=False)
        finals.append(model.particles.detach())
    for final in finals[:2]:  # the fused loss through autograd, and writing its own gradient
        assert float((final - finals[2]).abs().max()) < 1e-12


def test_squared_loss_rejects_bad_targets():
    model = TwoLayerMeanField(10, 3, generator=0, dtype=torch.float64)
    x = torch.randn(4, 3, dtype=torch.float64)
    with pytest.raises(ValueError):
        model.squared_loss(x, torch.zeros(5, dtype=torch.float64))
    with pytest.raises(ValueError):
        model.squared_loss(x, torch.full((4,), float("nan"), dtype=torch.float64))
    with pytest.raises(ValueError):
        model.squared_loss(x, torch.zeros(4, dtype=torch.float64), block=0)


def test_fused_workspace_reused_across_batch_sizes():
    """The buffers kept on the model between calls (zero blocks of Z, kept [G; S]) are right whatever the
    sequence of batch sizes and block sizes, against autograd through model(x) in float64."""
    model = TwoLayerMeanField(150, 4, "tanh", bias_scale=0.5, generator=4, dtype=torch.float64)
    g = torch.Generator().manual_seed(5)
    for batch, block in ((20, None), (5, 64), (33, None), (20, 7), (1, None)):
        x = torch.randn(batch, 4, generator=g, dtype=torch.float64)
        y = torch.randn(batch, generator=g, dtype=torch.float64)
        reference = ((y - model(x)) ** 2).mean()
        (grad_reference,) = torch.autograd.grad(reference, model.particles)
        loss = model.squared_loss(x, y, block=block)
        (grad,) = torch.autograd.grad(loss, model.particles)
        assert abs(float(loss.detach()) - float(reference.detach())) < 1e-13
        assert float((grad - grad_reference).abs().max()) < 1e-12 * float(grad_reference.abs().max())
