"""Detection mAP (W-TALC and ActivityNet protocols, ``matching``), classification mAP and
precision-recall curves, host-side numpy float64."""

from __future__ import annotations

import numbers
from typing import Any, Mapping, Sequence

import numpy as np

from gaufuse_jax._src import segments as segments_lib
from gaufuse_jax._src import matching
from gaufuse_jax._src import tables


# The averages the field reports; each is reported when all its thresholds were evaluated.
AVERAGE_RANGES = {
    "0.1:0.5": np.arange(1, 6) / 10,
    "0.3:0.7": np.arange(3, 8) / 10,
    "0.1:0.7": np.arange(1, 8) / 10,
    "0.5:0.05:0.95": np.linspace(0.5, 0.95, 10),
}


def detection_map(predictions: Mapping[str, Any], ground_truth: Mapping[str, Any], *,
                  num_classes: int, tiou_thresholds: Sequence[float] | None = None,
                  protocol: str = "wtalc", ambiguous: Mapping[str, Any] | None = None,
                  fps: float = segments_lib.FPS,
                  frames_per_snippet: float = segments_lib.FRAMES_PER_SNIPPET) -> dict[str, Any]:
  """Temporal detection mAP under the W-TALC or the ActivityNet protocol.

  ``"wtalc"`` gives the numbers of the authors' ``evaluation/detectionMAP.py`` (``getLocMAP``
  after ``filter_segments``), ``"activitynet"`` those of the official ActivityNet
  ``compute_average_precision_detection``; the discretization, matching, AP and tie rules (and
  the few documented deviations) are in the module docstring. Predictions may start before 0
  and end after the video; they are evaluated unclipped, as the references do.

  Args:
    predictions: ``tables.DetectionTable`` (P predictions; float segments ``[P, 2]`` in snippets,
      finite, ``start <= end``, any sign).
    ground_truth: ``tables.GroundTruthTable`` (G segments in seconds).
    num_classes: C; labels must lie in ``[0, C)``.
    tiou_thresholds: ``[n_tiou]`` values in (0, 1]; default ``0.1:0.1:0.7`` (``"wtalc"``) or
      ``np.linspace(0.5, 0.95, 10)`` (``"activitynet"``, as the official code).
    protocol: ``"wtalc"`` or ``"activitynet"``.
    ambiguous: optional ambiguous intervals (seconds); predictions overlapping one of their
      video are dropped before matching, whatever their class.
    fps, frames_per_snippet: one snippet is ``frames_per_snippet / fps`` seconds (16/25).

  Returns:
    A dict; with ``p = protocol``, scalar entries are Python floats/ints:
    ``f"{p}/mAP@{t:g}"`` per threshold (percent); ``f"{p}/mAP@{range}"`` for each of
    ``AVERAGE_RANGES`` whose thresholds were all evaluated (mean of the per-threshold mAPs);
    ``f"{p}/num_predictions"`` (after the filter); ``f"{p}/num_ambiguous_dropped"`` (only with
    ``ambiguous``). Array entries: ``f"{p}/tiou_thresholds"`` ``[n_tiou]``,
    ``f"{p}/per_class_ap"`` ``[n_tiou, C]`` float64 percent (0 for classes without GT),
    ``f"{p}/class_has_gt"`` ``[C]`` bool (the classes averaged).

  Raises:
    ValueError: unknown protocol; bad thresholds, fps or num_classes; a missing key, wrong
      dtype or shape, mismatched lengths, out-of-range label or negative / out-of-range video,
      NaN/inf, or a segment with ``end < start``; ground truth without any segment.

  Examples:
    One GT instance (1.28-3.2 s = snippets ``[2, 5)``) found by the second-ranked prediction:

    >>> import numpy as np
    >>> from gaufuse_jax import detection_map
    >>> predictions = {"video": np.array([0, 0]), "label": np.array([0, 0]),
    ...                "segment": np.array([[7.0, 9.0], [2.0, 5.0]]),
    ...                "score": np.array([0.95, 0.9])}
    >>> gt = {"video": np.array([0]), "label": np.array([0]), "segment": np.array([[1.28, 3.2]])}
    >>> metrics = detection_map(predictions, gt, num_classes=1)
    >>> metrics["wtalc/mAP@0.5"], metrics["wtalc/mAP@0.1:0.7"]
    (50.0, 50.0)
  """
  thresholds = matching.check_thresholds(tiou_thresholds, protocol)
  if not isinstance(num_classes, numbers.Integral) or num_classes < 1:
    raise ValueError(f"num_classes: expected a positive integer, found {num_classes!r}")
  fps = tables.check_positive("fps", fps)
  frames_per_snippet = tables.check_positive("frames_per_snippet", frames_per_snippet)
  det = tables.check_table(predictions, "predictions", num_classes=num_classes, scored=True)
  gt = tables.check_table(ground_truth, "ground_truth", num_classes=num_classes)
  if not gt["video"].size:
    raise ValueError("ground_truth: no segments; mAP is undefined")

  p = protocol
  out: dict[str, Any] = {}
  if ambiguous is not None:
    amb = tables.check_table(ambiguous, "ambiguous", num_classes=None, labelled=False)
    drop = matching.ambiguous_mask(protocol, det, amb, fps, frames_per_snippet)
    det = {k: v[~drop] for k, v in det.items()}
    out[f"{p}/num_ambiguous_dropped"] = int(drop.sum())

  pred_iv, gt_iv = matching.discretize(protocol, det["segment"], gt["segment"], fps,
                                       frames_per_snippet)
  num_videos = int(max(det["video"].max(initial=0), gt["video"].max())) + 1
  tp = matching.greedy_match(det["label"] * num_videos + det["video"], det["score"], pred_iv,
                     gt["label"] * num_videos + gt["video"], gt_iv, thresholds)

  num_positive = np.bincount(gt["label"], minlength=num_classes)
  has_gt = num_positive > 0
  ap = np.zeros((len(thresholds), num_classes))
  order = np.lexsort((np.arange(len(det["score"])), -det["score"], det["label"]))
  class_ends = np.searchsorted(det["label"][order], np.arange(num_classes), side="right")
  class_starts = np.r_[0, class_ends[:-1]]
  for c in np.flatnonzero(has_gt):
    ap[:, c] = matching.all_points_ap(tp[:, order[class_starts[c]:class_ends[c]]], num_positive[c])

  maps = [100 * np.mean(ap[t, has_gt]) for t in range(len(thresholds))]
  for t, value in zip(thresholds, maps):
    out[f"{p}/mAP@{t:g}"] = float(value)
  for name, needed in AVERAGE_RANGES.items():
    where = [np.flatnonzero(np.isclose(thresholds, t, rtol=0, atol=1e-9)) for t in needed]
    if all(w.size for w in where):
      out[f"{p}/mAP@{name}"] = float(np.mean([maps[w[0]] for w in where]))
  out[f"{p}/num_predictions"] = int(len(det["score"]))
  out[f"{p}/tiou_thresholds"] = thresholds.copy()
  out[f"{p}/per_class_ap"] = 100 * ap
  out[f"{p}/class_has_gt"] = has_gt
  return out


