"""The elastic LP of one block (``min sum m + penalty * sum (p + n), E m + p - n = b``,
bounded variables), its operators and the optimality certificate every solver must pass."""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp



# Cost of one unit (snippet x label) of constraint violation, relative to one unit of label mass.
# Exact for feasible problems when above the largest optimal dual. Measured with HiGHS: max |dual|
# 2 on the benchmark workload, 14 on adversarial random problems (tests compare with HiGHS).
PENALTY = 1e3


class ElasticLP(NamedTuple):
  """``min sum(m) + penalty * sum(p + n)  s.t.  E m + p - n = b,  0 <= m <= upper,
  0 <= p, n <= slack_upper`` (one block; ``m`` class masses, ``p, n`` row slacks)."""
  matrix: jax.Array  # E [Kb, R]
  rhs: jax.Array  # b [Kb]
  upper: jax.Array  # [R]
  slack_upper: jax.Array  # [Kb]


def bounds_and_cost(lp):
  """Upper bounds and costs of the stacked variables ``x = [m (R), p (Kb), n (Kb)]``."""
  upper = jnp.concatenate([lp.upper, lp.slack_upper, lp.slack_upper])
  num_regions, num_rows = lp.upper.shape[0], lp.rhs.shape[0]
  cost = jnp.concatenate([jnp.ones(num_regions, upper.dtype),
                          jnp.full((2 * num_rows,), PENALTY, upper.dtype)])
  return upper, cost


def apply(lp, x):
  """``A x = E m + p - n``."""
  num_regions, num_rows = lp.upper.shape[0], lp.rhs.shape[0]
  slack = x[num_regions:num_regions + num_rows] - x[num_regions + num_rows:]
  return lp.matrix @ x[:num_regions] + slack


def apply_transpose(lp, y):
  """``A^T y = [E^T y, y, -y]``."""
  return jnp.concatenate([lp.matrix.T @ y, y, -y])


def standard_form(lp):
  """Explicit ``(cost [n], A [Kb, n], b [Kb], upper [n])`` of ``min c.x, A x = b, 0 <= x <= u``."""
  upper, cost = bounds_and_cost(lp)
  eye = jnp.eye(lp.rhs.shape[0], dtype=lp.rhs.dtype)
  return cost, jnp.concatenate([lp.matrix, eye, -eye], axis=1), lp.rhs, upper

def certificate(lp, x, y, tol):
  """True if ``x`` is ``tol``-optimal, certified by the duals ``y`` through weak duality.

  Checks the relative primal residual, the bounds and the relative gap between ``c.x`` and the
  dual bound ``b.y + sum_i min(c - A^T y, 0)_i u_i`` (valid for any ``y``), all finite.
  """
  upper, cost = bounds_and_cost(lp)
  primal = jnp.max(jnp.abs(apply(lp, x) - lp.rhs)) <= tol * (1.0 + jnp.max(jnp.abs(lp.rhs)))
  box = jnp.all((x >= -tol) & (x <= upper * (1.0 + tol) + tol))
  reduced = cost - apply_transpose(lp, y)
  dual_objective = lp.rhs @ y + jnp.minimum(reduced, 0.0) @ upper
  objective = cost @ x
  gap = jnp.abs(objective - dual_objective) <= tol * (1.0 + jnp.abs(objective))
  finite = jnp.all(jnp.isfinite(x)) & jnp.all(jnp.isfinite(y))
  return primal & box & gap & finite
