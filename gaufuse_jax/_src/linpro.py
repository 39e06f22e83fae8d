"""LinPro: snippet pseudo labels from fused instances by a linear program (paper §3.2, eq. 5-6).

For one video and one class, the K fused instances ``[s_k, e_k)`` (snippets) with scores
``b_k`` give the constraints (paper eq. 5; the authors' ``utils/utils.py:compute_score_matrix``)

  ``sum_{t in inner_k} a_k(t) x_t - sum_{t in outer_k} a_k(t) x_t = b_k``,

with the inner and outer areas of ``instance_areas`` (by default exactly the authors' rows:
inner ``[int(s_k), int(e_k))``, outer ``[int(s_k) - ceil(w), int(s_k))`` and
``[int(e_k), min(int(e_k) + floor(w) + 1, L - 1))``, ``w = 0.0785 len^0.9``), and ``a_k = 1``
(``normalize="sum"``, the authors' code: a constraint on sums) or ``a_k = 1 / |area|``
(``normalize="mean"``, the paper's text: "the average score of snippets within an action
boundary equals its confidence"). The label is the solution of
(paper eq. 6)

  ``minimize sum_t x_t  subject to  A x = b,  0 <= x <= 1``,

after which snippets with identical columns of ``A`` ("equivalent snippets") get the average of
their values. We do that exactly and cheaply:

* **Reduction.** Columns of ``A`` are piecewise constant between the breakpoints (area bounds), so
  snippets are grouped into regions between sorted breakpoints and regions with identical columns
  (e.g. the left and right outer areas of an instance) into *classes*. The reduced LP has one
  variable per class, the class mass ``m_c = sum_{t in c} x_t`` in ``[0, |c|]``, with cost 1 and
  constraint coefficient ``a_k(c)``. Any solution of the full LP averaged over classes is feasible
  and optimal for the reduced LP and vice versa, so the optima agree (tested against HiGHS on the
  full LP) and the broadcast labels ``x_t = m_c / |c|`` are equal on equivalent snippets by
  construction.
* **Decomposition.** Instances whose supports (inner plus outer areas) do not overlap, directly or
  through others, give independent LPs. Rows are sorted by support start and split into connected
  components; components of up to ``block_rows`` rows (2x, 4x ``block_rows``, ``K`` rows: the
  larger tiers) are packed by next fit into blocks of that many rows, each block solved as its own
  small LP (exact; a Newton step then costs ``O(block_rows^2)`` per row instead of a dense
  ``O(K^3)``). Only non-empty blocks are solved: the blocks of all problems of a batch are pooled
  per tier and solved on a fixed number of lanes, one batched Newton step at a time, a lane taking
  the next block as soon as its block is certified (a loop of data-dependent length: a batch
  costs the sum of its blocks' steps), so unused tiers cost nothing. The problems with rows are
  taken ``problem_chunk`` at a time until none is left (``active_map.map_active``), so problems
  without rows (classes gated off) cost nothing either, whatever the instance cap ``K``.
* **Pieces.** The labels of a problem are constant on the regions of its blocks and 0 between
  blocks: ``linpro_solve`` returns them as pieces (``LinproSolution``, a slot per region), whose
  shapes do not depend on the padded length ``T``, so one compiled LP serves videos of every
  length; ``linpro_assemble`` lays them out on ``T`` snippets. ``linpro_labels`` is the two.
* **Infeasible LPs** (e.g. a negative score on an instance without outer area, nested instances
  without outer area whose scores decrease inwards, identical rows with different scores; the
  authors' ``utils/utils.py:convert_segment_to_tensor`` writes NaN into the labels then) are
  handled by solving the
  *elastic* LP: every row gets slacks ``p_k, n_k >= 0`` with ``E m + p - n = b`` and the objective
  ``sum m + penalty * sum (p + n)``. For a feasible LP with ``penalty`` above the largest optimal
  dual (exact penalty) its solution is the LP solution; otherwise it is the label that violates
  the instance constraints least (in total, mass units), then has the least mass. Such problems
  are reported with ``info["status"] == STATUS_RELAXED`` and their violated rows counted. A solve
  that does not pass our own optimality certificate (primal residual, bounds, duality gap, all
  finite) gives zero labels for the class and ``STATUS_FAILED``. Labels are never NaN or inf.

Solvers (``solver=``), all jitted and batched with ``vmap`` over blocks and problems; all solve the
same elastic reduced LP (standard form ``min c.x, A x = b, 0 <= x <= u``) and are accepted only
by our certificate (``_certificate``: relative primal residual, bounds and weak-duality gap from
the returned duals), never by their own flags:

* ``"ipm"`` (default): a Mehrotra predictor-corrector interior point written here; a Newton step
  factorises the ``block_rows x block_rows`` normal equations (Cholesky, unrolled for small
  blocks). ~15-30 steps to the default tolerance (1e-9 in float64, 1e-5 in float32).
* ``"qpax"``: qpax's primal-dual interior point with ``Q = 0``; it factorises the dense ``n x n``
  Hessian (``n`` = classes + 2 slacks per row, about ``6 * block_rows``), so a step costs
  ``O(n^3)``; as accurate as ``"ipm"``, ~20x slower. (With jax 0.10.2 on CPU, qpax inside the
  full batched function hung in XLA, reproducibly, on 16-row problems; small ones run.)
* ``"mpax"``: PDLP (``r2HPDHG``) under jit with an ``iteration_limit`` (default 20000); first
  order, thousands of matrix-vector products; in float32 it often stops short of 1e-5.
* ``"jaxopt"``: jaxopt ``BoxOSQP`` (ADMM, ``Q = 0``); on these LPs it does not reach 1e-3 in 4000
  iterations on many problems, so its default tolerance is 1e-2 and failures are common.

Why ``"ipm"`` is the default (``benchmarks/linpro.py``, THUMOS14-sized workload, 227 LPs, one
CPU core, float32): it is the only solver that certifies every problem at 1e-5 and matches HiGHS
(max relative objective error 3.6e-6, same feasible / infeasible split), about 22x faster than
scipy HiGHS one LP at a time (55-85x on the LPs of up to 4 rows, 6-9x on those of 128-256
rows, whose many blocks each take ~6 batched Newton steps). On the 78 LPs of <= 8 rows, qpax
is as accurate but ~50x slower than ``"ipm"``, BoxOSQP (33 uncertified) ~45x and mpax (18
uncertified) ~100x slower. The interior point starts dual feasible (``z = c + 1, w = 1``
at ``y = 0``, small ``x``, ``_ipm_start``): 4-8 Newton steps on most blocks, about half those
from ``z = w = 1``.

Float32: the LPs are highly degenerate; the interior point floors the complementarity pairs at
``sqrt(eps)`` inside the Newton system (as qpax does), which certifies all realistic problems,
but a rare ill-conditioned one (~0.3 % of adversarial random problems in the tests) fails the
certificate and gets zero labels (``STATUS_FAILED``, counted). Enable x64 for exact labels.
"""

