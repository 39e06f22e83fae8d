"""A Mehrotra predictor-corrector interior point for the elastic block LPs (the default
LinPro solver)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from gaufuse_jax._src.linpro import elastic_lp as elastic_lp_lib


_UNROLL_ROWS = 8  # up to this size, unrolled scalar code beats LAPACK calls on small batches


def _cholesky(matrix):
  """Lower Cholesky factor of an SPD ``[n, n]`` matrix (unrolled for small ``n``)."""
  n = matrix.shape[0]
  if n > _UNROLL_ROWS:
    return jnp.linalg.cholesky(matrix)
  factor = [[None] * n for _ in range(n)]
  for j in range(n):
    diag = matrix[j, j] - sum(factor[j][k] * factor[j][k] for k in range(j))
    factor[j][j] = jnp.sqrt(jnp.maximum(diag, jnp.finfo(matrix.dtype).eps))
    for i in range(j + 1, n):
      dot = sum(factor[i][k] * factor[j][k] for k in range(j))
      factor[i][j] = (matrix[i, j] - dot) / factor[j][j]
  zero = jnp.zeros_like(matrix[0, 0])
  return jnp.stack([jnp.stack([v if v is not None else zero for v in row]) for row in factor])


def _cholesky_solve(factor, rhs):
  """Solves ``L L^T x = rhs`` for the lower factor ``L [n, n]`` and ``rhs [n]``."""
  n = factor.shape[0]
  if n > _UNROLL_ROWS:
    return jax.scipy.linalg.cho_solve((factor, True), rhs[:, None])[:, 0]
  y = []
  for i in range(n):
    y.append((rhs[i] - sum(factor[i, k] * y[k] for k in range(i))) / factor[i, i])
  x = [None] * n
  for i in reversed(range(n)):
    x[i] = (y[i] - sum(factor[k, i] * x[k] for k in range(i + 1, n))) / factor[i, i]
  return jnp.stack(x)


def ipm_start(lp):
  """Dual-feasible start ``(x, y, z, w)`` of ``ipm``: ``c - A^T y - z + w = 0`` at ``y = 0``,
  with a small primal mass: ``min(u / 2, 0.25)`` per class, ``min(u / 2, 0.05)`` per slack.
  On the ``benchmarks/linpro.py`` workload it takes fewer Newton steps than
  ``x = u / 2, z = w = 1`` or ``min(u / 2, 0.5)`` for all variables."""
  upper, cost = elastic_lp_lib.bounds_and_cost(lp)
  num_regions = lp.upper.shape[0]
  start = jnp.where(jnp.arange(upper.shape[0]) < num_regions, 0.25, 0.05).astype(cost.dtype)
  return (jnp.minimum(upper / 2, start), jnp.zeros(lp.rhs.shape[0], cost.dtype), cost + 1.0,
          jnp.ones_like(cost))


def ipm_step(lp, state):
  """One Mehrotra predictor-corrector step of ``ipm`` from ``state = (x, y, z, w)``."""
  x, y, z, w = state
  upper, cost = elastic_lp_lib.bounds_and_cost(lp)
  dtype = cost.dtype
  num_rows, num_regions = lp.matrix.shape
  num_vars = cost.shape[0]
  eps = jnp.finfo(dtype).eps
  guard = jnp.sqrt(eps)
  floor = jnp.sqrt(jnp.finfo(dtype).tiny)

  def max_step(v, dv):
    return jnp.minimum(1.0, jnp.min(jnp.where(dv < 0, -v / jnp.where(dv < 0, dv, -1.0), 1.0)))

  slack = upper - x
  primal = lp.rhs - elastic_lp_lib.apply(lp, x)
  dual = cost - elastic_lp_lib.apply_transpose(lp, y) - z + w
  lower_f, upper_f = jnp.maximum(x, guard), jnp.maximum(slack, guard)
  z_f, w_f = jnp.maximum(z, guard), jnp.maximum(w, guard)
  theta = 1.0 / (z_f / lower_f + w_f / upper_f)
  normal = (lp.matrix * theta[:num_regions]) @ lp.matrix.T + jnp.diag(
      theta[num_regions:num_regions + num_rows] + theta[num_regions + num_rows:])
  scale = 1.0 / jnp.sqrt(jnp.diag(normal) + floor)
  factor = _cholesky(normal * scale[:, None] * scale[None, :] +
                     eps * jnp.eye(num_rows, dtype=dtype))

  def direction(r_xz, r_sw):
    r = dual - r_xz / lower_f + r_sw / upper_f
    rhs = scale * (primal + elastic_lp_lib.apply(lp, theta * r))
    dy = scale * _cholesky_solve(factor, rhs)
    dx = theta * (elastic_lp_lib.apply_transpose(lp, dy) - r)
    return dx, dy, (r_xz - z_f * dx) / lower_f, (r_sw + w_f * dx) / upper_f

  def steps(dx, dz, dw):
    return (jnp.minimum(max_step(x, dx), max_step(slack, -dx)),
            jnp.minimum(max_step(z, dz), max_step(w, dw)))

  dx, _, dz, dw = direction(-x * z, -slack * w)
  a_p, a_d = steps(dx, dz, dw)
  mu = (x @ z + slack @ w) / (2 * num_vars)
  mu_aff = ((x + a_p * dx) @ (z + a_d * dz) + (slack - a_p * dx) @ (w + a_d * dw)) / (2 *
                                                                                       num_vars)
  sigma = jnp.clip(mu_aff / mu, 0.0, 1.0)**3
  dx, dy, dz, dw = direction(sigma * mu - x * z - dx * dz, sigma * mu - slack * w + dx * dw)
  a_p, a_d = steps(dx, dz, dw)
  return (jnp.clip(x + 0.995 * a_p * dx, floor, upper - floor), y + 0.995 * a_d * dy,
          jnp.maximum(z + 0.995 * a_d * dz, floor), jnp.maximum(w + 0.995 * a_d * dw, floor))


def ipm(lp, *, tol, max_iter):
  """Mehrotra predictor-corrector primal-dual interior point for one ``elastic_lp.ElasticLP``.

  Bounded-variable form (Wright, Primal-Dual Interior-Point Methods, ch. 11): duals ``z`` of
  ``x >= 0`` and ``w`` of ``x <= u``; each Newton step (``ipm_step``) solves the ``Kb x Kb``
  normal equations ``E diag(theta_m) E^T + diag(theta_p + theta_n)``, Jacobi-scaled and
  regularised by ``eps``, by Cholesky. As in qpax, the complementarity pairs are floored at
  ``sqrt(eps)`` inside the Newton system (not in the iterate), which keeps float32 well
  conditioned on these degenerate LPs. Starts at ``ipm_start``; stops when
  ``elastic_lp.certificate`` holds or after ``max_iter`` steps.
  """

  def body(state):
    x, y, z, w = ipm_step(lp, state[:4])
    return x, y, z, w, state[4] + 1, elastic_lp_lib.certificate(lp, x, y, tol)

  def cond(state):
    return (~state[-1]) & (state[-2] < max_iter)

  init = ipm_start(lp) + (jnp.int32(0), jnp.bool_(False))
  x, y, _, _, it, _ = jax.lax.while_loop(cond, body, init)
  return x, y, it
