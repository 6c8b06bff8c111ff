import pytest
import torch

from dlpde.shared import make_generator, resolve_device, resolve_dtype, spawn_seed


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device(None).type == expected
    assert resolve_device(torch.device("cpu")).type == "cpu"
    with pytest.raises(ValueError, match="device"):
        resolve_device("tpu")
    with pytest.raises(TypeError):
        resolve_device(3)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")


def test_resolve_dtype():
    assert resolve_dtype("float64") is torch.float64
    assert resolve_dtype("torch.float32") is torch.float32
    assert resolve_dtype(None) is torch.float32
    assert resolve_dtype(None, default=torch.float64) is torch.float64
    assert resolve_dtype(torch.float64) is torch.float64
    with pytest.raises(ValueError, match="dtype"):
        resolve_dtype("int8")
    with pytest.raises(ValueError, match="floating"):
        resolve_dtype(torch.int64)


def test_generators_reproducible():
    a = torch.randn(5, generator=make_generator(3))
    b = torch.randn(5, generator=make_generator(3))
    c = torch.randn(5, generator=make_generator(4))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    g = make_generator(1)
    assert make_generator(g) is g
    assert spawn_seed(make_generator(5)) == spawn_seed(make_generator(5))
    for bad in (-1, 1.5, "3", True):
        with pytest.raises((ValueError, TypeError), match="seed"):
            make_generator(bad)