from __future__ import annotations

import functools
from typing import Literal, NamedTuple
import warnings

import jax
import jax.numpy as jnp

from gaufuse_jax._src import active_map
from gaufuse_jax._src import segments as segments_lib

Normalize = Literal["sum", "mean"]
Solver = Literal["ipm", "qpax", "mpax", "jaxopt"]
SOLVERS = ("ipm", "qpax", "mpax", "jaxopt")
NORMALIZATIONS = ("sum", "mean")

STATUS_SOLVED = 0  # all instance constraints hold (to tolerance): the LP optimum.
STATUS_RELAXED = 1  # infeasible LP: elastic solution, some rows violated (counted).
STATUS_FAILED = 2  # no certified solution: zero labels for the class.

_INNER, _OUTER = 1, 2
# Cost of one unit (snippet x label) of constraint violation, relative to one unit of label mass.
# Exact for feasible problems when above the largest optimal dual. Measured with HiGHS: max |dual|
# 2 on the benchmark workload, 14 on adversarial random problems (tests compare with HiGHS).
_PENALTY = 1e3
_NO_PIECE = 2**31 - 1  # start of an unused piece of a LinproSolution: after every snippet


# --------------------------------------------------------------------------------------------
# Constraints.


def _check_options(outer_rule=None, normalize=None, solver=None):
  if outer_rule is not None and outer_rule not in ("gaufuse", "wtalc"):
    raise ValueError(f"outer_rule must be 'gaufuse' or 'wtalc', got {outer_rule!r}")
  if normalize is not None and normalize not in NORMALIZATIONS:
    raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {normalize!r}")
  if solver is not None and solver not in SOLVERS:
    raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")


def _check_shapes(segments, scores, valid, name="linpro"):
  if segments.ndim < 2 or segments.shape[-1] != 2:
    raise ValueError(f"{name}: segments must have shape [..., K, 2], got {segments.shape}")
  if scores.shape != segments.shape[:-1]:
    raise ValueError(
        f"{name}: scores must have shape {segments.shape[:-1]} (segments[..., 0]), "
        f"got {scores.shape}")
  if valid.shape != scores.shape:
    raise ValueError(f"{name}: valid must have shape {scores.shape}, got {valid.shape}")


def instance_areas(segments, valid, valid_length, outer_rule="gaufuse",
                   conventions: segments_lib.Conventions = "reference"):
  """Integer area bounds of each instance: left outer, inner, right outer.

  With ``(wl, wr) = segments.outer_width(e - s, outer_rule, conventions)``:

  * ``conventions="reference"`` (the authors' ``utils/utils.py:compute_score_matrix``):
    ``s = int(start)``, ``e = int(end)`` (truncation toward zero), inner ``[s, e)``, outer
    ``[s - wl, s)`` and ``[e, min(e + wr + 1, L - 1))``: the right area is one snippet wider
    than in the proposals' score, and the video's last snippet is never outer;
  * ``conventions="exact"``: ``s = floor(start)``, ``e = floor(end)``, inner ``[s, e)``, outer
    ``[s - wl, s)`` and ``[e, e + wr)``.

  All areas are clipped to ``[0, L]`` (the authors' code has no lower clip on the inner area:
  a negative start would wrap around there).

  Args:
    segments: ``[K, 2]`` float ``(start, end)`` in snippets.
    valid: ``[K]`` bool.
    valid_length: int scalar, number of real snippets ``L`` of the video.
    outer_rule: rule of ``segments.outer_width``.
    conventions: ``"reference"`` (default) or ``"exact"``.

  Returns:
    ``[K, 4]`` int32 ``(left_lo, inner_lo, inner_hi, right_hi)`` with
    ``left_lo <= inner_lo <= inner_hi <= right_hi``; all zero for invalid rows.
  """
  segments_lib.check_conventions("instance_areas", conventions)
  length = jnp.asarray(valid_length, jnp.int32)
  cast = jnp.trunc if conventions == "reference" else jnp.floor
  start = cast(segments[:, 0]).astype(jnp.int32)
  end = cast(segments[:, 1]).astype(jnp.int32)
  width_left, width_right = segments_lib.outer_width(end - start, outer_rule, conventions)
  right_end = end + width_right
  if conventions == "reference":
    right_end = jnp.minimum(right_end + 1, length - 1)
  inner_lo = jnp.clip(start, 0, length)
  inner_hi = jnp.clip(end, inner_lo, length)
  left_lo = jnp.clip(start - width_left, 0, inner_lo)
  right_hi = jnp.clip(right_end, inner_hi, length)
  areas = jnp.stack([left_lo, inner_lo, inner_hi, right_hi], axis=-1)
  return jnp.where(valid[:, None], areas, 0)


def _area_codes(areas, points):
  """``[K, P]`` int32: ``_INNER`` / ``_OUTER`` / 0 for each instance at integer ``points [P]``."""
  p = points[None, :]
  left_lo, inner_lo, inner_hi, right_hi = (areas[:, i:i + 1] for i in range(4))
  inner = (p >= inner_lo) & (p < inner_hi)
  outer = ((p >= left_lo) & (p < inner_lo)) | ((p >= inner_hi) & (p < right_hi))
  return jnp.where(inner, _INNER, jnp.where(outer, _OUTER, 0))


def _coefficients(areas, codes, normalize, dtype):
  """``[K, P]`` constraint coefficients for area ``codes [K, P]``: +-1 or +-1/area size."""
  if normalize == "sum":
    inner = outer = jnp.ones(areas.shape[0], dtype)
  else:
    n_inner = (areas[:, 2] - areas[:, 1]).astype(dtype)
    n_outer = (areas[:, 1] - areas[:, 0] + areas[:, 3] - areas[:, 2]).astype(dtype)
    inner = 1.0 / jnp.maximum(n_inner, 1.0)
    outer = 1.0 / jnp.maximum(n_outer, 1.0)
  return jnp.where(codes == _INNER, inner[:, None],
                   jnp.where(codes == _OUTER, -outer[:, None], 0.0)).astype(dtype)


@functools.partial(jax.jit,
                   static_argnames=("num_snippets", "outer_rule", "conventions", "normalize"))
