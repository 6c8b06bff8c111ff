"""Empirical kernels against a per-sample Jacobian loop; Taylor models against the network."""

import pytest
import torch

from dlpde.ntk import (
    Dense,
    Erf,
    Relu,
    Serial,
    build_network,
    empirical_nngp,
    empirical_ntk,
    linearize,
    ntk_vector_product,
    second_order_taylor,
)
from dlpde.shared import make_generator

SPEC = Serial(Dense(32, 1.4, 0.1), Relu(), Dense(32, 1.4, 0.1), Erf(), Dense(3))


def _setup():
    net = build_network(SPEC, (5,), 0, torch.float64)
    g = make_generator(1)
    x1 = torch.randn(7, 5, generator=g, dtype=torch.float64)
    return net, x1, torch.randn(4, 5, generator=g, dtype=torch.float64)


def _naive_jacobian(net, x):
    params = list(net.parameters())
    rows = []
    for n in range(x.shape[0]):
        out = net(x[n:n + 1])[0]
        for k in range(out.shape[0]):
            grads = torch.autograd.grad(out[k], params, retain_graph=True)
            rows.append(torch.cat([g.reshape(-1) for g in grads]))
    return torch.stack(rows)


@pytest.mark.parametrize("method", ["jacobian", "ntk_vp", "structured", "auto"])
@pytest.mark.parametrize("batch_size", [None, 3])
def test_ntk_matches_naive_jacobians(method, batch_size):
    net, x1, x2 = _setup()
    j1, j2 = _naive_jacobian(net, x1), _naive_jacobian(net, x2)
    full = j1 @ j2.T
    traced = full.reshape(7, 3, 4, 3).diagonal(dim1=1, dim2=3).mean(-1)
    kw = dict(method=method, batch_size=batch_size)
    tol = dict(rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(empirical_ntk(net, x1, x2, trace_outputs=False, **kw), full, **tol)
    torch.testing.assert_close(empirical_ntk(net, x1, x2, **kw), traced, **tol)
    torch.testing.assert_close(empirical_ntk(net, x1, trace_outputs=False, **kw), j1 @ j1.T, **tol)


def test_functional_model_nngp_and_vector_products():
    net, x1, x2 = _setup()
    params = {k: v.detach() for k, v in net.named_parameters()}

    def f(p, x):
        return torch.func.functional_call(net, p, (x,))

    torch.testing.assert_close(empirical_ntk(f, x1, x2, params=params), empirical_ntk(net, x1, x2))
    out1, out2 = net(x1).detach(), net(x2).detach()
    torch.testing.assert_close(empirical_nngp(net, x1, x2), out1 @ out2.T / 3)
    torch.testing.assert_close(empirical_nngp(net, x1, x2, trace_outputs=False),
                               (out1.reshape(-1, 1) * out2.reshape(1, -1)))
    v = torch.randn(4, 3, generator=make_generator(2), dtype=torch.float64)
    full = empirical_ntk(net, x1, x2, trace_outputs=False)
    torch.testing.assert_close(ntk_vector_product(net, x1, x2, v), (full @ v.reshape(-1)).reshape(7, 3))


def test_taylor_models_have_the_right_order():
    _, x1, _ = _setup()
    net = build_network(Serial(Dense(32, 1.4, 0.1), Erf(), Dense(32, 1.4, 0.1), Erf(), Dense(3)), (5,), 0,
                        torch.float64)  # smooth: Taylor orders are exact
    params0 = {k: v.detach() for k, v in net.named_parameters()}
    g = make_generator(3)
    direction = {k: torch.randn(v.shape, generator=g, dtype=v.dtype) for k, v in params0.items()}
    f_lin, f_2 = linearize(net), second_order_taylor(net)
    errors_lin, errors_2 = [], []
    for eps in (1e-2, 5e-3):
        p = {k: params0[k] + eps * direction[k] for k in params0}
        exact = torch.func.functional_call(net, p, (x1,))
        errors_lin.append(float((f_lin(p, x1) - exact).abs().max()))
        errors_2.append(float((f_2(p, x1) - exact).abs().max()))
    assert 3.5 < errors_lin[0] / errors_lin[1] < 4.5  # O(eps^2)
    assert 7.0 < errors_2[0] / errors_2[1] < 9.0  # O(eps^3)
    # differentiable in the parameters (trained by autograd)
    p = {k: v.clone().requires_grad_(True) for k, v in params0.items()}
    f_lin(p, x1).sum().backward()
    assert all(v.grad is not None for v in p.values())


def test_bad_input():
    net, x1, _ = _setup()
    with pytest.raises(ValueError, match="method"):
        empirical_ntk(net, x1, method="fast")
    with pytest.raises(ValueError, match="per-sample shape"):
        empirical_ntk(net, x1, torch.randn(3, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="params must be given"):
        empirical_ntk(lambda p, x: x, x1)
    with pytest.raises(ValueError, match="batch_size"):
        empirical_ntk(net, x1, batch_size=0)
    with pytest.raises(ValueError, match="structured"):
        empirical_ntk(lambda p, x: torch.func.functional_call(net, p, (x,)), x1, method="structured",
                      params=dict(net.named_parameters()))


def test_structured_path_with_standard_parameterisation_and_no_bias():
    spec = Serial(Dense(16, 1.3, None, "standard"), Erf(), Dense(16, 1.2, 0.3, "standard"), Relu(), Dense(2))
    net = build_network(spec, (4,), 5, torch.float64)
    x = torch.randn(5, 4, generator=make_generator(6), dtype=torch.float64)
    for trace in (True, False):
        torch.testing.assert_close(empirical_ntk(net, x, method="structured", trace_outputs=trace),
                                   empirical_ntk(net, x, method="jacobian", trace_outputs=trace))
