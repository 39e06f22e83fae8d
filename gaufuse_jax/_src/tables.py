"""Detection and ground-truth tables of the evaluation (host-side numpy), checked.

Data formats (dicts of numpy arrays; jax arrays are accepted and copied to the host; extra keys
are ignored):

* ``Detections``: ``video`` int ``[P]`` (index into the video list), ``label`` int ``[P]`` (class
  id), ``score`` float ``[P]``, ``segment`` float ``[P, 2]`` in SNIPPETS, half-open.
* ``GroundTruth``: ``video`` int ``[G]``, ``label`` int ``[G]``, ``segment`` float ``[G, 2]`` in
  SECONDS.
* ``ambiguous`` (optional): ``video`` int ``[A]``, ``segment`` float ``[A, 2]`` in SECONDS
  (W-TALC's ``Ambiguous_test.txt``).

Segments must be finite with ``start <= end``; any other value is accepted: negative starts and
ends past the end of the video (fusion and regression heads produce them) are evaluated as
they are, with the references' formulas, never clipped.
"""

from __future__ import annotations

import math
import numbers
from typing import Mapping

import numpy as np


DetectionTable = dict[str, np.ndarray]
GroundTruthTable = dict[str, np.ndarray]


def check_column(table, key: str, name: str, *, integer: bool, pairs: bool = False) -> np.ndarray:
  """``table[key]`` as int64 ``[n]`` or float64 ``[n]`` / ``[n, 2]`` (``pairs``), checked."""
  if not isinstance(table, Mapping):
    raise ValueError(f"{name}: expected a dict of arrays, found {type(table).__name__}")
  if key not in table:
    raise ValueError(f"{name}: missing key {key!r} (found keys {sorted(table)})")
  arr = np.asarray(table[key])
  label = f"{name}[{key!r}]"
  if arr.size == 0:
    return np.zeros((0, 2) if pairs else (0,), np.int64 if integer else np.float64)
  if arr.ndim != (2 if pairs else 1) or (pairs and arr.shape[1] != 2):
    raise ValueError(f"{label}: expected shape {'[n, 2]' if pairs else '[n]'}, found {arr.shape}")
  if integer:
    if not np.issubdtype(arr.dtype, np.integer):
      raise ValueError(f"{label}: expected an integer array, found dtype {arr.dtype}")
    return arr.astype(np.int64)
  if arr.dtype == bool or not np.issubdtype(arr.dtype, np.number):
    raise ValueError(f"{label}: expected a float array, found dtype {arr.dtype}")
  arr = arr.astype(np.float64)
  finite = np.isfinite(arr).reshape(len(arr), -1).all(-1)
  if not finite.all():
    bad = int(np.flatnonzero(~finite)[0])
    raise ValueError(f"{label}: NaN or inf at entry {bad}: {arr[bad]}")
  return arr


def check_table(table, name: str, *, num_classes: int | None, num_videos: int | None = None,
           scored: bool = False, labelled: bool = True) -> dict[str, np.ndarray]:
  """Validated copy of a DetectionTable / GroundTruthTable / ambiguous dict (see module docstring).

  Raises ``ValueError`` (naming the argument, what was expected and what was found) for a missing
  key, a wrong dtype or shape, mismatched lengths, a negative or out-of-range video index, a
  label outside ``[0, num_classes)``, NaN/inf, or a segment with ``end < start``. Any other
  finite segment (negative start, end past the video) is valid.
  """
  out = {"video": check_column(table, "video", name, integer=True),
         "segment": check_column(table, "segment", name, integer=False, pairs=True)}
  if labelled:
    out["label"] = check_column(table, "label", name, integer=True)
  if scored:
    out["score"] = check_column(table, "score", name, integer=False)
  lengths = {k: len(v) for k, v in out.items()}
  if len(set(lengths.values())) > 1:
    raise ValueError(f"{name}: arrays must have the same length, found {lengths}")
  if out["video"].size and out["video"].min() < 0:
    raise ValueError(f"{name}['video']: negative video index {out['video'].min()}")
  if num_videos is not None and out["video"].size and out["video"].max() >= num_videos:
    raise ValueError(f"{name}['video']: index {out['video'].max()} out of range for "
                     f"{num_videos} videos")
  if labelled and out["label"].size:
    lo, hi = out["label"].min(), out["label"].max()
    if lo < 0 or hi >= num_classes:
      raise ValueError(f"{name}['label']: expected class ids in [0, {num_classes}), found "
                       f"[{lo}, {hi}]")
  seg = out["segment"]
  bad = np.flatnonzero(seg[:, 1] < seg[:, 0])
  if bad.size:
    raise ValueError(f"{name}['segment']: expected start <= end, found {seg[bad[0]]} at "
                     f"entry {bad[0]} ({bad.size} such entries)")
  return out


def check_positive(name: str, value) -> float:
  if not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
    raise ValueError(f"{name}: expected a positive finite number, found {value!r}")
  return float(value)
