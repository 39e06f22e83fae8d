"""LinPro solvers of one elastic block LP: the interior point of ``ipm.py`` and, for comparison,
qpax, mpax (PDLP) and jaxopt (BoxOSQP), each imported when first used (the ``solvers`` extra)."""

from __future__ import annotations

import functools
import importlib
from typing import Literal
import warnings

import jax.numpy as jnp

from gaufuse_jax._src.linpro import elastic_lp as elastic_lp_lib
from gaufuse_jax._src.linpro import ipm as ipm_lib


Solver = Literal["ipm", "qpax", "mpax", "jaxopt"]
SOLVERS = ("ipm", "qpax", "mpax", "jaxopt")


def check_solver(solver):
  if solver not in SOLVERS:
    raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")


def _import(name):
  """The comparison solver's package, or an ImportError that says how to install it."""
  try:
    with warnings.catch_warnings():
      warnings.simplefilter("ignore", DeprecationWarning)  # jaxopt: "no longer maintained"
      return importlib.import_module(name)
  except ImportError as e:
    raise ImportError(f"linpro solver={name!r} needs the {name} package, which is not "
                      f"installed: pip install 'gaufuse_jax[solvers]' (or use the default "
                      f"solver='ipm')") from e


def _qpax(lp, *, tol, max_iter):
  qpax = _import("qpax")
  cost, matrix, rhs, upper = elastic_lp_lib.standard_form(lp)
  num_vars = cost.shape[0]
  eye = jnp.eye(num_vars, dtype=cost.dtype)
  x, _, _, y, _, it = qpax.solve_qp(
      jnp.zeros((num_vars, num_vars), cost.dtype), cost, matrix, rhs,
      jnp.concatenate([eye, -eye]), jnp.concatenate([upper, jnp.zeros_like(upper)]),
      solver_tol=tol, max_iter=max_iter)
  return x, -y, jnp.asarray(it, jnp.int32)


def _mpax(lp, *, tol, max_iter):
  mpax = _import("mpax")
  cost, matrix, rhs, upper = elastic_lp_lib.standard_form(lp)
  num_vars = cost.shape[0]
  problem = mpax.create_lp(cost, matrix, rhs, jnp.zeros((0, num_vars), cost.dtype),
                           jnp.zeros((0,), cost.dtype), jnp.zeros_like(upper), upper,
                           use_sparse_matrix=False)
  result = mpax.r2HPDHG(eps_abs=tol, eps_rel=tol, iteration_limit=max_iter,
                        verbose=False).optimize(problem)
  return (result.primal_solution, result.dual_solution[:rhs.shape[0]],
          jnp.asarray(result.iteration_count, jnp.int32))


def _jaxopt(lp, *, tol, max_iter):
  jaxopt = _import("jaxopt")
  cost, matrix, rhs, upper = elastic_lp_lib.standard_form(lp)
  num_rows, num_vars = matrix.shape
  sol = jaxopt.BoxOSQP(tol=tol, maxiter=max_iter).run(
      params_obj=(jnp.zeros((num_vars, num_vars), cost.dtype), cost),
      params_eq=jnp.concatenate([matrix, jnp.eye(num_vars, dtype=cost.dtype)]),
      params_ineq=(jnp.concatenate([rhs, jnp.zeros_like(upper)]),
                   jnp.concatenate([rhs, upper])))
  return sol.params.primal[0], -sol.params.dual_eq[:num_rows], jnp.asarray(
      sol.state.iter_num, jnp.int32)


_SOLVER_FNS = {"ipm": ipm_lib.ipm, "qpax": _qpax, "mpax": _mpax, "jaxopt": _jaxopt}


def solve_elastic_lp(lp, *, solver="ipm", tol=None, max_iter=None):
  """Solves one ``elastic_lp.ElasticLP`` (vmappable); returns ``(x, y, iterations, certified)``."""
  check_solver(solver)
  tol = default_tolerance(solver, lp.rhs.dtype) if tol is None else tol
  max_iter = default_max_iter(solver) if max_iter is None else max_iter
  x, y, iterations = _SOLVER_FNS[solver](lp, tol=tol, max_iter=max_iter)
  return x, y, iterations, elastic_lp_lib.certificate(lp, x, y, tol)


def default_tolerance(solver, dtype):
  """Default relative tolerance (stopping and acceptance) of ``solver`` in ``dtype``."""
  f64 = jnp.dtype(dtype) == jnp.float64
  return {"ipm": (1e-5, 1e-9), "qpax": (1e-5, 1e-9), "mpax": (1e-5, 1e-8),
          "jaxopt": (1e-2, 1e-2)}[solver][int(f64)]


def default_max_iter(solver):
  """Default iteration limit (interior point: Newton steps; mpax, jaxopt: iterations)."""
  return {"ipm": 60, "qpax": 60, "mpax": 20000, "jaxopt": 4000}[solver]


def solver_steps(solver, tol, max_iter):
  """``(start, step, one_shot)`` of ``solver`` for ``tiers.solve_pool``: ``start(lp)`` is the
  initial state, ``step(lp, state, iterations)`` the next ``(state, iterations)``; ``state[:2]``
  are ``(x, y)``. The interior point steps once per call; the other solvers solve in one call."""
  if solver == "ipm":
    return ipm_lib.ipm_start, lambda lp, state, it: (ipm_lib.ipm_step(lp, state), it + 1), False
  solve = functools.partial(_SOLVER_FNS[solver], tol=tol, max_iter=max_iter)

  def start(lp):
    num_vars = elastic_lp_lib.bounds_and_cost(lp)[0].shape[0]
    return jnp.zeros(num_vars, lp.rhs.dtype), jnp.zeros_like(lp.rhs)

  def step(lp, state, it):
    del state, it
    x, y, it = solve(lp)
    return (x, y), it

  return start, step, True
