"""The training loop: converges to a closed form, guards NaNs, resumes exactly, stops early."""

import pytest
import torch

from dlpde.shared import NonFiniteLossError, make_generator, train

DT = torch.float64


def regression_problem(seed=0):
    g = make_generator(seed)
    x = torch.randn(64, 3, generator=g, dtype=DT)
    y = x @ torch.tensor([1.0, -2.0, 0.5], dtype=DT) + 0.1 * torch.randn(64, generator=g, dtype=DT)
    return x, y


@pytest.mark.parametrize("optimizer,steps,lr", [("adam", 600, 0.05), ("lbfgs", 20, 1.0), ("sgd", 400, 0.1)])
def test_converges_to_least_squares(optimizer, steps, lr):
    x, y = regression_problem()
    w = torch.zeros(3, dtype=DT, requires_grad=True)
    history = train([w], lambda step: ((x @ w - y) ** 2).mean(), steps, optimizer=optimizer, lr=lr,
                    progress=False)
    exact = torch.linalg.lstsq(x, y[:, None]).solution[:, 0]
    torch.testing.assert_close(w.detach(), exact, rtol=1e-4, atol=1e-4)
    assert history[-1]["loss"] <= history[0]["loss"]


def test_nan_guard_names_the_step(tmp_path):
    w = torch.ones(2, dtype=DT, requires_grad=True)

    def loss_fn(step):
        return (w**2).sum() * (float("nan") if step == 7 else 1.0)

    with pytest.raises(NonFiniteLossError, match="step 7"):
        train([w], loss_fn, 20, progress=False, checkpoint=tmp_path / "c.pt")
    saved = torch.load(tmp_path / "c.pt", weights_only=False)
    assert saved["step"] == 7  # the last good state is kept


def test_resume_equals_uninterrupted(tmp_path):
    x, y = regression_problem(1)

    def run(checkpoint, steps, crash_at=None):
        torch_model = torch.nn.Linear(3, 1).double()
        with torch.no_grad():
            torch_model.weight.zero_()
            torch_model.bias.zero_()
        g = make_generator(5)

        def loss_fn(step):
            if crash_at is not None and step == crash_at:
                raise KeyboardInterrupt
            idx = torch.randint(0, 64, (16,), generator=g)
            return ((torch_model(x[idx])[:, 0] - y[idx]) ** 2).mean()

        history = train(torch_model, loss_fn, steps, lr=0.05, schedule="cosine", checkpoint=checkpoint,
                        checkpoint_every=3, generators=[g], progress=False)
        return torch_model, history

    reference, ref_history = run(tmp_path / "a.pt", 40)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "b.pt", 40, crash_at=23)
    assert torch.load(tmp_path / "b.pt", weights_only=False)["step"] == 23
    resumed, history = run(tmp_path / "b.pt", 40)
    torch.testing.assert_close(resumed.weight, reference.weight, rtol=0, atol=0)
    assert [h["loss"] for h in history] == [h["loss"] for h in ref_history]


def test_callback_stops_early_and_metrics_recorded():
    w = torch.ones(2, dtype=DT, requires_grad=True)
    history = train([w], lambda s: ((w**2).sum(), {"norm": w.norm()}), 100, lr=0.1, progress=False,
                    callback=lambda step, record: step >= 9)
    assert len(history) == 10 and "norm" in history[0]


def test_bad_inputs():
    w = torch.ones(2, dtype=DT, requires_grad=True)
    with pytest.raises(ValueError, match="optimizer"):
        train([w], lambda s: w.sum(), 1, optimizer="newton", progress=False)
    with pytest.raises(ValueError, match="schedule"):
        train([w], lambda s: w.sum(), 1, schedule="linear", progress=False)
    with pytest.raises(ValueError, match="requires_grad"):
        train([torch.ones(2)], lambda s: w.sum(), 1, progress=False)
    with pytest.raises(ValueError, match="scalar"):
        train([w], lambda s: w, 1, progress=False)
    with pytest.raises(ValueError, match="steps"):
        train([w], lambda s: w.sum(), -1, progress=False)


