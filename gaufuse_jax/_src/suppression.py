"""Greedy seed-and-cluster loop, and the NMS / soft-NMS baselines built on it.

All functions take one padded set of ``N`` segments with a ``valid`` mask, run under ``jit``,
and ``vmap`` over classes and videos (the loop is a ``lax.while_loop`` over masks). The same
loop drives Gaussian weighted fusion (``gaufuse_jax.fusion``): pick the highest-scoring
remaining instance as seed, compare it with the others, remove some of them, repeat.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gaufuse_jax._src import segments as seg_lib

# Loop labels: an instance is `_REMAINING` until a seed's step removes it; `_DISCARDED` ones
# (invalid input, or dropped by soft-NMS) never reach the output; removed instances carry the
# rank k >= 0 of the seed that removed them, and the seed itself carries k + N.
_REMAINING = -1
_DISCARDED = -2


class Detections(NamedTuple):
  """Padded detections in seed order (highest score first).

  Attributes:
    segments: ``[N, 2]`` float32 ``(start, end)`` in snippets; zeros in padding rows.
    scores: ``[N]`` float32; zeros in padding rows.
    valid: ``[N]`` bool, True for the first ``count`` rows.
    index: ``[N]`` int32, input index of each row's seed; -1 in padding rows.
    count: ``[]`` int32, number of detections.
  """
  segments: jax.Array
  scores: jax.Array
  valid: jax.Array
  index: jax.Array
  count: jax.Array


class Clusters(NamedTuple):
  """Result of the greedy loop, per input instance.

  Attributes:
    cluster: ``[N]`` int32, rank ``k`` (seed order) of the cluster the instance ended in;
      -1 for instances that were invalid or discarded.
    is_seed: ``[N]`` bool, True for the seed of each cluster.
    scores: ``[N]`` float32, each instance's score when the loop removed it (differs from the
      input only for soft-NMS).
    count: ``[]`` int32, number of clusters ``K``.
  """
  cluster: jax.Array
  is_seed: jax.Array
  scores: jax.Array
  count: jax.Array


# step(remaining, overlaps, scores) -> (removed, discarded, new_scores), all [N].
Step = Callable[[jax.Array, jax.Array, jax.Array], tuple[jax.Array, jax.Array, jax.Array]]


def check_inputs(fn: str, segments, scores, valid, overlap: str, conventions: str):
  """Validate and canonicalise ``segments [N, 2]``, ``scores [N]``, ``valid [N]``.

  Returns float32 (or wider) ``segments``, ``scores`` and a bool ``valid`` with non-finite
  instances, and instances with ``end < start``, turned invalid. Raises ValueError, naming
  ``fn``, on shape mismatches or an unknown ``overlap`` kind or ``conventions``.
  """
  if overlap not in seg_lib.OVERLAPS:
    raise ValueError(f"{fn}: overlap must be one of {seg_lib.OVERLAPS}, got {overlap!r}")
  seg_lib.check_conventions(fn, conventions)
  segments, scores, valid = jnp.asarray(segments), jnp.asarray(scores), jnp.asarray(valid)
  if segments.ndim != 2 or segments.shape[1] != 2:
    raise ValueError(f"{fn}: segments must have shape [N, 2], got {segments.shape}")
  n = segments.shape[0]
  for name, arr in (("scores", scores), ("valid", valid)):
    if arr.shape != (n,):
      raise ValueError(f"{fn}: {name} must have shape [N]=({n},) like segments, got {arr.shape}")
  dtype = jnp.promote_types(jnp.result_type(segments, scores), jnp.float32)
  segments, scores = segments.astype(dtype), scores.astype(dtype)
  valid = (valid.astype(bool) & jnp.isfinite(scores) & jnp.all(jnp.isfinite(segments), axis=1)
           & (segments[:, 1] >= segments[:, 0]))
  return segments, scores, valid


def check_static(fn: str, name: str, value, *, positive: bool = False):
  """Raise ValueError for a concrete ``value`` that is NaN or (with ``positive``) <= 0.

  Traced values pass unchecked (they cannot be inspected under ``jit``).
  """
  if isinstance(value, jax.core.Tracer):
    return
  arr = np.asarray(value)
  if arr.ndim != 0:
    raise ValueError(f"{fn}: {name} must be a scalar, got shape {arr.shape}")
  if np.isnan(arr) or (positive and not arr > 0):
    raise ValueError(f"{fn}: {name} must be {'> 0' if positive else 'a number'}, got {value}")


def greedy_loop(segments, scores, valid, *, overlap: seg_lib.OverlapKind,
                conventions: seg_lib.Conventions, step: Step) -> Clusters:
  """The greedy loop shared by NMS, soft-NMS and Gaussian weighted fusion.

  Repeat until no valid instance remains: seed = the remaining instance with the highest
  current score (ties: lowest index);
  ``overlaps = segments.overlap(seed, all, overlap, conventions)``;
  ``step`` says which remaining instances the seed removes into its cluster (the seed is
  always removed), which it discards, and the new scores. A ``lax.while_loop`` over masks:
  K iterations (one per output) of O(N) work. Under ``vmap`` every set pays for the largest
  K and N of the batch, so on CPU group sets of similar size (see ``benchmarks/fusion.py``).

  Args:
    segments, scores, valid: as returned by ``check_inputs``.
    overlap: ``"candidate"`` or ``"iou"``, see ``segments.overlap``.
    conventions: ``"reference"`` or ``"exact"``, see ``segments.overlap``.
    step: ``step(remaining, overlaps, scores) -> (removed, discarded, scores)``, all ``[N]``;
      ``remaining`` excludes the seed; ``removed`` wins over ``discarded``.

  Returns:
    ``Clusters``.
  """
  n = scores.shape[0]
  idx = jnp.arange(n, dtype=jnp.int32)
  if n == 0:
    return Clusters(cluster=idx, is_seed=valid, scores=scores, count=jnp.int32(0))

  def next_seed(label, cur):
    # Two plain reductions (max, then lowest index at the max) are much cheaper than argmax.
    remaining = label == _REMAINING
    best = jnp.max(jnp.where(remaining, cur, -jnp.inf))
    return jnp.min(jnp.where(remaining & (cur == best), idx, n))  # n once none remain

  def body(carry):
    label, cur, k, seed = carry
    is_seed = idx == seed
    remaining = (label == _REMAINING) & ~is_seed
    overlaps = seg_lib.overlap(segments[seed], segments, overlap, conventions)
    removed, discarded, cur = step(remaining, overlaps, cur)
    label = jnp.where(remaining & discarded, _DISCARDED, label)
    label = jnp.where(remaining & removed, k, label)
    label = jnp.where(is_seed, k + n, label)
    return label, cur, k + 1, next_seed(label, cur)

  label = jnp.where(valid, _REMAINING, _DISCARDED).astype(jnp.int32)
  init = (label, scores, jnp.int32(0), next_seed(label, scores))
  label, cur, count, _ = jax.lax.while_loop(lambda c: c[-1] < n, body, init)
  is_seed = label >= n
  cluster = jnp.where(is_seed, label - n, jnp.maximum(label, -1))
  return Clusters(cluster=cluster, is_seed=is_seed, scores=cur, count=count)


def seed_index(clusters: Clusters) -> jax.Array:
  """``[N]`` int32 input index of the seed of cluster ``k`` at row ``k``; -1 past ``count``."""
  n = clusters.cluster.shape[0]
  rank = jnp.where(clusters.is_seed, clusters.cluster, n)
  return jnp.full((n,), -1, jnp.int32).at[rank].set(jnp.arange(n, dtype=jnp.int32), mode="drop")


def seed_detections(clusters: Clusters, segments) -> Detections:
  """Detections made of each cluster's seed (its segment and its score at removal)."""
  index = seed_index(clusters)
  valid = index >= 0
  return Detections(
      segments=jnp.where(valid[:, None], segments[index], 0.0),
      scores=jnp.where(valid, clusters.scores[index], 0.0),
      valid=valid, index=index, count=clusters.count)


