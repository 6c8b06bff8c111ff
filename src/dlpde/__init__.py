"""dlpde: deep learning and partial differential equations.

A theory workbench for the five threads of the AIM workshop "Deep Learning and Partial
Differential Equations" (Lin, Lu, Ying):

- ``dlpde.hjb``        Hamilton-Jacobi(-Bellman) equations and neural solvers;
- ``dlpde.symmetry``   permutation-invariant, equivariant and antisymmetric networks, VMC, PES;
- ``dlpde.meanfield``  mean-field limits of two-layer networks, CNNs, ResNets and ResNeXt;
- ``dlpde.ntk``        neural tangent kernels and the lazy <-> mean-field passage;
- ``dlpde.inverse``    image restoration by unrolled dynamics and classical solvers.

Subpackages are imported on first access (``dlpde.hjb``) so that ``import dlpde`` stays light.
"""

import importlib

__version__ = "0.1.0"

_SUBPACKAGES = ("shared", "hjb", "symmetry", "meanfield", "ntk", "inverse")

__all__ = ["__version__", *_SUBPACKAGES]


def __getattr__(name):
    if name in _SUBPACKAGES:
        return importlib.import_module(f"dlpde.{name}")
    raise AttributeError(f"module 'dlpde' has no attribute {name!r}")