def test_negative_grad_clip_and_bad_options_are_refused():
    w = torch.ones(2, dtype=DT, requires_grad=True)
    for kwargs, match in [({"grad_clip": -1.0}, "grad_clip"), ({"lr": float("nan")}, "lr"),
                          ({"checkpoint_every": 0}, "checkpoint_every"), ({"progress": 3}, "progress"),
                          ({"generators": [1]}, "generators"),
                          ({"divergence_factor": 0.5}, "divergence_factor")]:
        with pytest.raises((ValueError, TypeError), match=match):
            train([w], lambda s: (w ** 2).sum(), 2, **kwargs)
    before = w.detach().clone()
    train([w], lambda s: (w ** 2).sum(), 5, lr=0.1, grad_clip=1.0, progress=False)
    assert float((w.detach() ** 2).sum()) < float((before ** 2).sum())  # descent, not ascent


def test_divergence_is_an_error_naming_the_stage_and_step():
    from dlpde.shared.train import TrainingDivergedError

    w = torch.ones(3, dtype=DT, requires_grad=True)
    # gradient descent on w^4 with a huge step size blows up without overflowing at once
    with pytest.raises(TrainingDivergedError, match=r"stage-x: loss .* at step \d+"):
        train([w], lambda s: (w ** 4).sum(), 50, optimizer="sgd", lr=3.0, progress=False, desc="stage-x")


def _noisy_quadratic(w, g):
    def loss_fn(step):
        target = torch.randn(w.shape, generator=g, dtype=DT)
        return ((w - target) ** 2).sum()
    return loss_fn


def test_ctrl_c_then_resume_gives_exactly_the_uninterrupted_result(tmp_path):
    import os
    import signal

    def fresh():
        w = torch.zeros(4, dtype=DT, requires_grad=True)
        return w, torch.Generator().manual_seed(3)

    w, g = fresh()
    reference = train([w], _noisy_quadratic(w, g), 40, lr=0.05, progress=False, generators=[g])
    w_ref = w.detach().clone()

    w, g = fresh()
    inner = _noisy_quadratic(w, g)

    def interrupting(step):
        loss = inner(step)  # the generator has advanced inside this step
        if step == 17:
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C arrives in the middle of the step
        return loss

    ckpt = tmp_path / "ckpt.pt"
    with pytest.raises(KeyboardInterrupt):
        train([w], interrupting, 40, lr=0.05, progress=False, generators=[g], checkpoint=ckpt,
              checkpoint_every=1000)
    w, g = fresh()
    resumed = train([w], _noisy_quadratic(w, g), 40, lr=0.05, progress=False, generators=[g],
                    checkpoint=ckpt)
    assert torch.equal(w.detach(), w_ref)
    assert [r["loss"] for r in resumed] == [r["loss"] for r in reference]


class _Payload:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned > pwned.txt",))


def test_a_malicious_checkpoint_is_refused(tmp_path, monkeypatch):
    from dlpde.shared.runs import CorruptRunFolderError, RunDir

    monkeypatch.chdir(tmp_path)
    ckpt = tmp_path / "ckpt.pt"
    torch.save({"step": 1, "params": [_Payload()], "optimizer": {}, "history": []}, ckpt)
    w = torch.zeros(2, dtype=DT, requires_grad=True)
    with pytest.raises(CorruptRunFolderError, match="refusing to load"):
        train([w], lambda s: (w ** 2).sum(), 3, progress=False, checkpoint=ckpt)
    run = RunDir(tmp_path / "run", resume=True)
    (run.path / "cache").mkdir()
    torch.save(_Payload(), run.path / "cache" / "piece.pt")
    with pytest.raises(CorruptRunFolderError, match="piece.pt"):
        run.cached("piece", lambda: 1)
    (run.path / "cache" / "garbled.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CorruptRunFolderError, match="corrupted"):
        run.cached("garbled", lambda: 1)
    assert not (tmp_path / "pwned.txt").exists()


def test_a_loss_that_sets_its_own_gradient_trains_like_autograd():
    """The closed-form-gradient contract: set every parameter's .grad, return a detached loss."""
    x, y = regression_problem()
    finals = []
    for own in (True, False):
        w = torch.zeros(3, dtype=DT, requires_grad=True)

        def loss(step, w=w, own=own):
            if not own:
                return ((x @ w - y) ** 2).mean()
            r = x @ w.detach() - y
            w.grad = 2 * x.T @ r / len(y)
            return (r ** 2).mean()

        train([w], loss, 50, optimizer="adam", lr=1e-2, progress=False)
        finals.append(w.detach().clone())
    torch.testing.assert_close(finals[0], finals[1], rtol=1e-12, atol=1e-12)
    w = torch.zeros(3, dtype=DT, requires_grad=True)
    with pytest.raises(ValueError, match="did not set the gradient of every parameter"):
        train([w], lambda step: ((x @ w.detach() - y) ** 2).mean(), 3, progress=False)