def linpro_constraints(segments, scores, valid, valid_length, *, num_snippets,
                       outer_rule: segments_lib.OuterRule = "gaufuse",
                       conventions: segments_lib.Conventions = "reference",
                       normalize: Normalize = "sum"):
  """LinPro constraint matrix of one video and class (paper eq. 5; the authors'
  ``utils/utils.py:compute_score_matrix``).

  Args:
    segments: ``[K, 2]`` float fused instances ``(start, end)`` in snippets.
    scores: ``[K]`` float instance scores ``b``.
    valid: ``[K]`` bool, padding rows are False.
    valid_length: int scalar ``L <= T``; snippets ``>= L`` are padding (columns all zero).
    num_snippets: static ``T``.
    outer_rule: ``"gaufuse"`` (``w = 0.0785 len^0.9``) or ``"wtalc"`` (``w = 0.25 len``), see
      ``instance_areas``.
    conventions: ``"reference"`` (default, the authors' rows) or ``"exact"``, see
      ``instance_areas``.
    normalize: ``"sum"`` (default, the authors' code): +1 on the inner area, -1 on the outer
      areas, so the constraint is on label sums; ``"mean"`` (the paper's text): ``+1/|inner|``
      and ``-1/|outer|`` (both sides together), a constraint on mean labels.

  Returns:
    ``A``: ``[K, T]`` float (default float dtype); row k as in the module docstring, zero for
    invalid rows. ``b``: ``[K]``, ``scores`` where valid, else 0.

  Raises:
    ValueError: for bad shapes or unknown ``outer_rule`` / ``conventions`` / ``normalize``.
  """
  _check_options(outer_rule, normalize)
  segments, scores, valid = _as_arrays(segments, scores, valid)
  _check_shapes(segments, scores, valid, "linpro_constraints")
  if segments.ndim != 2:
    raise ValueError(f"linpro_constraints: segments must have shape [K, 2], got {segments.shape}")
  dtype = scores.dtype
  areas = instance_areas(segments, valid, valid_length, outer_rule, conventions)
  codes = _area_codes(areas, jnp.arange(num_snippets, dtype=jnp.int32))
  return _coefficients(areas, codes, normalize, dtype), jnp.where(valid, scores, 0.0)


def _as_arrays(segments, scores, valid):
  dtype = jnp.result_type(float)
  return (jnp.asarray(segments, dtype), jnp.asarray(scores, dtype), jnp.asarray(valid, bool))


# --------------------------------------------------------------------------------------------
# Decomposition into blocks of independent rows.


def _components(areas, valid):
  """Connected components of one problem's rows (supports overlapping, transitively).

  Rows are sorted by support start (``left_lo``, invalid rows last); a component is then a run
  of sorted rows. Returns ``order [K]`` (sorted row indices), ``starts [K]`` (bool, a sorted row
  opens a component), ``size [K]`` (rows in the component of each sorted row) and ``ok [K]``
  (the sorted row is valid).
  """
  num_rows = areas.shape[0]
  lo, hi = areas[:, 0], areas[:, 3]
  order = jnp.argsort(jnp.where(valid, lo, jnp.iinfo(jnp.int32).max), stable=True)
  lo, hi, ok = lo[order], hi[order], valid[order]
  reach = jax.lax.cummax(jnp.where(ok, hi, -1))
  starts = ok & (lo >= jnp.concatenate([jnp.full((1,), -1, reach.dtype), reach[:-1]]))
  component = jnp.maximum(jnp.cumsum(starts) - 1, 0)
  size = jax.ops.segment_sum(ok.astype(jnp.int32), component, num_rows)[component]
  return order, starts, jnp.where(ok, size, 0), ok


def _tiers(num_rows, block_rows):
  """``(rows per block, smallest component)`` of each tier: components of ``min..rows`` rows."""
  sizes = sorted({min(block_rows * 2**i, num_rows) for i in range(3)} | {num_rows})
  return list(zip(sizes, [1] + [s + 1 for s in sizes[:-1]]))


