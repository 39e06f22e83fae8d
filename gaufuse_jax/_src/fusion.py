"""Gaussian weighted instance fusion (paper §3.1, eq. (1)-(4); the authors'
``utils/utils.py:prediction_fuse_module``).

Instead of keeping only the seed of each NMS cluster, every cluster is fused into one
instance whose start, end and score are weighted location estimates over the cluster, with
weights ``softmax(logits / temperature)``. The greedy loop is the one NMS uses
(``suppression.greedy_loop``); the estimators run once afterwards on all clusters together.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp

from gaufuse_jax._src import segments as seg_lib
from gaufuse_jax._src import suppression

Template = Literal["gaussian", "laplace", "uniform", "student_t"]
TEMPLATES = ("gaussian", "laplace", "uniform", "student_t")
# Fixed iteration counts: bisection halves the value range 40 times (below float32 spacing for
# ranges up to ~1e5 snippets); EM for the Student-t.
_BISECTION_STEPS = 40
_STUDENT_T_STEPS = 20
_MIN_VARIANCE = 1e-12


def _segment_sum(data, ids, n):
  return jax.ops.segment_sum(data, ids, num_segments=n)


def _segment_max(data, ids, n):
  return jax.ops.segment_max(data, ids, num_segments=n)


def _cluster_range(x, w, ids, n):
  """Per cluster min and max of each column of ``x [N, F]`` over members (``w > 0``); +-inf for
  empty clusters."""
  member = (w > 0)[:, None]
  return (-_segment_max(jnp.where(member, -x, -jnp.inf), ids, n),
          _segment_max(jnp.where(member, x, -jnp.inf), ids, n))


def _weighted_mean(x, w, ids, n):
  """Per cluster ``sum w x / sum w`` for ``x [N, F]``, ``w [N]`` (0 outside clusters), clipped
  to the members' range: float rounding must not put a fused end past the video's end."""
  total = _segment_sum(w, ids, n)
  sums = _segment_sum(w[:, None] * x, ids, n)
  lo, hi = _cluster_range(x, w, ids, n)
  mean = sums / jnp.where(total > 0, total, 1.0)[:, None]
  return jnp.where(total[:, None] > 0, jnp.clip(mean, lo, hi), mean)  # empty clusters: 0


def _weighted_median(x, w, ids, n):
  """Per cluster lower weighted median of each column of ``x [N, F]``."""
  def column(values):
    ids_s, values_s, w_s = jax.lax.sort((ids, values, w), num_keys=2)
    head = jnp.concatenate([jnp.ones((1,), bool), ids_s[1:] != ids_s[:-1]])
    # Cumulative weight restarted at every cluster (a segmented scan: no cross-cluster sums).
    _, cum = jax.lax.associative_scan(
        lambda a, b: (a[0] | b[0], jnp.where(b[0], b[1], a[1] + b[1])), (head, w_s))
    total = _segment_max(cum, ids_s, n)
    reached = cum >= 0.5 * total[jnp.minimum(ids_s, n - 1)]
    return -_segment_max(jnp.where(reached, -values_s, -jnp.inf), ids_s, n)
  return jnp.stack([column(x[:, f]) for f in range(x.shape[1])], axis=1)


def _weighted_midrange(x, w, ids, n):
  """Per cluster ``argmin_mu max_i w_i |x_i - mu|`` of each column of ``x [N, F]``.

  The two sides ``max_i w_i (mu - x_i)`` (increasing) and ``max_i w_i (x_i - mu)``
  (decreasing) meet at the optimum; bisection on ``[min x, max x]`` brackets it to float
  precision.
  """
  at = jnp.minimum(ids, n - 1)  # gather index of each instance's cluster (ids == n: unused)
  member = (w > 0)[:, None]

  def bisect(_, bounds):
    lo, hi = bounds
    mid = 0.5 * (lo + hi)
    left = _segment_max(jnp.where(member, w[:, None] * (mid[at] - x), -jnp.inf), ids, n)
    right = _segment_max(jnp.where(member, w[:, None] * (x - mid[at]), -jnp.inf), ids, n)
    return jnp.where(left < right, mid, lo), jnp.where(left < right, hi, mid)

  lo, hi = _cluster_range(x, w, ids, n)
  lo, hi = jnp.where(jnp.isfinite(lo), lo, 0.0), jnp.where(jnp.isfinite(hi), hi, 0.0)
  lo, hi = jax.lax.fori_loop(0, _BISECTION_STEPS, bisect, (lo, hi))
  return 0.5 * (lo + hi)


def _weighted_student_t(x, w, ids, n, dof):
  """Per cluster Student-t location of each column (EM with frequency weights ``w``)."""
  at = jnp.minimum(ids, n - 1)  # gather index of each instance's cluster (ids == n: unused)
  total = _segment_sum(w, ids, n)
  safe_total = jnp.where(total > 0, total, 1.0)[:, None]
  mu = _weighted_mean(x, w, ids, n)
  var = _segment_sum(w[:, None] * jnp.square(x - mu[at]), ids, n) / safe_total

  def em(_, state):
    mu, var = state
    var = jnp.maximum(var, _MIN_VARIANCE)
    u = w[:, None] * (dof + 1.0) / (dof + jnp.square(x - mu[at]) / var[at])
    u_total = _segment_sum(u, ids, n)
    mu = _segment_sum(u * x, ids, n) / jnp.where(u_total > 0, u_total, 1.0)
    var = _segment_sum(u * jnp.square(x - mu[at]), ids, n) / safe_total
    return mu, var

  mu, _ = jax.lax.fori_loop(0, _STUDENT_T_STEPS, em, (mu, var))
  return mu


_ESTIMATORS = {"gaussian": _weighted_mean, "laplace": _weighted_median,
               "uniform": _weighted_midrange}


def gaussian_weighted_fusion(segments, scores, valid, *, logits=None, counts=None,
                             overlap_threshold=0.25, temperature,
                             overlap: seg_lib.OverlapKind = "candidate",
                             conventions: seg_lib.Conventions = "reference",
                             template: Template = "gaussian", dof=3.0
                             ) -> suppression.Detections:
  """Gaussian weighted fusion of overlapping 1-D instances (paper §3.1).

  Repeat until no valid instance remains:

  1. seed = the remaining instance with the highest ``scores`` (ties: lowest index);
  2. cluster = the seed and every remaining instance with
     ``segments.overlap(seed, instance, overlap, conventions) > overlap_threshold``;
  3. weights ``w = softmax(logits[cluster] / temperature)`` (log-sum-exp: shifted by the
     cluster's largest logit, so any temperature > 0 is safe; a member whose shifted weight
     ``exp(logit / T - max)`` is below the smallest normal float, ``finfo.tiny``, gets 0);
  4. the fused start, end and score are weighted location estimates of the cluster's starts,
     ends and ``scores`` (below), and the cluster is removed.

  ``template`` picks the estimator (paper Table 3), a location of the cluster under a
  template density: the weighted maximum-likelihood location for the Gaussian, Laplace and
  Student-t, and for the uniform the one where member ``i``'s half-width is ``∝ 1 / w_i``.
  Every estimator tends to the value of the largest-logit member as ``temperature -> 0``:

  * ``"gaussian"``: weighted mean ``sum w x / sum w`` (the paper, the authors' code);
  * ``"laplace"``: lower weighted median, the smallest ``x_j`` with
    ``sum_{x_i <= x_j} w_i >= sum w / 2`` (minimises ``sum w |x - mu|``);
  * ``"uniform"``: weighted midrange, ``argmin_mu max_i w_i |x_i - mu|`` (equal weights give
    ``(min + max) / 2``), found by bisection to float precision;
  * ``"student_t"``: location of a Student-t with ``dof`` degrees of freedom by EM (IRLS)
    with frequency weights ``w``: start from the weighted mean and variance, then 20 times
    ``u_i = w_i (dof + 1) / (dof + (x_i - mu)^2 / var)``, ``mu = sum u x / sum u``,
    ``var = sum u (x - mu)^2 / sum w`` (variance floored at 1e-12). Unlike the others it is
    not monotone, so ``end >= start`` is not guaranteed.

  The authors' code (``evaluation/detectionMAP.py:NonMaximumSuppression`` at test,
  ``utils/utils.py:prediction_fuse_module`` for pseudo labels) seeds and fuses with the
  outer-inner contrast score, weights with the inner score (``logits=inner``), uses the
  candidate overlap with inclusive lengths (``conventions="reference"``:
  ``(min e - max s + 1) / (e_j - s_j + 1)``) at 0.25 and ``temperature`` 0.2 at test,
  0.02-0.0016 for pseudo labels; ``overlap="iou"`` is the paper's wording.

  ``counts`` are frequency weights: row ``i`` stands for ``counts[i]`` identical instances
  (``generate_proposals(..., merge_duplicates=True)`` gives them), and the result is that of
  the expanded input, up to float rounding, whenever all copies fall in one cluster (segments of
  positive length, ``overlap_threshold < 1``); the seed of a cluster is its first copy. Member
  ``i`` weighs ``counts[i] * w_i``; the uniform template's midrange does not depend on copies.

  Args:
    segments: ``[N, 2]`` float ``(start, end)`` in snippets.
    scores: ``[N]`` float, seed order and fused score (the OIC score).
    valid: ``[N]`` bool; invalid rows, and rows with a non-finite value or ``end < start``,
      take no part.
    logits: ``[N]`` float weight logits; defaults to ``scores``.
    counts: ``[N]`` int or float copies of each row, default 1; rows with ``counts <= 0``
      take no part.
    overlap_threshold: float (may be traced), strict ``>``.
    temperature: float > 0 (may be traced: a traced value that is not > 0, NaN included, makes
      every fused score NaN, since it cannot raise under ``jit``).
    overlap: ``"candidate"`` or ``"iou"``, see ``segments.overlap``.
    conventions: ``"reference"`` (default, inclusive lengths) or ``"exact"`` (half-open),
      see ``segments.overlap``.
    template: ``"gaussian"``, ``"laplace"``, ``"uniform"`` or ``"student_t"`` (static).
    dof: float > 0, Student-t degrees of freedom (only for ``"student_t"``; may be traced).

  Returns:
    ``suppression.Detections``: ``[N]`` fused instances in seed order (``index`` = the seed),
    ``count`` of them; padding rows are zero.

  Raises:
    ValueError: on shape mismatches, an unknown ``template``, a concrete ``temperature`` that
      is not > 0 (NaN included), ``dof <= 0`` or a NaN ``overlap_threshold``.

  Examples:
    The seed ``[2, 5)`` absorbs ``[2, 6)``: its end moves towards 6 by their Gaussian weights.

    >>> import jax.numpy as jnp
    >>> from gaufuse_jax import gaussian_weighted_fusion
    >>> segments = jnp.array([[2.0, 5.0], [2.0, 6.0], [7.0, 9.0]])
    >>> fused = gaussian_weighted_fusion(segments, jnp.array([0.9, 0.8, 0.5]), jnp.ones(3, bool),
    ...                                  temperature=0.2, conventions="exact")
    >>> int(fused.count), [[round(v, 2) for v in s] for s in fused.segments.tolist()[:2]]
    (2, [[2.0, 5.38], [7.0, 9.0]])
    >>> [round(s, 3) for s in fused.scores.tolist()[:2]]
    [0.862, 0.5]
  """
  fn = "gaussian_weighted_fusion"
  segments, scores, valid = suppression.check_inputs(fn, segments, scores, valid, overlap,
                                                     conventions)
  logits = scores if logits is None else jnp.asarray(logits, scores.dtype)
  counts = jnp.ones_like(scores) if counts is None else jnp.asarray(counts, scores.dtype)
  for name, arr in (("logits", logits), ("counts", counts)):
    if arr.shape != scores.shape:
      raise ValueError(f"{fn}: {name} must have shape [N]={scores.shape} like scores, "
                       f"got {arr.shape}")
  if template not in TEMPLATES:
    raise ValueError(f"{fn}: template must be one of {TEMPLATES}, got {template!r}")
  suppression.check_static(fn, "temperature", temperature, positive=True)
  suppression.check_static(fn, "overlap_threshold", overlap_threshold)
  suppression.check_static(fn, "dof", dof, positive=True)
  valid = valid & jnp.isfinite(logits) & jnp.isfinite(counts) & (counts > 0)
  n = scores.shape[0]

  clusters = suppression.greedy_loop(segments, scores, valid, overlap=overlap,
                                     conventions=conventions,
                                     step=suppression.cluster_step(overlap_threshold))
  ids = jnp.where(clusters.cluster >= 0, clusters.cluster, n)  # n: out of range, dropped
  member = ids < n
  scaled = logits / temperature
  top = _segment_max(jnp.where(member, scaled, -jnp.inf), ids, n)
  w = jnp.exp(jnp.where(member, scaled - top[jnp.minimum(ids, n - 1)], -jnp.inf))
  # XLA flushes subnormal floats to zero on CPU; make that explicit, the same everywhere.
  w = jnp.where(w >= jnp.finfo(w.dtype).tiny, w, 0.0)
  if template != "uniform":
    w = w * counts
  x = jnp.concatenate([segments, scores[:, None]], axis=1)  # [N, 3]: start, end, score

  if n == 0:
    fused = x
  elif template == "student_t":
    fused = _weighted_student_t(x, w, ids, n, jnp.asarray(dof, x.dtype))
  else:
    fused = _ESTIMATORS[template](x, w, ids, n)

  out_valid = jnp.arange(n) < clusters.count
  fused = jnp.where(out_valid[:, None], fused, 0.0)
  # A traced temperature is not checked above: a bad one gives NaN, never a valid-looking score.
  fused = fused.at[:, 2].set(jnp.where(temperature > 0, fused[:, 2], jnp.nan))
  return suppression.Detections(segments=fused[:, :2], scores=fused[:, 2], valid=out_valid,
                                index=suppression.seed_index(clusters), count=clusters.count)
