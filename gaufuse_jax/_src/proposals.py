"""Multi-threshold action proposals with an outer-inner contrast (OIC) score.

One class's class activation sequence (CAS) ``[T]`` is thresholded at every value of
``thresholds``; every maximal run of snippets above a threshold is a proposal, scored by the
mean CAS inside it minus the mean CAS in the two outer areas beside it (the outer-inner
contrast of the authors' ``evaluation/detectionMAP.py:getActLoc`` and
``utils/utils.py:generate_segs``, and of W-TALC / RSKP before them). Everything is static-shaped
(prefix sums, no loop over snippets), so the function jits and vmaps over classes and videos.
"""

from __future__ import annotations

import operator
from typing import NamedTuple

import jax
import jax.numpy as jnp

from gaufuse_jax._src import segments



class Proposals(NamedTuple):
  """Padded proposals of one CAS, sorted by ``score`` descending (padding last).

  Attributes:
    start: ``[N]`` float32, first snippet of the run (inclusive).
    end: ``[N]`` float32, end of the stored segment ``[start, end)``: one past the run
      (``"exact"``), two past it (``"reference"``: the authors' ``e + 1``; may exceed the
      video's length by one when the run touches its end).
    score: ``[N]`` float32, outer-inner contrast ``inner - outer``.
    inner: ``[N]`` float32, mean CAS over the inner area (``[start, end)`` clipped to the
      video).
    valid: ``[N]`` bool; padding rows are False and hold zeros.
    num_dropped: ``[]`` int32, runs that qualified but did not fit in ``N = max_proposals``.
    count: ``[N]`` int32, how many thresholds gave this same run: 1 without
      ``merge_duplicates``, else the number of copies this row stands for; 0 in padding rows.
  """
  start: jax.Array
  end: jax.Array
  score: jax.Array
  inner: jax.Array
  valid: jax.Array
  num_dropped: jax.Array
  count: jax.Array


def _static_int(value, name: str, minimum: int) -> int:
  try:
    value = operator.index(value)
  except TypeError:
    raise TypeError(f"generate_proposals: {name} must be a static Python int, "
                    f"got {type(value).__name__}") from None
  if value < minimum:
    raise ValueError(f"generate_proposals: {name} must be >= {minimum}, got {value}")
  return value