def classification_map(video_scores, video_labels) -> float:
  """Video-level classification mAP (cmAP), in percent.

  Mean over classes of the non-interpolated AP, i.e. the mean precision at the ranks of the
  positives (W-TALC / the authors' ``evaluation/classificationMAP.py``). Videos are ranked per
  class by descending score, ties in input order (W-TALC: unstable ``argsort``); computed in float64
  (W-TALC: float32). A class without any positive video is excluded from the mean (W-TALC
  returns NaN then).

  Args:
    video_scores: ``[V, C]`` float scores.
    video_labels: ``[V, C]`` multi-hot labels, bool or numbers equal to 0 or 1.

  Returns:
    A Python float in [0, 100].

  Raises:
    ValueError: non-2-D or mismatched shapes, NaN/inf scores, labels other than 0/1, or no class
      with a positive video.
  """
  scores = np.asarray(video_scores)
  labels = np.asarray(video_labels)
  if scores.ndim != 2 or scores.shape != labels.shape:
    raise ValueError(f"classification_map: expected video_scores and video_labels of the same "
                     f"shape [V, C], found {scores.shape} and {labels.shape}")
  if scores.dtype == bool or not np.issubdtype(scores.dtype, np.number):
    raise ValueError(f"classification_map: video_scores must be numeric, found {scores.dtype}")
  scores = scores.astype(np.float64)
  if not np.all(np.isfinite(scores)):
    raise ValueError("classification_map: video_scores contains NaN or inf")
  if not np.all((labels == 0) | (labels == 1)):
    raise ValueError(f"classification_map: video_labels must be 0/1, found values "
                     f"{np.unique(labels)[:10]}")
  order = np.argsort(-scores, axis=0, kind="stable")
  positive = np.take_along_axis(labels == 1, order, axis=0)
  precision = np.cumsum(positive, axis=0) / np.arange(1, len(scores) + 1)[:, None]
  num_positive = positive.sum(0)
  has_positive = num_positive > 0
  if not has_positive.any():
    raise ValueError("classification_map: no class has a positive video; cmAP is undefined")
  ap = np.sum(precision * positive, axis=0)[has_positive] / num_positive[has_positive]
  return float(100 * np.mean(ap))