def cluster_step(overlap_threshold) -> Step:
  """Step of hard clustering: the seed removes every remaining instance with overlap > thr."""
  def step(remaining, overlaps, scores):
    del remaining
    return overlaps > overlap_threshold, jnp.zeros_like(overlaps, bool), scores
  return step


def nms(segments, scores, valid, *, overlap_threshold, overlap: seg_lib.OverlapKind = "iou",
        conventions: seg_lib.Conventions = "reference") -> Detections:
  """Greedy non-maximum suppression of 1-D segments.

  Repeat: keep the highest-scoring remaining segment (ties: lowest index), remove every
  remaining segment whose overlap with it is ``> overlap_threshold``. The authors' code uses
  this at 0.25 with the candidate overlap when ``use_new_predictor=False``; RSKP at 0.5
  (``evaluation/detectionMAP.py:getActLoc``).

  Args:
    segments: ``[N, 2]`` float ``(start, end)`` in snippets.
    scores: ``[N]`` float.
    valid: ``[N]`` bool; invalid rows, and rows with a non-finite value or ``end < start``,
      are ignored.
    overlap_threshold: float in [0, 1] (may be traced).
    overlap: ``"iou"`` (default) or ``"candidate"`` (intersection / candidate length).
    conventions: ``"reference"`` (default; inclusive lengths, the authors' code) or
      ``"exact"`` (half-open), see ``segments.overlap``.

  Returns:
    ``Detections`` with ``[N]`` rows in seed order (scores descending) and ``count``.

  Raises:
    ValueError: on shape mismatches or a NaN ``overlap_threshold``.

  Examples:
    >>> import jax.numpy as jnp
    >>> from gaufuse_jax import nms
    >>> segments = jnp.array([[2.0, 5.0], [2.0, 6.0], [7.0, 9.0]])
    >>> kept = nms(segments, jnp.array([0.9, 0.8, 0.5]), jnp.ones(3, bool),
    ...            overlap_threshold=0.5, conventions="exact")
    >>> kept.index.tolist(), int(kept.count)  # [2, 6) overlaps [2, 5) by 0.75: removed
    ([0, 2, -1], 2)
  """
  segments, scores, valid = check_inputs("nms", segments, scores, valid, overlap, conventions)
  check_static("nms", "overlap_threshold", overlap_threshold)
  clusters = greedy_loop(segments, scores, valid, overlap=overlap, conventions=conventions,
                         step=cluster_step(overlap_threshold))
  return seed_detections(clusters, segments)


