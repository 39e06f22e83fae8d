"""Segment geometry shared by proposals, suppression, fusion, LinPro and evaluation.

Inside the library a segment is a half-open interval ``[start, end)`` in *snippet* units
(floats allowed after fusion); seconds appear only at the edges (data loading, results JSON).
One I3D snippet is ``frames_per_snippet / fps`` seconds, 16 / 25 = 0.64 s by default.

Two conventions (``conventions=`` of proposals, suppression, fusion and LinPro) say what a
segment covers and how it is measured:

* ``"reference"`` (default): the authors' code (``evaluation/detectionMAP.py:getActLoc``,
  ``NonMaximumSuppression``; ``utils/utils.py:prediction_fuse_module``,
  ``compute_score_matrix``). A run ``[s, e)`` of the CAS is stored as ``[s, e + 1)`` (one
  snippet past the run, also in its inner mean); overlaps count inclusive lengths
  ``end - start + 1``; the outer areas are ``ceil(w)`` snippets on the left (``int(s - w)``)
  and ``floor(w)`` on the right, the right one clipped at the video's last snippet.
* ``"exact"``: our variant. Runs are stored as they are, overlaps use half-open lengths
  ``end - start``, and both outer areas are ``floor(w)`` snippets wide.
"""

from __future__ import annotations

from typing import Literal

import jax.numpy as jnp

FPS = 25.0
FRAMES_PER_SNIPPET = 16.0
SECONDS_PER_SNIPPET = FRAMES_PER_SNIPPET / FPS

OuterRule = Literal["gaufuse", "wtalc"]
OverlapKind = Literal["candidate", "iou"]
Conventions = Literal["reference", "exact"]
CONVENTIONS = ("reference", "exact")
OUTER_RULES = ("gaufuse", "wtalc")
OVERLAPS = ("candidate", "iou")


def check_conventions(fn: str, conventions) -> None:
  """Raise ValueError, naming ``fn``, unless ``conventions`` is one of ``CONVENTIONS``."""
  if conventions not in CONVENTIONS:
    raise ValueError(f"{fn}: conventions must be one of {CONVENTIONS}, got {conventions!r}")


def outer_width(length, rule: OuterRule = "gaufuse", conventions: Conventions = "reference"):
  """Widths, in snippets, of the left and right outer areas of an instance of ``length``.

  With ``w = 0.0785 * length**0.9`` (``rule="gaufuse"``, the authors' code,
  ``evaluation/detectionMAP.py:getActLoc``) or ``w = 0.25 * length`` (``rule="wtalc"``,
  W-TALC / RSKP):

  * ``conventions="exact"``: ``floor(w)`` on both sides (0 for lengths up to 16 under
    ``"gaufuse"``; 4 at 100, 13 at 300);
  * ``conventions="reference"``: ``ceil(w)`` on the left, as ``int(s - w)`` truncates
    (1 for every length from 1 to 16, 5 at 100, 14 at 300), ``floor(w)`` on the right
    (``int(e + w + 1)``). Clipping to the video is the caller's.

  Args:
    length: integer or float array of instance lengths in snippets (any shape).
    rule: ``"gaufuse"`` or ``"wtalc"``.
    conventions: ``"reference"`` or ``"exact"`` (module docstring).

  Returns:
    ``(left, right)``: int32 arrays of the shape of ``length``; 0 for lengths <= 0.

  Raises:
    ValueError: for an unknown ``rule`` or ``conventions``.
  """
  check_conventions("outer_width", conventions)
  length = jnp.maximum(jnp.asarray(length, jnp.float32), 0.0)
  if rule == "gaufuse":
    width = 0.0785 * length**0.9
  elif rule == "wtalc":
    width = 0.25 * length
  else:
    raise ValueError(f"outer_width: rule must be one of {OUTER_RULES}, got {rule!r}")
  # The epsilon guards floor() / ceil() against float32 round-off at exact integers (0.25 * 8).
  # For every length up to 5,000 snippets (THUMOS14's longest video: 2,615) these float32
  # widths equal the authors' float64 ones (tests/test_segments.py).
  right = jnp.floor(width + 1e-6).astype(jnp.int32)
  if conventions == "exact":
    return right, right
  return jnp.ceil(width - 1e-6).astype(jnp.int32), right


def overlap(seed, segments, kind: OverlapKind = "candidate",
            conventions: Conventions = "reference"):
  """Overlap of every segment with one seed segment.

  Args:
    seed: ``[2]`` float array ``(start, end)`` in snippets.
    segments: ``[N, 2]`` float array in snippets.
    kind: ``"candidate"``, intersection / length of each *candidate* segment (the authors'
      fusion code, ``utils/utils.py:prediction_fuse_module``); ``"iou"``, intersection over
      union (the paper's wording, §3.1).
    conventions: ``"reference"``: lengths ``end - start + 1`` and intersection
      ``min(ends) - max(starts) + 1`` (the authors' code, so touching segments overlap by 1);
      ``"exact"``: half-open lengths, touching segments do not overlap.

  Returns:
    ``[N]`` float array in ``[0, 1]``; 0 where the denominator is 0 (empty segments).

  Raises:
    ValueError: for an unknown ``kind`` or ``conventions``.
  """
  check_conventions("overlap", conventions)
  seed = jnp.asarray(seed)
  segments = jnp.asarray(segments)
  extra = 1.0 if conventions == "reference" else 0.0
  inter = jnp.maximum(
      jnp.minimum(seed[1], segments[:, 1]) - jnp.maximum(seed[0], segments[:, 0]) + extra, 0.0)
  cand_len = jnp.maximum(segments[:, 1] - segments[:, 0] + extra, 0.0)
  if kind == "candidate":
    denom = cand_len
  elif kind == "iou":
    denom = cand_len + jnp.maximum(seed[1] - seed[0] + extra, 0.0) - inter
  else:
    raise ValueError(f"overlap: kind must be 'candidate' or 'iou', got {kind!r}")
  return jnp.where(denom > 0, inter / jnp.where(denom > 0, denom, 1.0), 0.0)


def seconds_to_snippets(seconds, fps: float = FPS, frames_per_snippet: float = FRAMES_PER_SNIPPET):
  """Seconds -> (float) snippet coordinate: ``seconds * fps / frames_per_snippet``."""
  return jnp.asarray(seconds) * (fps / frames_per_snippet)


def snippets_to_seconds(snippets, fps: float = FPS, frames_per_snippet: float = FRAMES_PER_SNIPPET):
  """Snippet coordinate -> seconds: ``snippets * frames_per_snippet / fps``."""
  return jnp.asarray(snippets) * (frames_per_snippet / fps)