def precision_recall(detections, ground_truth, *, class_id: int, tiou, num_classes: int,
                     protocol: str = "wtalc", fps: float = segments_lib.FPS,
                     frames_per_snippet: float = segments_lib.FRAMES_PER_SNIPPET):
  """Precision and recall along the score ranking of one class, with the evaluation's matching.

  Uses ``detection_map``'s validation, discretization (``protocol``), greedy matching and all-points
  AP, so ``ap`` equals ``detection_map(...)[f"{protocol}/per_class_ap"][:, class_id] / 100``.

  Args:
    detections: ``tables.DetectionTable`` (segments in snippets), all videos and classes.
    ground_truth: ``tables.GroundTruthTable`` (segments in seconds).
    class_id: the class, in ``[0, num_classes)``; it must have ground truth.
    tiou: one threshold or a sequence of ``n_thr`` thresholds in (0, 1].
    num_classes: C.
    protocol: ``"wtalc"`` or ``"activitynet"``.
    fps, frames_per_snippet: one snippet is ``frames_per_snippet / fps`` seconds.

  Returns:
    ``(precision [n_thr, P_c], recall [n_thr, P_c], ap [n_thr], thresholds [n_thr])`` float64;
    ``P_c`` is the number of predictions of the class, ranked by descending score (ties in
    input order).

  Raises:
    ValueError: what ``detection_map`` raises, a ``class_id`` out of range, or a class without
      ground truth.
  """
  thresholds = matching.check_thresholds(np.atleast_1d(np.asarray(tiou, np.float64)), protocol)
  if not isinstance(num_classes, numbers.Integral) or num_classes < 1:
    raise ValueError(f"num_classes: expected a positive integer, found {num_classes!r}")
  if not isinstance(class_id, numbers.Integral) or not 0 <= class_id < num_classes:
    raise ValueError(f"class_id: expected an int in [0, {num_classes}), found {class_id!r}")
  fps = tables.check_positive("fps", fps)
  frames_per_snippet = tables.check_positive("frames_per_snippet", frames_per_snippet)
  det = tables.check_table(detections, "detections", num_classes=num_classes, scored=True)
  gt = tables.check_table(ground_truth, "ground_truth", num_classes=num_classes)
  det = {k: v[det["label"] == class_id] for k, v in det.items()}
  gt = {k: v[gt["label"] == class_id] for k, v in gt.items()}
  num_positive = len(gt["label"])
  if num_positive == 0:
    raise ValueError(f"class_id: class {class_id} has no ground truth; recall is undefined")
  pred_iv, gt_iv = matching.discretize(protocol, det["segment"], gt["segment"], fps,
                                  frames_per_snippet)
  tp = matching.greedy_match(det["video"], det["score"], pred_iv, gt["video"], gt_iv, thresholds)
  tp = tp[:, np.argsort(-det["score"], kind="stable")]
  hits = np.cumsum(tp, axis=1, dtype=np.float64)
  precision = hits / np.arange(1, tp.shape[1] + 1)
  return precision, hits / num_positive, matching.all_points_ap(tp, num_positive), thresholds


def detections_from_padded(start, end, score, valid, *, video_index=None) -> tables.DetectionTable:
  """Padded per-(video, class) detections -> a ``tables.DetectionTable`` dict.

  Args:
    start, end, score: ``[B, C, K]`` float (numpy or jax) arrays; segments in snippets.
    valid: ``[B, C, K]`` bool mask of real entries (the fused outputs' validity).
    video_index: optional ``[B]`` int video ids of the rows (default ``arange(B)``).

  Returns:
    ``tables.DetectionTable`` of the valid entries, in row-major (video row, class, k) order; the
    class id is the index on axis 1.

  Raises:
    ValueError: shapes that are not the same 3-D shape, a non-bool ``valid``, a ``video_index``
      not of shape ``[B]`` or negative, or NaN/inf / ``end < start`` in a valid entry (negative
      starts and ends past the video are kept as they are).
  """
  arrays = {k: np.asarray(v) for k, v in
            dict(start=start, end=end, score=score, valid=valid).items()}
  shapes = {k: v.shape for k, v in arrays.items()}
  if arrays["valid"].ndim != 3 or len(set(shapes.values())) > 1:
    raise ValueError(f"detections_from_padded: expected start, end, score, valid of one shape "
                     f"[B, C, K], found {shapes}")
  if arrays["valid"].dtype != bool:
    raise ValueError(f"detections_from_padded: valid must be bool, found {arrays['valid'].dtype}")
  num_rows, num_classes, _ = arrays["valid"].shape
  rows = np.arange(num_rows) if video_index is None else np.asarray(video_index)
  if rows.shape != (num_rows,) or not np.issubdtype(rows.dtype, np.integer) or (
      rows.size and rows.min() < 0):
    raise ValueError(f"detections_from_padded: video_index must be non-negative ints of shape "
                     f"[{num_rows}], found {rows.dtype} {rows.shape}")
  b, c, k = np.nonzero(arrays["valid"])
  det = {"video": rows[b], "label": c, "score": arrays["score"][b, c, k],
         "segment": np.stack([arrays["start"][b, c, k], arrays["end"][b, c, k]], -1)}
  return tables.check_table(det, "detections_from_padded", num_classes=num_classes, scored=True)