def soft_nms(segments, scores, valid, *, sigma=0.5, score_threshold=1e-3,
             overlap: seg_lib.OverlapKind = "iou",
             conventions: seg_lib.Conventions = "reference") -> Detections:
  """Soft-NMS with Gaussian decay (Bodla et al., ICCV 2017) on 1-D segments.

  Repeat: output the remaining segment with the highest *current* score (ties: lowest
  index); multiply the score of every other remaining segment by
  ``exp(-overlap**2 / sigma)``; discard those whose score is now ``< score_threshold``. The
  input scores are held to the same threshold. The decay is multiplicative, so it is meant
  for non-negative scores (a negative score would move up towards 0).

  Args:
    segments: ``[N, 2]`` float ``(start, end)`` in snippets.
    scores: ``[N]`` float.
    valid: ``[N]`` bool; invalid rows, and rows with a non-finite value or ``end < start``,
      are ignored.
    sigma: float > 0 (may be traced), the Gaussian decay width.
    score_threshold: float (may be traced); ``-inf`` keeps everything.
    overlap: ``"iou"`` (default) or ``"candidate"``.
    conventions: ``"reference"`` (default) or ``"exact"``, see ``segments.overlap``.

  Returns:
    ``Detections`` in output order, with the decayed scores; ``count`` detections.

  Raises:
    ValueError: on shape mismatches, ``sigma <= 0`` or a NaN ``score_threshold``.
  """
  segments, scores, valid = check_inputs("soft_nms", segments, scores, valid, overlap,
                                         conventions)
  check_static("soft_nms", "sigma", sigma, positive=True)
  check_static("soft_nms", "score_threshold", score_threshold)
  valid = valid & (scores >= score_threshold)

  def step(remaining, overlaps, cur):
    decayed = jnp.where(remaining, cur * jnp.exp(-jnp.square(overlaps) / sigma), cur)
    return jnp.zeros_like(remaining), decayed < score_threshold, decayed

  clusters = greedy_loop(segments, scores, valid, overlap=overlap, conventions=conventions,
                         step=step)
  return seed_detections(clusters, segments)
