"""inverse.denoise trains each learned method at every sigma in one chain: from scratch at
``warm_from``, then warm-started from those weights (checked against an independent training
of the same recipe), or from scratch everywhere with ``warm_from=0``."""

import pytest
import torch

from dlpde.inverse._pretrained import build_denoiser, train_denoiser
from dlpde.inverse.studies import denoise

SMALL = dict(test_images=("camera",), test_size=32, methods=("DnCNN",), dncnn_depth=3, dncnn_width=4,
             batch=2, patch=16, device="cpu")


def _psnr(result):
    return result["images"][0]["psnr"]


def test_chain_warm_starts_the_other_sigmas_from_the_warm_from_weights(tmp_path):
    config = denoise.Config(sigmas=(15.0, 25.0), warm_from=25.0, dncnn_steps=(3, 0), **SMALL)
    out = denoise._train_chain(config, "DnCNN", str(tmp_path), torch.device("cpu"))
    assert not out[25.0]["warm_started"] and out[25.0]["loss_curve"]
    assert out[15.0]["warm_started"] and out[15.0]["loss_curve"] == []
    assert (tmp_path / "sigma25" / "dncnn.pt").exists()
    # The same recipe trained on its own at sigma 25, then scored at sigma 15: the sigma-15 entry
    # (0 warm steps) must be exactly that model.
    model = build_denoiser("dncnn", denoise._architecture(config, "dncnn"),
                           generator=torch.Generator().manual_seed(config.seed))
    train_denoiser(model, "dncnn", 25.0, denoise._recipe(config, "dncnn", 3, warm=False),
                   seed=config.seed + 25)
    clean, noisy = denoise._test_set(config, 15.0)
    expected = denoise._evaluate(model, clean, noisy, "cpu")[0]["psnr"]
    assert _psnr(out[15.0]) == pytest.approx(expected, abs=1e-9)
    # ... and not the untrained network.
    fresh = build_denoiser("dncnn", denoise._architecture(config, "dncnn"),
                           generator=torch.Generator().manual_seed(config.seed))
    assert abs(denoise._evaluate(fresh, clean, noisy, "cpu")[0]["psnr"] - expected) > 1e-3


def test_warm_from_zero_trains_every_sigma_from_scratch(tmp_path):
    config = denoise.Config(sigmas=(15.0, 25.0), warm_from=0.0, dncnn_steps=(2, 7), **SMALL)
    out = denoise._train_chain(config, "DnCNN", str(tmp_path), torch.device("cpu"))
    assert [r["warm_started"] for r in out.values()] == [False, False]
    assert [len(r["loss_curve"]) for r in out.values()] == [2, 2]


def test_warm_from_must_be_one_of_the_sigmas():
    with pytest.raises(ValueError, match="warm_from"):
        denoise.Config(sigmas=(15.0,), warm_from=25.0)


def test_training_curves_count_steps_across_trd_phases():
    history = [{"step": 5, "loss": 1.0, "phase": "greedy1"}, {"step": 10, "loss": 0.5, "phase": "greedy1"},
               {"step": 10, "loss": 0.4, "phase": "greedy2"}, {"step": 4, "loss": 0.3, "phase": "joint"}]
    assert denoise._global_steps(history) == [(5, 1.0), (10, 0.5), (20, 0.4), (24, 0.3)]
    assert denoise._global_steps([{"step": 1, "loss": 2.0}, {"step": 2, "loss": 1.0}]) == [(1, 2.0), (2, 1.0)]