def generate_proposals(cas, valid_length, thresholds, *, max_proposals: int,
                       min_length: int = 2,
                       outer_rule: segments.OuterRule = "gaufuse",
                       conventions: segments.Conventions = "reference",
                       merge_duplicates: bool = False) -> Proposals:
  """Proposals of one class's CAS at several thresholds, scored by outer-inner contrast.

  For every threshold ``thr`` and every maximal run ``[s, e)`` of ``cas > thr`` inside
  ``[0, L)`` (``L = valid_length``) with ``e - s >= min_length``, and
  ``(wl, wr) = segments.outer_width(e - s, outer_rule, conventions)``:

  * ``conventions="reference"`` (the authors' ``getActLoc``, float for float): the inner
    area is ``[s, min(e + 1, L))`` (one snippet past the run), the outer areas
    ``[max(s - wl, 0), s)`` and ``[e + 1, min(e + 1 + wr, L - 1))`` (the video's last snippet
    is never outer), and the stored segment is ``[s, e + 1)``;
  * ``conventions="exact"`` (our variant): the inner area is the run ``[s, e)``, the outer
    areas ``[s - wl, s)`` and ``[e, e + wr)`` clipped to ``[0, L)``, the segment ``[s, e)``;
  * ``inner`` is the mean CAS over the inner area, ``outer`` over both outer areas together
    (0 when both are empty), ``score = inner - outer`` (the OIC score).

  Snippets at or past ``L`` never take part, so extra padding of ``cas`` changes nothing. When
  more than ``max_proposals`` runs qualify, the highest-scoring ones are kept and the rest
  counted in ``num_dropped``. The output is sorted by ``score`` descending; equal scores keep
  the order (threshold index, start).

  The same run ``[s, e)`` is found at every threshold in ``[max(cas[s - 1], cas[e]),
  min(cas[s:e]))``, with the same ``score`` and ``inner``: on a smooth CAS about 60% of the
  proposals at the 20 reference thresholds are such copies. ``merge_duplicates=True`` keeps
  one row per run (the copy at the lowest threshold) with the number of copies in ``count``.
  NMS gives the same detections either way, Gaussian weighted fusion the same when it gets
  ``counts=count`` (frequency weights), and both run on fewer rows, so the same
  ``max_proposals`` keeps more distinct runs. Soft-NMS decays each copy on its own and needs
  the copies.

  Args:
    cas: ``[T]`` float array, the CAS of one class; NaN and +-inf count as 0.
    valid_length: int scalar (may be traced), number of real snippets; clipped to ``[0, T]``.
    thresholds: ``[H]`` float array (may be traced), e.g. ``arange(0.001, 0.04, 0.002)``
      (the authors' ``options.py``, 20 values).
    max_proposals: static int ``N >= 1``, padded output size.
    min_length: static int ``>= 1``, shortest run kept, in snippets (reference: 2).
    outer_rule: ``"gaufuse"`` (``w = 0.0785 * len**0.9``, the authors' code) or ``"wtalc"``
      (``w = 0.25 * len``, W-TALC/RSKP); see ``segments.outer_width``.
    conventions: static, ``"reference"`` (default) or ``"exact"`` (above).
    merge_duplicates: static bool, one row per distinct run with its ``count`` (above).

  Returns:
    ``Proposals`` with ``[N]`` fields in snippet units, ``N = max_proposals``.

  Raises:
    ValueError: if ``cas`` is not 1-D or empty, ``thresholds`` is not 1-D or empty,
      ``max_proposals < 1``, ``min_length < 1``, or ``outer_rule`` or ``conventions`` is
      unknown.
    TypeError: if ``max_proposals`` or ``min_length`` is not a static int.

  Examples:
    Two runs above the thresholds; the run ``[2, 5)`` is found at both (no merging here):

    >>> import jax.numpy as jnp
    >>> from gaufuse_jax import generate_proposals
    >>> cas = jnp.array([0.0, 0.1, 0.9, 0.8, 0.7, 0.1, 0.0, 0.6, 0.5, 0.0])
    >>> p = generate_proposals(cas, 10, jnp.array([0.3, 0.55]), max_proposals=4,
    ...                        conventions="exact")
    >>> p.start.tolist(), p.end.tolist(), p.valid.tolist()
    ([2.0, 2.0, 7.0, 0.0], [5.0, 5.0, 9.0, 0.0], [True, True, True, False])
    >>> [round(s, 3) for s in p.score.tolist()]
    [0.8, 0.8, 0.55, 0.0]
  """
  cas = jnp.asarray(cas)
  thresholds = jnp.asarray(thresholds)
  if cas.ndim != 1 or cas.shape[0] == 0:
    raise ValueError(f"generate_proposals: cas must have shape [T] with T >= 1, got {cas.shape}")
  if thresholds.ndim != 1 or thresholds.shape[0] == 0:
    raise ValueError("generate_proposals: thresholds must have shape [H] with H >= 1, "
                     f"got {thresholds.shape}")
  max_proposals = _static_int(max_proposals, "max_proposals", 1)
  min_length = _static_int(min_length, "min_length", 1)
  if outer_rule not in segments.OUTER_RULES:
    raise ValueError(f"generate_proposals: outer_rule must be one of {segments.OUTER_RULES}, "
                     f"got {outer_rule!r}")
  segments.check_conventions("generate_proposals", conventions)

  dtype = jnp.promote_types(cas.dtype, jnp.float32)
  num_snippets = cas.shape[0]
  t = jnp.arange(num_snippets, dtype=jnp.int32)
  length_valid = jnp.clip(jnp.asarray(valid_length, jnp.int32), 0, num_snippets)
  inside = t < length_valid
  x = jnp.where(inside & jnp.isfinite(cas), cas.astype(dtype), 0.0)

  # Prefix sums of the CAS centred on its mean over the valid part: smaller partial sums, so
  # less float32 round-off. The mean cancels in `inner - outer` and is added back to `inner`.
  centre = jnp.sum(x) / jnp.maximum(length_valid, 1).astype(dtype)
  csum = jnp.concatenate([jnp.zeros((1,), dtype), jnp.cumsum(jnp.where(inside, x - centre, 0.0))])

  above = (x[None, :] > thresholds.astype(dtype)[:, None]) & inside  # [H, T]
  before = jnp.pad(above[:, :-1], ((0, 0), (1, 0)))
  is_start = above & ~before
  # End of the run through t: first u >= t that is not above the threshold (T if none).
  end = jax.lax.cummin(jnp.where(above, num_snippets, t), axis=1, reverse=True)
  start = jnp.broadcast_to(t, above.shape)
  length = end - start
  # A table lookup is cheaper than the power in outer_width at every (threshold, snippet).
  width_left, width_right = (w[length] for w in segments.outer_width(
      jnp.arange(num_snippets + 1), outer_rule, conventions))
  left = jnp.maximum(start - width_left, 0)
  if conventions == "reference":
    inner_end = jnp.minimum(end + 1, length_valid)
    right_start = inner_end
    right = jnp.maximum(jnp.minimum(end + 1 + width_right, length_valid - 1), right_start)
    stored_end = end + 1
  else:
    inner_end = right_start = stored_end = end
    right = jnp.minimum(end + width_right, length_valid)

  csum_start = csum[:-1]
  inner_dev = (csum[inner_end] - csum_start) / jnp.maximum(inner_end - start, 1).astype(dtype)
  outer_count = (start - left) + (right - right_start)
  outer_sum = (csum_start - csum[left]) + (csum[right] - csum[right_start])
  outer_dev = outer_sum / jnp.maximum(outer_count, 1).astype(dtype)
  inner = inner_dev + centre
  score = jnp.where(outer_count > 0, inner_dev - outer_dev, inner)
  candidate = is_start & (length >= min_length)
  copies = jnp.ones_like(length)
  if merge_duplicates:
    candidate, copies = _merge_copies(thresholds.astype(dtype), is_start, end, candidate)

  # Keep the `max_proposals` best; top_k is stable, so ties keep (threshold, start) order.
  num_candidates = candidate.size
  pad = max(max_proposals - num_candidates, 0)
  flat = lambda a, fill: jnp.pad(a.reshape(-1), (0, pad), constant_values=fill)
  candidate = flat(candidate, False)
  key = jnp.where(candidate, flat(score, 0.0), -jnp.inf)
  _, order = jax.lax.top_k(key, max_proposals)
  valid = candidate[order]
  take = lambda a: jnp.where(valid, flat(a, 0).astype(dtype)[order], 0.0)
  num_kept = jnp.sum(valid, dtype=jnp.int32)
  return Proposals(
      start=take(start), end=take(stored_end), score=take(score), inner=take(inner), valid=valid,
      num_dropped=jnp.sum(candidate, dtype=jnp.int32) - num_kept,
      count=jnp.where(valid, flat(copies, 0)[order], 0))


def _merge_copies(thresholds, is_start, end, candidate):
  """``(candidate, copies)`` ``[H, T]`` with one candidate left per distinct run.

  With the thresholds in ascending order (ties by index), the run starting at ``s`` at one
  threshold contains the run starting at ``s`` at the next one; they are the same run when both
  start at ``s`` and end together. Copies thus form chains of consecutive sorted thresholds:
  the first of a chain is kept and counts the chain's length.
  """
  order = jnp.argsort(thresholds, stable=True)
  start_s, end_s = is_start[order], end[order]
  same_next = start_s[:-1] & start_s[1:] & (end_s[:-1] == end_s[1:])  # [H - 1, T]
  # A chain from sorted threshold h runs up to the first h' >= h whose run differs at h' + 1.
  last = jnp.concatenate([~same_next, jnp.ones_like(start_s[:1])])
  h = jnp.arange(last.shape[0], dtype=jnp.int32)[:, None]
  copies_s = jax.lax.cummin(jnp.where(last, h, last.shape[0]), axis=0, reverse=True) - h + 1
  first_s = jnp.concatenate([jnp.ones_like(start_s[:1]), ~same_next])
  rank = jnp.argsort(order)  # sorted position of each threshold
  return candidate & first_s[rank], copies_s[rank]
