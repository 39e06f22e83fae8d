"""Segment geometry shared by proposals, suppression, fusion, LinPro and evaluation.

Inside the library a segment is a half-open interval ``[start, end)`` in *snippet* units
(floats allowed after fusion); seconds appear only at the edges (data loading, results JSON).
One I3D snippet is ``frames_per_snippet / fps`` seconds, 16 / 25 = 0.64 s by default.
"""

from __future__ import annotations

from typing import Literal

import jax.numpy as jnp

FPS = 25.0
FRAMES_PER_SNIPPET = 16.0
SECONDS_PER_SNIPPET = FRAMES_PER_SNIPPET / FPS

OuterRule = Literal["gaufuse", "wtalc"]
OverlapKind = Literal["candidate", "iou"]


def outer_width(length, rule: OuterRule = "gaufuse"):
  """Width, in snippets, of each outer area around an instance of ``length`` snippets.

  Args:
    length: integer or float array of instance lengths in snippets (any shape).
    rule: ``"gaufuse"``, the authors' code, ``floor(0.0785 * length**0.9)``
      (reference §2/§5: about 1 snippet up to length 13, 5 at 100, 14 at 300);
      ``"wtalc"``, W-TALC / RSKP, ``floor(0.25 * length)``.

  Returns:
    int32 array of the shape of ``length``; 0 for lengths <= 0.

  Raises:
    ValueError: for an unknown ``rule``.
  """
  length = jnp.maximum(jnp.asarray(length, jnp.float32), 0.0)
  if rule == "gaufuse":
    width = 0.0785 * length**0.9
  elif rule == "wtalc":
    width = 0.25 * length
  else:
    raise ValueError(f"outer_width: rule must be 'gaufuse' or 'wtalc', got {rule!r}")
  # A small epsilon guards floor() against float32 round-off at exact integers (e.g. 0.25*8).
  return jnp.floor(width + 1e-6).astype(jnp.int32)


def overlap(seed, segments, kind: OverlapKind = "candidate"):
  """Overlap of every segment with one seed segment.

  Args:
    seed: ``[2]`` float array ``(start, end)`` in snippets.
    segments: ``[N, 2]`` float array in snippets.
    kind: ``"candidate"``, intersection / length of each *candidate* segment (the authors'
      fusion code, reference §1 step 2, with half-open lengths); ``"iou"``, intersection over
      union (the paper's wording).

  Returns:
    ``[N]`` float array in ``[0, 1]``; 0 where the denominator is 0 (empty segments).
    Touching segments (``end_i == start_j``) have overlap 0.

  Raises:
    ValueError: for an unknown ``kind``.
  """
  seed = jnp.asarray(seed)
  segments = jnp.asarray(segments)
  inter = jnp.maximum(
      jnp.minimum(seed[1], segments[:, 1]) - jnp.maximum(seed[0], segments[:, 0]), 0.0)
  cand_len = jnp.maximum(segments[:, 1] - segments[:, 0], 0.0)
  if kind == "candidate":
    denom = cand_len
  elif kind == "iou":
    denom = cand_len + jnp.maximum(seed[1] - seed[0], 0.0) - inter
  else:
    raise ValueError(f"overlap: kind must be 'candidate' or 'iou', got {kind!r}")
  return jnp.where(denom > 0, inter / jnp.where(denom > 0, denom, 1.0), 0.0)


def seconds_to_snippets(seconds, fps: float = FPS, frames_per_snippet: float = FRAMES_PER_SNIPPET):
  """Seconds -> (float) snippet coordinate: ``seconds * fps / frames_per_snippet``."""
  return jnp.asarray(seconds) * (fps / frames_per_snippet)


def snippets_to_seconds(snippets, fps: float = FPS, frames_per_snippet: float = FRAMES_PER_SNIPPET):
  """Snippet coordinate -> seconds: ``snippets * frames_per_snippet / fps``."""
  return jnp.asarray(snippets) * (frames_per_snippet / fps)