def _num_blocks(num_rows, block_rows, min_size):
  # Next fit: two consecutive blocks hold > block_rows rows; each block holds a component.
  return min(2 * -(-num_rows // block_rows) - 1, num_rows // min_size)


def _pack_blocks(order, starts, size, in_tier, *, block_rows, num_blocks):
  """Packs one problem's components of one tier into blocks of ``block_rows`` rows, by next fit.

  ``order, starts, size`` are ``_components``; ``in_tier [K]`` marks the sorted rows of the
  tier's components (all of at most ``block_rows`` rows). Blocks and the rows in them are in
  time order. Returns ``rows [num_blocks, block_rows]`` int32 row indices, ``K`` for empty slots.
  """
  num_rows = order.shape[0]

  def next_fit(carry, row):
    block, fill = carry
    is_start, row_size, row_in = row
    new = is_start & (fill > 0) & (fill + row_size > block_rows)
    block, fill = block + new, jnp.where(new, 0, fill)
    return (block, fill + row_in), (block, fill)

  _, (block, slot) = jax.lax.scan(next_fit, (jnp.int32(0), jnp.int32(0)),
                                  (starts & in_tier, size, in_tier))
  block = jnp.where(in_tier, block, num_blocks)  # rows of other tiers are dropped by the scatter
  rows = jnp.full((num_blocks, block_rows), num_rows, jnp.int32)
  return rows.at[block, slot].set(order.astype(jnp.int32), mode="drop")


# --------------------------------------------------------------------------------------------
# The reduced elastic LP of one block.


class ElasticLP(NamedTuple):
  """``min sum(m) + penalty * sum(p + n)  s.t.  E m + p - n = b,  0 <= m <= upper,
  0 <= p, n <= slack_upper`` (one block; ``m`` class masses, ``p, n`` row slacks)."""
  matrix: jax.Array  # E [Kb, R]
  rhs: jax.Array  # b [Kb]
  upper: jax.Array  # [R]
  slack_upper: jax.Array  # [Kb]


def _bounds_and_cost(lp):
  """Upper bounds and costs of the stacked variables ``x = [m (R), p (Kb), n (Kb)]``."""
  upper = jnp.concatenate([lp.upper, lp.slack_upper, lp.slack_upper])
  num_regions, num_rows = lp.upper.shape[0], lp.rhs.shape[0]
  cost = jnp.concatenate([jnp.ones(num_regions, upper.dtype),
                          jnp.full((2 * num_rows,), _PENALTY, upper.dtype)])
  return upper, cost


def _apply(lp, x):
  """``A x = E m + p - n``."""
  num_regions, num_rows = lp.upper.shape[0], lp.rhs.shape[0]
  slack = x[num_regions:num_regions + num_rows] - x[num_regions + num_rows:]
  return lp.matrix @ x[:num_regions] + slack


def _apply_transpose(lp, y):
  """``A^T y = [E^T y, y, -y]``."""
  return jnp.concatenate([lp.matrix.T @ y, y, -y])


def standard_form(lp):
  """Explicit ``(cost [n], A [Kb, n], b [Kb], upper [n])`` of ``min c.x, A x = b, 0 <= x <= u``."""
  upper, cost = _bounds_and_cost(lp)
  eye = jnp.eye(lp.rhs.shape[0], dtype=lp.rhs.dtype)
  return cost, jnp.concatenate([lp.matrix, eye, -eye], axis=1), lp.rhs, upper


def _class_representatives(codes):
  """``[P]`` index of the first column of ``codes [Kb, P]`` (values 0..2) equal to each column."""
  digits = 19  # 3**19 < 2**31: a column chunk of 19 codes is one exact int32 hash.
  num_rows, num_points = codes.shape
  words = -(-num_rows // digits)
  codes = jnp.pad(codes, ((0, words * digits - num_rows), (0, 0))).reshape(words, digits, -1)
  powers = (3**jnp.arange(digits, dtype=jnp.int32))[None, :, None]
  hashes = jnp.sum(codes * powers, axis=1)
  same = jnp.all(hashes[:, :, None] == hashes[:, None, :], axis=0)
  columns = jnp.arange(num_points, dtype=jnp.int32)
  # The first equal column, as argmax(same) would give: 0.10 -> 0.08 ms per 32-block chunk.
  return jnp.min(jnp.where(same, columns[None, :], num_points), axis=1)


def _reduce_block(areas, valid, scores, normalize):
  """Reduced elastic LP of one block of ``Kb`` rows (``areas [Kb, 4]``, ``valid``, ``scores``).

  Returns ``points [4Kb + 1]`` (sorted breakpoints, the last one repeated; region j is
  ``[points[j], points[j+1])``, so the last region is empty), ``representative [4Kb]`` (the class
  of each region: its first region with the same column of ``A``), ``size [4Kb]`` (snippets per
  class on representatives, 0 elsewhere) and the ``ElasticLP`` over class masses, rows scaled to
  max |coefficient| 1 (masses stay in snippets).
  """
  dtype = scores.dtype
  top = jnp.max(jnp.where(valid, areas[:, 3], 0))
  # 4Kb regions, the last one empty: with 4Kb + 2Kb variables (48 for Kb = 8) instead of the
  # 4Kb - 1 + 2Kb of the 4Kb breakpoints alone, XLA:CPU's Newton steps take ~24% less time and the
  # benchmarks/linpro.py workload ~17% less (25.1 -> 20.9 ms, one core).
  points = jnp.sort(jnp.concatenate([jnp.where(valid[:, None], areas, top).ravel(), top[None]]))
  region_size = points[1:] - points[:-1]
  codes = jnp.where(valid[:, None], _area_codes(areas, points[:-1]), 0)
  representative = _class_representatives(codes)
  size = jax.ops.segment_sum(region_size, representative, region_size.shape[0]).astype(dtype)
  used = size > 0
  coef = jnp.where(used[None, :], _coefficients(areas, codes, normalize, dtype), 0.0)
  scale = jnp.max(jnp.abs(coef), axis=1)
  scale = jnp.where(scale > 0, scale, 1.0)
  coef, rhs = coef / scale[:, None], jnp.where(valid, scores, 0.0) / scale
  upper = jnp.where(used, size, 1.0)  # unused columns are empty: cost 1 keeps them at 0
  slack_upper = jnp.abs(rhs) + jnp.abs(coef) @ upper + 1.0
  return points, representative, size, ElasticLP(coef, rhs, upper, slack_upper)


# --------------------------------------------------------------------------------------------
# Solvers. Each returns (x, y, iterations) for x = [m, p, n] and the equality duals y, signed so
# that c - A^T y are the reduced costs; acceptance is decided by _certificate.


def _certificate(lp, x, y, tol):
  """True if ``x`` is ``tol``-optimal, certified by the duals ``y`` through weak duality.

  Checks the relative primal residual, the bounds and the relative gap between ``c.x`` and the
  dual bound ``b.y + sum_i min(c - A^T y, 0)_i u_i`` (valid for any ``y``), all finite.
  """
  upper, cost = _bounds_and_cost(lp)
  primal = jnp.max(jnp.abs(_apply(lp, x) - lp.rhs)) <= tol * (1.0 + jnp.max(jnp.abs(lp.rhs)))
  box = jnp.all((x >= -tol) & (x <= upper * (1.0 + tol) + tol))
  reduced = cost - _apply_transpose(lp, y)
  dual_objective = lp.rhs @ y + jnp.minimum(reduced, 0.0) @ upper
  objective = cost @ x
  gap = jnp.abs(objective - dual_objective) <= tol * (1.0 + jnp.abs(objective))
  finite = jnp.all(jnp.isfinite(x)) & jnp.all(jnp.isfinite(y))
  return primal & box & gap & finite


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


def _ipm_start(lp):
  """Dual-feasible start ``(x, y, z, w)`` of ``_ipm``: ``c - A^T y - z + w = 0`` at ``y = 0``,
  with a small primal mass: ``min(u / 2, 0.25)`` per class, ``min(u / 2, 0.05)`` per slack.
  On the benchmark workload that takes about half the Newton steps of ``x = u / 2, z = w = 1``
  and 13 % fewer than ``min(u / 2, 0.5)`` for all variables."""
  upper, cost = _bounds_and_cost(lp)
  num_regions = lp.upper.shape[0]
  start = jnp.where(jnp.arange(upper.shape[0]) < num_regions, 0.25, 0.05).astype(cost.dtype)
  return (jnp.minimum(upper / 2, start), jnp.zeros(lp.rhs.shape[0], cost.dtype), cost + 1.0,
          jnp.ones_like(cost))


def _ipm_step(lp, state):
  """One Mehrotra predictor-corrector step of ``_ipm`` from ``state = (x, y, z, w)``."""
  x, y, z, w = state
  upper, cost = _bounds_and_cost(lp)
  dtype = cost.dtype
  num_rows, num_regions = lp.matrix.shape
  num_vars = cost.shape[0]
  eps = jnp.finfo(dtype).eps
  guard = jnp.sqrt(eps)
  floor = jnp.sqrt(jnp.finfo(dtype).tiny)

  def max_step(v, dv):
    return jnp.minimum(1.0, jnp.min(jnp.where(dv < 0, -v / jnp.where(dv < 0, dv, -1.0), 1.0)))

  slack = upper - x
  primal = lp.rhs - _apply(lp, x)
  dual = cost - _apply_transpose(lp, y) - z + w
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
    rhs = scale * (primal + _apply(lp, theta * r))
    dy = scale * _cholesky_solve(factor, rhs)
    dx = theta * (_apply_transpose(lp, dy) - r)
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


def _ipm(lp, *, tol, max_iter):
  """Mehrotra predictor-corrector primal-dual interior point for one ``ElasticLP``.

  Bounded-variable form (Wright, Primal-Dual Interior-Point Methods, ch. 11): duals ``z`` of
  ``x >= 0`` and ``w`` of ``x <= u``; each Newton step (``_ipm_step``) solves the ``Kb x Kb``
  normal equations ``E diag(theta_m) E^T + diag(theta_p + theta_n)``, Jacobi-scaled and
  regularised by ``eps``, by Cholesky. As in qpax, the complementarity pairs are floored at
  ``sqrt(eps)`` inside the Newton system (not in the iterate), which keeps float32 well
  conditioned on these degenerate LPs. Starts at ``_ipm_start``; stops when ``_certificate``
  holds or after ``max_iter`` steps.
  """

  def body(state):
    x, y, z, w = _ipm_step(lp, state[:4])
    return x, y, z, w, state[4] + 1, _certificate(lp, x, y, tol)

  def cond(state):
    return (~state[-1]) & (state[-2] < max_iter)

  init = _ipm_start(lp) + (jnp.int32(0), jnp.bool_(False))
  x, y, _, _, it, _ = jax.lax.while_loop(cond, body, init)
  return x, y, it


def _qpax(lp, *, tol, max_iter):
  import qpax  # pylint: disable=g-import-not-at-top
  cost, matrix, rhs, upper = standard_form(lp)
  num_vars = cost.shape[0]
  eye = jnp.eye(num_vars, dtype=cost.dtype)
  x, _, _, y, _, it = qpax.solve_qp(
      jnp.zeros((num_vars, num_vars), cost.dtype), cost, matrix, rhs,
      jnp.concatenate([eye, -eye]), jnp.concatenate([upper, jnp.zeros_like(upper)]),
      solver_tol=tol, max_iter=max_iter)
  return x, -y, jnp.asarray(it, jnp.int32)


def _mpax(lp, *, tol, max_iter):
  import mpax  # pylint: disable=g-import-not-at-top
  cost, matrix, rhs, upper = standard_form(lp)
  num_vars = cost.shape[0]
  problem = mpax.create_lp(cost, matrix, rhs, jnp.zeros((0, num_vars), cost.dtype),
                           jnp.zeros((0,), cost.dtype), jnp.zeros_like(upper), upper,
                           use_sparse_matrix=False)
  result = mpax.r2HPDHG(eps_abs=tol, eps_rel=tol, iteration_limit=max_iter,
                        verbose=False).optimize(problem)
  return (result.primal_solution, result.dual_solution[:rhs.shape[0]],
          jnp.asarray(result.iteration_count, jnp.int32))


def _jaxopt(lp, *, tol, max_iter):
  with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import jaxopt  # pylint: disable=g-import-not-at-top
  cost, matrix, rhs, upper = standard_form(lp)
  num_rows, num_vars = matrix.shape
  sol = jaxopt.BoxOSQP(tol=tol, maxiter=max_iter).run(
      params_obj=(jnp.zeros((num_vars, num_vars), cost.dtype), cost),
      params_eq=jnp.concatenate([matrix, jnp.eye(num_vars, dtype=cost.dtype)]),
      params_ineq=(jnp.concatenate([rhs, jnp.zeros_like(upper)]),
                   jnp.concatenate([rhs, upper])))
  return sol.params.primal[0], -sol.params.dual_eq[:num_rows], jnp.asarray(
      sol.state.iter_num, jnp.int32)


_SOLVER_FNS = {"ipm": _ipm, "qpax": _qpax, "mpax": _mpax, "jaxopt": _jaxopt}


def solve_elastic_lp(lp, *, solver="ipm", tol=None, max_iter=None):
  """Solves one ``ElasticLP`` (vmappable); returns ``(x, y, iterations, certified)``."""
  _check_options(solver=solver)
  tol = default_tolerance(solver, lp.rhs.dtype) if tol is None else tol
  max_iter = default_max_iter(solver) if max_iter is None else max_iter
  x, y, iterations = _SOLVER_FNS[solver](lp, tol=tol, max_iter=max_iter)
  return x, y, iterations, _certificate(lp, x, y, tol)


def default_tolerance(solver, dtype):
  """Default relative tolerance (stopping and acceptance) of ``solver`` in ``dtype``."""
  f64 = jnp.dtype(dtype) == jnp.float64
  return {"ipm": (1e-5, 1e-9), "qpax": (1e-5, 1e-9), "mpax": (1e-5, 1e-8),
          "jaxopt": (1e-2, 1e-2)}[solver][int(f64)]


def default_max_iter(solver):
  """Default iteration limit (interior point: Newton steps; mpax, jaxopt: iterations)."""
  return {"ipm": 60, "qpax": 60, "mpax": 20000, "jaxopt": 4000}[solver]


# --------------------------------------------------------------------------------------------
# Labels.

# Work of the blocks solved together (lanes of one batched interior-point step), in units of
# (rows per block)^3, the cost of a Newton step: 32 blocks of 8 rows, 4 of 16, 1 larger. Large
# enough to amortise the per-step overhead, small enough that the last blocks leave few lanes idle.
_CHUNK_WORK = 32 * 8**3


class _TierResult(NamedTuple):
  """Solved blocks of one tier, ``NB`` blocks of ``Kb`` rows; blocks ``>= count`` are unused."""
  problem: jax.Array  # [NB] int32 problem of each block
  used: jax.Array  # [NB] bool
  points: jax.Array  # [NB, 4 Kb + 1] int32 sorted breakpoints, snippets
  value: jax.Array  # [NB, 4 Kb] label of each region [points[j], points[j + 1])
  certified: jax.Array  # [NB] bool
  iterations: jax.Array  # [NB] int32
  violation: jax.Array  # [NB, Kb] |row residual| in mass units, 0 on empty slots
  violated: jax.Array  # [NB, Kb] bool


def _map_chunks(fn, args, count, chunk):
  """``vmap(fn)(*args)`` on the first ``count`` entries of ``args`` (arrays ``[NB, ...]``, ``NB`` a
  multiple of ``chunk``), ``chunk`` at a time in a loop of dynamic length; zeros elsewhere."""
  total = jax.tree.leaves(args)[0].shape[0]
  take = lambda start: jax.tree.map(
      lambda a: jax.lax.dynamic_slice_in_dim(a, start, chunk), args)

  def body(i, out):
    new = jax.vmap(fn)(*take(i * chunk))
    return jax.tree.map(lambda o, n: jax.lax.dynamic_update_slice_in_dim(o, n, i * chunk, 0),
                        out, new)

  shapes = jax.eval_shape(jax.vmap(fn), *take(0))
  init = jax.tree.map(lambda s: jnp.zeros((total,) + s.shape[1:], s.dtype), shapes)
  return jax.lax.fori_loop(0, -(-count // chunk), body, init)


def _solver_steps(solver, tol, max_iter):
  """``(start, step, one_shot)`` of ``solver`` for ``_solve_pool``: ``start(lp)`` is the initial
  state, ``step(lp, state, iterations)`` the next ``(state, iterations)``; ``state[:2]`` are
  ``(x, y)``. The interior point steps once per call; the other solvers solve in one call."""
  if solver == "ipm":
    return _ipm_start, lambda lp, state, it: (_ipm_step(lp, state), it + 1), False
  solve = functools.partial(_SOLVER_FNS[solver], tol=tol, max_iter=max_iter)

  def start(lp):
    num_vars = _bounds_and_cost(lp)[0].shape[0]
    return jnp.zeros(num_vars, lp.rhs.dtype), jnp.zeros_like(lp.rhs)

  def step(lp, state, it):
    del state, it
    x, y, it = solve(lp)
    return (x, y), it

  return start, step, True


def _solve_pool(lps, count, *, lanes, solver, tol, max_iter):
  """Solves the first ``count`` block LPs of ``lps`` (an ``ElasticLP`` of ``[NB, ...]`` arrays).

  ``lanes`` blocks are solved at once, one batched step at a time; a lane whose block passes the
  certificate (or runs out of steps) stores it and takes the next block. A batch so costs the sum
  of its blocks' Newton steps, not ``lanes`` times its slowest block's (about 1.5x fewer
  lane-steps on the benchmark workload). Solvers other than ``"ipm"`` solve a block in one step.
  Returns ``x [NB, n]``, ``iterations [NB]`` int32 and ``certified [NB]`` bool, zeros for blocks
  ``>= count``.
  """
  num_blocks = lps.rhs.shape[0]
  start, step, one_shot = _solver_steps(solver, tol, max_iter)
  step, certificate = jax.vmap(step), jax.vmap(functools.partial(_certificate, tol=tol))

  def load(block):
    lp = jax.tree.map(lambda a: a[jnp.minimum(block, num_blocks - 1)], lps)
    return lp, jax.vmap(start)(lp)

  def body(carry):
    block, lp, state, it, taken, out = carry
    state, it = step(lp, state, it)
    certified = certificate(lp, state[0], state[1])
    done = (block < count) & (certified | (it >= max_iter) | one_shot)
    out = tuple(o.at[jnp.where(done, block, num_blocks)].set(v, mode="drop")
                for o, v in zip(out, (state[0], it, certified)))
    new = taken + jnp.cumsum(done, dtype=jnp.int32) - 1
    new_lp, new_state = load(new)
    pick = lambda n, o: jnp.where(done.reshape(done.shape + (1,) * (o.ndim - 1)), n, o)
    return (jnp.where(done, jnp.where(new < count, new, num_blocks), block),
            jax.tree.map(pick, new_lp, lp), jax.tree.map(pick, new_state, state),
            jnp.where(done, 0, it), taken + jnp.sum(done, dtype=jnp.int32), out)

  block = jnp.arange(lanes, dtype=jnp.int32)
  block = jnp.where(block < count, block, num_blocks)
  lp, state = load(block)
  out = (jnp.zeros((num_blocks,) + state[0].shape[1:], state[0].dtype),
         jnp.zeros(num_blocks, jnp.int32), jnp.zeros(num_blocks, bool))
  init = (block, lp, state, jnp.zeros(lanes, jnp.int32), jnp.int32(lanes), out)
  return jax.lax.while_loop(lambda c: jnp.any(c[0] < count), body, init)[-1]


def _block_labels(points, representative, size, lp, x, valid, *, tol):
  """Region labels ``[4Kb]`` and row diagnostics ``[Kb]`` of one block (rows ``valid``) from
  the solution ``x`` of its ``_reduce_block`` LP."""
  num_regions = size.shape[0]
  mass = jnp.clip(x[:num_regions], 0.0, lp.upper)
  covered = jnp.any(lp.matrix != 0, axis=0)  # regions in no area (gaps) get exactly 0
  value = jnp.where(covered & (size > 0), mass / jnp.where(size > 0, size, 1.0), 0.0)
  violation = jnp.where(valid, jnp.abs(lp.matrix @ mass - lp.rhs), 0.0)
  violated = valid & (violation > 10.0 * tol * (1.0 + jnp.abs(lp.rhs)))
  return points, value[representative], violation, violated


def _solve_tier(areas, valid, scores, components, *, block_rows, min_size, normalize, solver,
                tol, max_iter):
  """Packs the components of ``min_size..block_rows`` rows of all problems into blocks and solves
  the non-empty ones (``_solve_pool`` on ``_CHUNK_WORK // block_rows**3`` lanes): no solver work
  for empty problems, no packing or solver work for empty tiers."""
  num_problems, num_rows = valid.shape
  order, starts, component_size, ok = components
  num_blocks = _num_blocks(num_rows, block_rows, min_size)
  chunk = max(1, min(_CHUNK_WORK // block_rows**3, num_problems * num_blocks))
  total = -(-(num_problems * num_blocks) // chunk) * chunk

  def solve(in_tier):
    rows = jax.vmap(functools.partial(_pack_blocks, block_rows=block_rows,
                                      num_blocks=num_blocks))(order, starts, component_size,
                                                              in_tier)
    rows = rows.reshape(-1, block_rows)
    problem = jnp.repeat(jnp.arange(num_problems, dtype=jnp.int32), num_blocks)
    nonempty = jnp.any(rows < num_rows, axis=1)
    count = jnp.sum(nonempty, dtype=jnp.int32)
    first = jnp.argsort(~nonempty, stable=True)  # non-empty blocks first, in problem order
    rows = jnp.pad(rows[first], ((0, total - rows.shape[0]), (0, 0)), constant_values=num_rows)
    problem = jnp.pad(problem[first], (0, total - problem.shape[0]))
    pad = lambda v: jnp.concatenate([v, jnp.zeros_like(v[:, :1])], axis=1)  # row K: empty slot
    p = problem[:, None]
    blocks = (pad(areas)[p, rows], pad(valid)[p, rows], pad(scores)[p, rows])
    reduce_block = functools.partial(_reduce_block, normalize=normalize)
    points, representative, size, lps = _map_chunks(reduce_block, blocks, count, chunk)
    x, iterations, certified = _solve_pool(lps, count, lanes=chunk, solver=solver, tol=tol,
                                           max_iter=max_iter)
    points, value, violation, violated = _map_chunks(
        functools.partial(_block_labels, tol=tol),
        (points, representative, size, lps, x, blocks[1]), count, chunk)
    return _TierResult(problem, jnp.arange(total) < count, points, value, certified, iterations,
                       violation, violated)

  empty = lambda in_tier: jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype),
                                       jax.eval_shape(solve, in_tier))
  in_tier = ok & (component_size >= min_size) & (component_size <= block_rows)
  return jax.lax.cond(jnp.any(in_tier), solve, empty, in_tier)


def _solution_pieces(tiers, blocks_per_problem, num_problems):
  """``LinproSolution`` leaves ``[P, M]`` from the regions of all tiers' blocks, without sorting.

  Each used region ``[points[j], points[j+1])`` of a block starts a piece with its label; each
  block end starts a piece of label 0 (the gap after it). Piece slots are fixed by tier, block
  rank within its problem (``blocks_per_problem[i]`` blocks at most in tier ``i``) and region;
  the gap pieces of all tiers take the first slots, so where a block's end and another block's
  first region start at one snippet, the region (the larger index) holds there. Blocks of one
  problem cover disjoint snippets, so the pieces are exact.
  """
  widths = [t.value.shape[1] for t in tiers]  # 4 Kb regions per block of each tier
  gap_slots = sum(blocks_per_problem)
  num_pieces = gap_slots + sum(n * w for n, w in zip(blocks_per_problem, widths))
  starts = jnp.full((num_problems + 1, num_pieces), _NO_PIECE, jnp.int32)
  values = jnp.zeros((num_problems + 1, num_pieces), tiers[0].value.dtype)
  gap_offset, region_offset = 0, gap_slots
  for tier, blocks, width in zip(tiers, blocks_per_problem, widths):
    problem = jnp.where(tier.used, tier.problem, num_problems)  # used blocks first, by problem
    rank = jnp.arange(problem.size) - jnp.searchsorted(problem, problem, side="left")
    region = tier.used[:, None] & (tier.points[:, 1:] > tier.points[:, :-1])
    slots = region_offset + rank[:, None] * width + jnp.arange(width)
    rows = jnp.where(region, problem[:, None], num_problems)
    starts = starts.at[rows, slots].set(tier.points[:, :-1].astype(jnp.int32))
    values = values.at[rows, slots].set(tier.value)
    starts = starts.at[problem, gap_offset + rank].set(tier.points[:, -1].astype(jnp.int32))
    gap_offset, region_offset = gap_offset + blocks, region_offset + blocks * width
  return starts[:num_problems], values[:num_problems]


def _problem_info(tiers, num_problems):
  """Per-problem diagnostics (``linpro_labels``) from the blocks of all tiers."""
  problem = jnp.concatenate([t.problem for t in tiers])
  used = jnp.concatenate([t.used for t in tiers])

  def per_problem(reduce, values, fill):  # values [NB] per block of every tier
    return reduce(jnp.where(used, jnp.concatenate(values), fill), problem,
                  num_segments=num_problems)

  certified = per_problem(jax.ops.segment_min, [t.certified.astype(jnp.int32) for t in tiers], 1)
  return {
      "ok": certified > 0,
      "num_violated_rows": per_problem(jax.ops.segment_sum,
                                       [jnp.sum(t.violated, axis=1) for t in tiers], 0),
      "max_violation": jnp.maximum(per_problem(
          jax.ops.segment_max, [jnp.max(t.violation, axis=1) for t in tiers], 0.0), 0.0),
      "iterations": jnp.maximum(per_problem(
          jax.ops.segment_max, [t.iterations for t in tiers], 0), 0),
      "block_rows": jnp.maximum(per_problem(
          jax.ops.segment_max,
          [jnp.full(t.used.shape, t.violated.shape[1], jnp.int32) for t in tiers], 0), 0),
  }


class LinproSolution(NamedTuple):
  """LinPro labels of problems as pieces, independent of the padded length ``T``.

  Piece ``j`` of a problem starts at snippet ``starts[j]`` with label ``values[j]``; snippet
  ``t`` takes the label of the piece with the largest ``(starts[j], j)`` among those with
  ``starts[j] <= t`` (pieces are in no particular order), 0 when there is none. Unused pieces
  start at ``2**31 - 1`` (never reached). ``linpro_assemble`` turns it into ``[..., T]`` labels.

  Attributes:
    starts: ``[..., M]`` int32 first snippet of each piece; ``M`` depends on the number of
      instance rows ``K`` only (one slot per region and block end of every block the
      decomposition may form).
    values: ``[..., M]`` float label of each piece, in ``[0, 1]``, finite.
  """
  starts: jax.Array
  values: jax.Array


@functools.partial(jax.jit, static_argnames=("outer_rule", "conventions", "normalize", "solver",
                                             "block_rows", "tol", "max_iter", "problem_chunk"))
def linpro_solve(segments, scores, valid, valid_length, *,
                 outer_rule: segments_lib.OuterRule = "gaufuse",
                 conventions: segments_lib.Conventions = "reference", normalize: Normalize = "sum",
                 solver: Solver = "ipm", block_rows=8, tol=None, max_iter=None, problem_chunk=8):
  """The LinPro LPs of padded problems (paper eq. 5-6), solved; labels as ``LinproSolution``.

  The shapes of the result do not depend on the padded length ``T``, so one compiled program
  serves videos of every length (``linpro_assemble`` makes the ``[..., T]`` labels).
  ``linpro_labels`` documents the arguments (all but ``num_snippets``).

  Returns:
    ``(solution, info)``: ``LinproSolution`` with leaves ``[..., M]``; ``info`` as in
    ``linpro_labels`` without ``objective``.

  Raises:
    ValueError: for bad shapes or unknown options.
  """
  _check_options(outer_rule, normalize, solver)
  segments, scores, valid = _as_arrays(segments, scores, valid)
  _check_shapes(segments, scores, valid, "linpro_solve")
  if block_rows < 1:
    raise ValueError(f"linpro_solve: block_rows must be >= 1, got {block_rows}")
  batch_shape, num_rows = scores.shape[:-1], scores.shape[-1]
  valid_length = jnp.broadcast_to(jnp.asarray(valid_length, jnp.int32), batch_shape).reshape(-1)
  problems = (segments.reshape((-1, num_rows, 2)), scores.reshape((-1, num_rows)),
              valid.reshape((-1, num_rows)), valid_length)
  solve = functools.partial(
      _solve_problems, outer_rule=outer_rule, conventions=conventions, normalize=normalize,
      solver=solver, block_rows=block_rows,
      tol=default_tolerance(solver, scores.dtype) if tol is None else tol,
      max_iter=default_max_iter(solver) if max_iter is None else max_iter)
  # Problems without rows: no pieces, STATUS_SOLVED (0), nothing violated.
  fill = (LinproSolution(starts=_NO_PIECE, values=0), 0)
  solution, info = active_map.map_active(lambda p: solve(*p), problems,
                                         jnp.any(problems[2], axis=1), chunk=problem_chunk,
                                         fill=fill)
  return jax.tree.map(lambda v: v.reshape(batch_shape + v.shape[1:]), (solution, info))


def _solve_problems(segments, scores, valid, valid_length, *, outer_rule, conventions, normalize,
                    solver, block_rows, tol, max_iter):
  """``linpro_solve`` of ``P`` problems (``[P, K, 2]``, ``[P, K]``, ``[P, K]``, ``[P]``)."""
  num_problems, num_rows = scores.shape
  areas = jax.vmap(functools.partial(instance_areas, outer_rule=outer_rule,
                                     conventions=conventions))(segments, valid, valid_length)
  components = jax.vmap(_components)(areas, valid)
  specs = _tiers(num_rows, block_rows)
  tiers = [_solve_tier(areas, valid, scores, components, block_rows=rows, min_size=min_size,
                       normalize=normalize, solver=solver, tol=tol, max_iter=max_iter)
           for rows, min_size in specs]
  info = _problem_info(tiers, num_problems)
  ok = info.pop("ok")
  starts, values = _solution_pieces(
      tiers, [_num_blocks(num_rows, rows, min_size) for rows, min_size in specs], num_problems)
  values = jnp.where(ok[:, None] & jnp.isfinite(values), values, 0.0).astype(scores.dtype)
  num_violated = jnp.where(ok, info["num_violated_rows"], 0).astype(jnp.int32)
  info.update(
      status=jnp.where(ok, jnp.where(num_violated > 0, STATUS_RELAXED, STATUS_SOLVED),
                       STATUS_FAILED).astype(jnp.int32),
      num_violated_rows=num_violated,
      max_violation=jnp.where(ok, info["max_violation"], 0.0))
  return LinproSolution(starts, values), info


@functools.partial(jax.jit, static_argnames=("num_snippets",))
def linpro_assemble(solution: LinproSolution, valid_length, *, num_snippets):
  """``[..., T]`` snippet labels of a ``LinproSolution`` (``linpro_solve``).

  Args:
    solution: ``LinproSolution`` with leaves ``[..., M]``.
    valid_length: ``[...]`` int (broadcast), real snippets ``L``; labels at ``t >= L`` are 0.
    num_snippets: static ``T``.

  Returns:
    ``[..., T]`` labels, the dtype of ``solution.values``.
  """
  batch_shape = solution.starts.shape[:-1]
  starts = solution.starts.reshape((-1, solution.starts.shape[-1]))
  values = solution.values.reshape(starts.shape)
  valid_length = jnp.broadcast_to(jnp.asarray(valid_length, jnp.int32), batch_shape).reshape(-1)
  num_problems, num_pieces = starts.shape
  # Each snippet position marks the largest piece index starting there; a snippet takes the piece
  # of the last mark at or before it (a parallel prefix max: XLA:CPU lowers jax.lax.cummax to a
  # reduce_window, 3-4x slower here).
  span = num_snippets + 1
  flat = jnp.where(starts < span, jnp.arange(num_problems)[:, None] * span + starts,
                   num_problems * span)
  mark = jnp.full((num_problems * span,), -1, jnp.int32).at[flat.ravel()].max(
      jnp.broadcast_to(jnp.arange(num_pieces, dtype=jnp.int32), starts.shape).ravel(),
      mode="drop").reshape(num_problems, span)[:, :num_snippets]
  t = jnp.arange(num_snippets, dtype=jnp.int32)
  last = jax.lax.associative_scan(jnp.maximum, jnp.where(mark >= 0, t, -1), axis=1)
  piece = jnp.take_along_axis(mark, jnp.maximum(last, 0), axis=1)
  labels = jnp.take_along_axis(values, jnp.maximum(piece, 0), axis=1)
  labels = jnp.where((last >= 0) & (t[None, :] < valid_length[:, None]), labels, 0.0)
  return labels.reshape(batch_shape + (num_snippets,))


@functools.partial(jax.jit, static_argnames=("num_snippets", "outer_rule", "conventions",
                                             "normalize", "solver", "block_rows", "tol",
                                             "max_iter", "problem_chunk"))
def linpro_labels(segments, scores, valid, valid_length, *, num_snippets,
                  outer_rule: segments_lib.OuterRule = "gaufuse",
                  conventions: segments_lib.Conventions = "reference", normalize: Normalize = "sum",
                  solver: Solver = "ipm", block_rows=8, tol=None, max_iter=None,
                  problem_chunk=8):
  """LinPro snippet labels of padded problems (paper eq. 5-6, with equivalent snippets averaged).

  Args:
    segments: ``[..., K, 2]`` float fused instances ``(start, end)`` in snippets; any leading
      batch dims (e.g. ``[B videos, C classes]``) are independent problems.
    scores: ``[..., K]`` float instance scores (the fused outer-inner contrast); may be negative.
    valid: ``[..., K]`` bool, False for padding rows.
    valid_length: ``[...]`` int (broadcast), real snippets ``L`` per problem; labels at
      ``t >= L`` are 0.
    num_snippets: static ``T``.
    outer_rule: ``"gaufuse"`` or ``"wtalc"`` (see ``instance_areas``).
    conventions: ``"reference"`` (default) or ``"exact"`` (see ``instance_areas``).
    normalize: ``"sum"`` (default, authors' code) or ``"mean"`` (paper text); see
      ``linpro_constraints``.
    solver: ``"ipm"`` (default), ``"qpax"``, ``"mpax"`` or ``"jaxopt"`` (module docstring).
    block_rows: static rows per block for the connected components of up to that many rows
      (cost ``O(block_rows^2)`` per row and Newton step); components of up to 2x, 4x
      ``block_rows`` and ``K`` rows are packed into blocks of that size (``info["block_rows"]``).
      Only non-empty blocks are solved: problems without valid rows cost nothing.
    tol: relative tolerance (stopping and acceptance); default ``default_tolerance``.
    max_iter: iteration limit; default ``default_max_iter``.
    problem_chunk: static number of problems solved together. Problems with valid rows are
      taken ``problem_chunk`` at a time in a loop that stops when none is left, so a batch
      costs its problems with rows (e.g. the classes that pass the class gate), not all of
      them; the labels do not depend on it.

  Returns:
    ``labels``: ``[..., T]`` float (float32, float64 with x64), in ``[0, 1]``, finite; equal on
      equivalent snippets.
    ``info``: dict of ``[...]`` arrays: ``status`` (int32 ``STATUS_SOLVED`` / ``STATUS_RELAXED``
      / ``STATUS_FAILED``), ``num_violated_rows`` (int32), ``max_violation`` (float, label mass
      in snippets), ``objective`` (float, ``sum_t labels``), ``iterations`` (int32, max over
      blocks), ``block_rows`` (int32, largest block size used; 0 without valid rows).

  Raises:
    ValueError: for bad shapes or unknown options.

  Examples:
    One instance ``[3, 6)`` of score 1.5 in a video of 10 snippets: the least label mass whose
    inner sum minus outer sum is 1.5 is 0.5 on each inner snippet.

    >>> import jax.numpy as jnp
    >>> from gaufuse_jax import linpro_labels
    >>> labels, info = linpro_labels(jnp.array([[3.0, 6.0]]), jnp.array([1.5]),
    ...                              jnp.array([True]), 10, num_snippets=10)
    >>> [round(v, 3) for v in labels.tolist()], int(info["status"])
    ([0.0, 0.0, 0.0, 0.5, 0.5, 0.5, 0.0, 0.0, 0.0, 0.0], 0)
  """
  solution, info = linpro_solve(
      segments, scores, valid, valid_length, outer_rule=outer_rule, conventions=conventions,
      normalize=normalize, solver=solver, block_rows=block_rows, tol=tol, max_iter=max_iter,
      problem_chunk=problem_chunk)
  labels = linpro_assemble(solution, valid_length, num_snippets=num_snippets)
  return labels, dict(info, objective=jnp.sum(labels, axis=-1))
