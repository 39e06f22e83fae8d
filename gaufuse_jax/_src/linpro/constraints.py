"""LinPro constraint rows of fused instances (paper eq. 5; the authors'
``utils/utils.py:compute_score_matrix``): inner and outer areas, coefficients, the checks."""

from __future__ import annotations

import functools
from typing import Literal

import jax
import jax.numpy as jnp

from gaufuse_jax._src import segments as segments_lib


Normalize = Literal["sum", "mean"]
NORMALIZATIONS = ("sum", "mean")

INNER, OUTER = 1, 2  # area code of a snippet for an instance row


def check_options(outer_rule, normalize):
  if outer_rule not in segments_lib.OUTER_RULES:
    raise ValueError(f"outer_rule must be one of {segments_lib.OUTER_RULES}, got {outer_rule!r}")
  if normalize not in NORMALIZATIONS:
    raise ValueError(f"normalize must be one of {NORMALIZATIONS}, got {normalize!r}")


def check_shapes(segments, scores, valid, name="linpro"):
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


def area_codes(areas, points):
  """``[K, P]`` int32: ``INNER`` / ``OUTER`` / 0 for each instance at integer ``points [P]``."""
  p = points[None, :]
  left_lo, inner_lo, inner_hi, right_hi = (areas[:, i:i + 1] for i in range(4))
  inner = (p >= inner_lo) & (p < inner_hi)
  outer = ((p >= left_lo) & (p < inner_lo)) | ((p >= inner_hi) & (p < right_hi))
  return jnp.where(inner, INNER, jnp.where(outer, OUTER, 0))


def coefficients(areas, codes, normalize, dtype):
  """``[K, P]`` constraint coefficients for area ``codes [K, P]``: +-1 or +-1/area size."""
  if normalize == "sum":
    inner = outer = jnp.ones(areas.shape[0], dtype)
  else:
    n_inner = (areas[:, 2] - areas[:, 1]).astype(dtype)
    n_outer = (areas[:, 1] - areas[:, 0] + areas[:, 3] - areas[:, 2]).astype(dtype)
    inner = 1.0 / jnp.maximum(n_inner, 1.0)
    outer = 1.0 / jnp.maximum(n_outer, 1.0)
  return jnp.where(codes == INNER, inner[:, None],
                   jnp.where(codes == OUTER, -outer[:, None], 0.0)).astype(dtype)


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
  check_options(outer_rule, normalize)
  segments, scores, valid = as_arrays(segments, scores, valid)
  check_shapes(segments, scores, valid, "linpro_constraints")
  if segments.ndim != 2:
    raise ValueError(f"linpro_constraints: segments must have shape [K, 2], got {segments.shape}")
  dtype = scores.dtype
  areas = instance_areas(segments, valid, valid_length, outer_rule, conventions)
  codes = area_codes(areas, jnp.arange(num_snippets, dtype=jnp.int32))
  return coefficients(areas, codes, normalize, dtype), jnp.where(valid, scores, 0.0)


def as_arrays(segments, scores, valid):
  dtype = jnp.result_type(float)
  return (jnp.asarray(segments, dtype), jnp.asarray(scores, dtype), jnp.asarray(valid, bool))
