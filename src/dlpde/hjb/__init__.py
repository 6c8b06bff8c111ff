"""dlpde.hjb: Hamilton-Jacobi(-Bellman) equations ``u_t + H(x, grad u) = 0``, ``u(x, 0) = g(x)``.

- Hamiltonians: ``Hamiltonian`` (``from_function``), ``QuadraticHamiltonian``,
  ``NormHamiltonian``, ``LQRHamiltonian``.
- Exact references: ``hopf_lax_min_of_convex`` (``g = min_k g_k`` convex pieces, e.g.
  ``QuadraticPieces``), ``hopf_lax_value`` (multi-start, any ``g``); ``hopf_value``
  (the Hopf formula for convex ``g``); ``HJProblem`` with the closed forms
  ``min_of_quadratics_problem``, ``kink_problem``, ``lqr_problem`` (``RiccatiSolution``).
- Characteristics: ``characteristics``, ``backward_characteristics``.
- Neural solvers with one ``fit`` / ``value`` / ``gradient`` interface: ``DGMSolver``,
  ``CharacteristicSolver``, ``ValueGradientSolver`` (networks ``ValueNetwork``, ``DGMNetwork``).
- Optimal control: ``solve_pontryagin_bvp`` (batched multiple shooting with time marching),
  ``pontryagin_data_source``, ``ControlAffineProblem``, ``rigid_body_problem``,
  ``simulate_closed_loop``, ``value_feedback``.
"""

from ._burgers import burgers_problem, chebyshev_collocation
from ._bvp import PontryaginSolution, pontryagin_data_source, solve_pontryagin_bvp
from ._characteristics import (
    CharacteristicPath,
    CharacteristicState,
    backward_characteristics,
    characteristic_data_source,
    characteristics,
)
from ._control import (
    ControlAffineProblem,
    lqr_warm_start,
    rigid_body_problem,
    simulate_closed_loop,
    value_feedback,
)
from ._hamiltonians import Hamiltonian, LQRHamiltonian, NormHamiltonian, QuadraticHamiltonian
from ._hopf import hopf_value
from ._hopf_lax import hopf_lax_min_of_convex, hopf_lax_value
from ._networks import DGMNetwork, MinOfHeadsNetwork, ValueNetwork
from ._problems import (
    HJProblem,
    QuadraticPieces,
    RiccatiSolution,
    kink_problem,
    lqr_problem,
    min_of_quadratics_problem,
)
from ._solvers import CharacteristicSolver, DGMSolver, ValueGradientSolver

__all__ = [
    "Hamiltonian",
    "QuadraticHamiltonian",
    "NormHamiltonian",
    "LQRHamiltonian",
    "hopf_lax_value",
    "hopf_lax_min_of_convex",
    "hopf_value",
    "QuadraticPieces",
    "HJProblem",
    "min_of_quadratics_problem",
    "kink_problem",
    "lqr_problem",
    "RiccatiSolution",
    "characteristics",
    "backward_characteristics",
    "CharacteristicState",
    "CharacteristicPath",
    "ValueNetwork",
    "DGMNetwork",
    "MinOfHeadsNetwork",
    "DGMSolver",
    "CharacteristicSolver",
    "ValueGradientSolver",
    "solve_pontryagin_bvp",
    "PontryaginSolution",
    "pontryagin_data_source",
    "characteristic_data_source",
    "ControlAffineProblem",
    "rigid_body_problem",
    "simulate_closed_loop",
    "value_feedback",
    "lqr_warm_start",
    "burgers_problem",
    "chebyshev_collocation",
]
