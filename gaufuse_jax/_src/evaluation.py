"""Detection mAP (W-TALC and ActivityNet protocols), classification mAP, results files.

Host-side numpy, float64, vectorized. Sources: the authors' W-TALC-style evaluator
(GauFuse_WSTAL ``evaluation/detectionMAP.py``: ``getLocMAP``, ``filter_segments``,
``_ap_from_pr``; ``evaluation/classificationMAP.py``) and the official ActivityNet evaluator
(Heilbron et al., ``ActivityNet/Evaluation/eval_detection.py``:
``compute_average_precision_detection``, ``segment_iou``, ``interpolated_prec_rec``).

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

The two protocols share one matching and one AP routine and differ only in how segments are
discretized before the tIoU:

* ``"wtalc"`` (the authors' ``getLocMAP``, what the WSTAL papers report): GT seconds -> snippet
  set ``range(round(ts * f), round(te * f))`` with ``f = fps / frames_per_snippet`` (25/16;
  ``np.round`` rounds half to even exactly like Python's ``round``, e.g. 2.5 -> 2); prediction
  -> ``range(int(s), int(e))`` where ``int`` truncates toward ZERO (``np.trunc``), which is not
  ``floor`` for negative values: ``[-0.9, 3.2)`` -> ``{0, 1, 2}`` (floor would give
  ``{-1, ..., 2}``), ``[-1.5, 2)`` -> ``{-1, 0, 1}``, ``[-0.5, 0.7)`` -> empty. The tIoU of two
  integer sets ``range(a, b)``, ``range(c, d)`` (``a <= b``, ``c <= d``) is the tIoU of the
  integer intervals, computed here without building the sets.
* ``"activitynet"`` (official ``compute_average_precision_detection``): predictions converted to
  seconds (``s * frames_per_snippet / fps``), continuous tIoU (``segment_iou``) against GT
  seconds.

Matching (both protocols, per tIoU threshold and class): predictions in descending score order
each take the unmatched GT of the same video with the highest tIoU, if that tIoU is ``>= thr``
(true positive), else count as a false positive; a GT is matched at most once. AP is the
all-points interpolated AP (``_ap_from_pr`` in W-TALC, ``interpolated_prec_rec`` in ActivityNet;
the two are the same formula). mAP is the mean over classes, times 100.

Decisions where the sources are silent or unusable (documented deviations):

* Equal scores: predictions keep their input order (a stable sort). Both references sort with
  numpy's default ``argsort`` (W-TALC ``argsort(-score)``, ActivityNet ``argsort()[::-1]``),
  whose order of ties depends on the numpy build and CPU (numpy 2.x on x86 reorders ties even in
  10-element arrays); with a stable sort W-TALC would give our order and ActivityNet the reverse.
  Only tied scores are affected.
* Equal tIoU with two unmatched GT: the GT given first wins (W-TALC's strict ``IoU > best_iou``
  in list order; the official code takes ``argsort()[::-1]``, again unspecified for ties).
* A class with GT but no prediction has AP 0. (The authors' ``getLocMAP`` returns 0 for the
  *whole* mAP as soon as one class has no prediction; we do not copy that.)
* A class without GT is excluded from the mean (W-TALC averages over the classes that have
  temporal GT, the official code over the GT's classes); its per-class AP is reported as 0 and
  ``class_has_gt`` is False. Its predictions affect nothing else.
* An empty union has tIoU 0, so it never matches. Under ``"wtalc"`` this is an empty prediction
  set (``int(s) == int(e)``, e.g. ``[-0.5, 0.7)`` or ``[3.2, 3.9)``) against an empty GT set
  (17 THUMOS14 test GT shorter than one rounded snippet): the authors' code raises
  ``ZeroDivisionError`` there. Under ``"activitynet"`` it is a zero-length prediction against a
  zero-length GT: the official code gets NaN, which passes its ``tiou < thr`` test and would
  count as a true positive. An empty prediction set against a non-empty GT set has tIoU 0 in
  all three.
* Ambiguous filter: a prediction is dropped, whatever its class, when it overlaps an ambiguous
  interval of the same video. ``"wtalc"`` compares like the authors' ``filter_segments``: the
  ambiguous seconds become a snippet set with the GT rounding and the prediction its truncated
  set; dropped when they share a snippet (an empty prediction set is kept; the authors raise
  ``ZeroDivisionError`` when both sets are empty, we keep it). ``"activitynet"`` compares
  continuous seconds (the official evaluator has no such filter); dropped when the open overlap
  is > 0 (touching intervals are kept).

The tIoU here is host-side float64 numpy, not ``segments.overlap`` (float32 jax): the W-TALC
numbers are only reproduced exactly when ``inter / union`` is computed in float64 (e.g.
``7/10 >= 0.7`` holds in float64 but not in float32).
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Mapping, Sequence

import numpy as np

from gaufuse_jax._src import segments as segments_lib

Detections = dict[str, np.ndarray]
GroundTruth = dict[str, np.ndarray]

PROTOCOLS = ("wtalc", "activitynet")

# k/10 is the float nearest to the decimal literal, as W-TALC's ``[0.1, ..., 0.7]``; ActivityNet's
# official evaluator uses exactly ``np.linspace(0.5, 0.95, 10)`` (its 0.9 is 0.8999999999999999).
DEFAULT_TIOU_THRESHOLDS = {
    "wtalc": np.arange(1, 8) / 10,
    "activitynet": np.linspace(0.5, 0.95, 10),
}

# The averages the field reports; each is reported when all its thresholds were evaluated.
AVERAGE_RANGES = {
    "0.1:0.5": np.arange(1, 6) / 10,
    "0.3:0.7": np.arange(3, 8) / 10,
    "0.1:0.7": np.arange(1, 8) / 10,
    "0.5:0.05:0.95": np.linspace(0.5, 0.95, 10),
}

PROTOCOL_DESCRIPTIONS = {
    "wtalc": ("W-TALC/RSKP evaluator: tIoU of integer snippet sets (GT round(s*fps/frames), "
              "prediction int() truncated toward zero), greedy matching, all-points AP"),
    "activitynet": ("official ActivityNet evaluator: continuous tIoU in seconds, greedy matching, "
                    "interpolated all-points AP"),
}

DEFAULT_EXTERNAL_DATA = {
    "used": True,
    "details": "I3D RGB and optical-flow features pretrained on Kinetics-400 (as distributed "
               "by W-TALC).",
}


# ----------------------------------------------------------------------------- validation


def _column(table, key: str, name: str, *, integer: bool, pairs: bool = False) -> np.ndarray:
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


def _table(table, name: str, *, num_classes: int | None, num_videos: int | None = None,
           scored: bool = False, labelled: bool = True) -> dict[str, np.ndarray]:
  """Validated copy of a Detections / GroundTruth / ambiguous dict (see module docstring).

  Raises ``ValueError`` (naming the argument, what was expected and what was found) for a missing
  key, a wrong dtype or shape, mismatched lengths, a negative or out-of-range video index, a
  label outside ``[0, num_classes)``, NaN/inf, or a segment with ``end < start``. Any other
  finite segment (negative start, end past the video) is valid.
  """
  out = {"video": _column(table, "video", name, integer=True),
         "segment": _column(table, "segment", name, integer=False, pairs=True)}
  if labelled:
    out["label"] = _column(table, "label", name, integer=True)
  if scored:
    out["score"] = _column(table, "score", name, integer=False)
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


def _check_positive(name: str, value) -> float:
  if not isinstance(value, numbers.Real) or not math.isfinite(value) or value <= 0:
    raise ValueError(f"{name}: expected a positive finite number, found {value!r}")
  return float(value)


def _thresholds(tiou_thresholds, protocol: str) -> np.ndarray:
  if protocol not in PROTOCOLS:
    raise ValueError(f"protocol: expected one of {PROTOCOLS}, found {protocol!r}")
  if tiou_thresholds is None:
    return DEFAULT_TIOU_THRESHOLDS[protocol]
  thr = np.asarray(tiou_thresholds, np.float64).reshape(-1)
  if thr.size == 0 or not np.all((thr > 0) & (thr <= 1)):
    raise ValueError(f"tiou_thresholds: expected a non-empty list of values in (0, 1], found "
                     f"{tiou_thresholds!r}")
  names = [f"{t:g}" for t in thr]
  if len(set(names)) != len(names):
    raise ValueError(f"tiou_thresholds: duplicate values {names}")
  return thr


# ----------------------------------------------------------------------------- core


def _interval_iou(a, b) -> np.ndarray:
  """tIoU of half-open intervals ``a [..., 2]`` and ``b [..., 2]`` (broadcast); 0 if the union is
  empty. On integer-valued intervals this is the tIoU of the integer sets ``range(lo, hi)``."""
  inter = np.maximum(np.minimum(a[..., 1], b[..., 1]) - np.maximum(a[..., 0], b[..., 0]), 0.0)
  union = (a[..., 1] - a[..., 0]) + (b[..., 1] - b[..., 0]) - inter
  return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _pairs_by_key(query_key: np.ndarray, item_key: np.ndarray):
  """All ``(query, item)`` pairs with equal keys, items grouped in input order.

  Returns:
    ``block_start [Q]`` (first position of the query's key in the key-sorted items, which
    identifies the group), ``count [Q]`` (group size), ``pair_query [M]``, ``pair_col [M]``
    (position of the item inside its group), ``pair_item [M]`` (item index).
  """
  item_order = np.argsort(item_key, kind="stable")
  sorted_keys = item_key[item_order]
  block_start = np.searchsorted(sorted_keys, query_key, side="left")
  count = np.searchsorted(sorted_keys, query_key, side="right") - block_start
  pair_query = np.repeat(np.arange(len(query_key)), count)
  first_pair = np.cumsum(count) - count
  pair_col = np.arange(len(pair_query)) - np.repeat(first_pair, count)
  pair_item = item_order[np.repeat(block_start, count) + pair_col]
  return block_start, count, pair_query, pair_col, pair_item


def _greedy_match(pred_key, pred_score, pred_iv, gt_key, gt_iv, thresholds) -> np.ndarray:
  """True-positive flags ``[n_thr, P]`` of the greedy matching described in the module docstring.

  Matching only interacts inside a (class, video) group, so all groups are matched at once:
  round ``r`` takes the ``r``-th best prediction of every group (vectorized over groups and
  thresholds); the loop runs max-predictions-per-group times.
  """
  num_pred = len(pred_key)
  tp = np.zeros((len(thresholds), num_pred), bool)
  group, count, pair_query, pair_col, pair_item = _pairs_by_key(pred_key, gt_key)
  live = np.flatnonzero(count > 0)  # predictions with at least one GT candidate
  if live.size == 0:
    return tp
  row = np.full(num_pred, -1)
  row[live] = np.arange(live.size)
  width = int(count.max())
  iou = np.full((live.size, width), -1.0)  # -1 never reaches a threshold in (0, 1]
  iou[row[pair_query], pair_col] = _interval_iou(pred_iv[pair_query], gt_iv[pair_item])

  # Rank of each live prediction inside its group: by score descending, ties in input order.
  order = live[np.lexsort((live, -pred_score[live], group[live]))]
  sorted_group = group[order]
  is_first = np.r_[True, sorted_group[1:] != sorted_group[:-1]]
  rank = np.arange(order.size) - np.maximum.accumulate(np.where(is_first, np.arange(order.size), 0))
  by_round = order[np.argsort(rank, kind="stable")]
  round_ends = np.cumsum(np.bincount(rank))

  matched = np.zeros((len(thresholds), len(gt_key) + width), bool)  # by sorted GT position
  cols = np.arange(width)
  thr = thresholds[:, None, None]
  start = 0
  for end in round_ends:
    preds = by_round[start:end]
    start = end
    g = group[preds][:, None] + cols  # [n, width] GT positions (padding masked by iou = -1)
    rows = iou[row[preds]]
    cand = np.where((rows >= thr) & ~matched[:, g], rows, -1.0)  # [n_thr, n, width]
    best = cand.argmax(-1)  # first maximum: the GT given first wins ties
    hit = np.take_along_axis(cand, best[..., None], -1)[..., 0] >= 0
    tp[:, preds] = hit
    t_idx, p_idx = np.nonzero(hit)
    matched[t_idx, g[p_idx, best[t_idx, p_idx]]] = True
  return tp


def _all_points_ap(tp: np.ndarray, num_positive: int) -> np.ndarray:
  """All-points interpolated AP ``[n_thr]`` of ranked TP flags ``[n_thr, n]`` (n >= 0).

  The formula of W-TALC's ``_ap_from_pr`` and ActivityNet's ``interpolated_prec_rec``
  (precision envelope, summed over the recall steps), evaluated term by term as they do so
  that the sums agree to the last bit.
  """
  tp_cum = np.cumsum(tp, axis=1, dtype=np.float64)
  fp_cum = np.cumsum(~tp, axis=1, dtype=np.float64)
  zeros, ones = np.zeros((tp.shape[0], 1)), np.ones((tp.shape[0], 1))
  mprec = np.hstack([zeros, tp_cum / (tp_cum + fp_cum), zeros])
  mrec = np.hstack([zeros, tp_cum / num_positive, ones])
  mprec = np.maximum.accumulate(mprec[:, ::-1], axis=1)[:, ::-1]
  ap = np.zeros(tp.shape[0])
  for t in range(tp.shape[0]):
    idx = np.flatnonzero(mrec[t, 1:] != mrec[t, :-1]) + 1
    ap[t] = np.sum((mrec[t, idx] - mrec[t, idx - 1]) * mprec[t, idx])
  return ap


def _discretize(protocol: str, pred_snippets, gt_seconds, fps: float, frames_per_snippet: float):
  """Prediction ``[P, 2]`` and GT(-like) ``[G, 2]`` intervals in the units the protocol compares.

  ``"wtalc"``: the integer bounds of the authors' snippet sets, ``range(int(s), int(e))`` (``int``
  truncates toward zero: ``np.trunc``, not ``floor``) and ``range(round(ts * f), round(te * f))``
  (round half to even, as Python's ``round``). ``"activitynet"``: both in seconds.
  """
  if protocol == "wtalc":
    return np.trunc(pred_snippets), np.round(gt_seconds * (fps / frames_per_snippet))
  return pred_snippets * (frames_per_snippet / fps), gt_seconds


def _ambiguous_mask(protocol, det, ambiguous, fps, frames_per_snippet) -> np.ndarray:
  """``[P]`` bool, True for predictions that overlap an ambiguous interval of their video."""
  pred_iv, amb_iv = _discretize(protocol, det["segment"], ambiguous["segment"], fps,
                                frames_per_snippet)
  _, _, pair_pred, _, pair_amb = _pairs_by_key(det["video"], ambiguous["video"])
  a, b = pred_iv[pair_pred], amb_iv[pair_amb]
  touching = np.minimum(a[:, 1], b[:, 1]) - np.maximum(a[:, 0], b[:, 0]) > 0
  hit = np.zeros(len(det["video"]), bool)
  hit[pair_pred[touching]] = True
  return hit


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
    predictions: ``Detections`` (P predictions; float segments ``[P, 2]`` in snippets, finite,
      ``start <= end``, any sign).
    ground_truth: ``GroundTruth`` (G segments in seconds).
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
  thresholds = _thresholds(tiou_thresholds, protocol)
  if not isinstance(num_classes, numbers.Integral) or num_classes < 1:
    raise ValueError(f"num_classes: expected a positive integer, found {num_classes!r}")
  fps = _check_positive("fps", fps)
  frames_per_snippet = _check_positive("frames_per_snippet", frames_per_snippet)
  det = _table(predictions, "predictions", num_classes=num_classes, scored=True)
  gt = _table(ground_truth, "ground_truth", num_classes=num_classes)
  if not gt["video"].size:
    raise ValueError("ground_truth: no segments; mAP is undefined")

  p = protocol
  out: dict[str, Any] = {}
  if ambiguous is not None:
    amb = _table(ambiguous, "ambiguous", num_classes=None, labelled=False)
    drop = _ambiguous_mask(protocol, det, amb, fps, frames_per_snippet)
    det = {k: v[~drop] for k, v in det.items()}
    out[f"{p}/num_ambiguous_dropped"] = int(drop.sum())

  pred_iv, gt_iv = _discretize(protocol, det["segment"], gt["segment"], fps, frames_per_snippet)
  num_videos = int(max(det["video"].max(initial=0), gt["video"].max())) + 1
  tp = _greedy_match(det["label"] * num_videos + det["video"], det["score"], pred_iv,
                     gt["label"] * num_videos + gt["video"], gt_iv, thresholds)

  num_positive = np.bincount(gt["label"], minlength=num_classes)
  has_gt = num_positive > 0
  ap = np.zeros((len(thresholds), num_classes))
  order = np.lexsort((np.arange(len(det["score"])), -det["score"], det["label"]))
  class_ends = np.searchsorted(det["label"][order], np.arange(num_classes), side="right")
  class_starts = np.r_[0, class_ends[:-1]]
  for c in np.flatnonzero(has_gt):
    ap[:, c] = _all_points_ap(tp[:, order[class_starts[c]:class_ends[c]]], num_positive[c])

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


def detections_from_padded(start, end, score, valid, *, video_index=None) -> Detections:
  """Padded per-(video, class) detections -> a ``Detections`` dict.

  Args:
    start, end, score: ``[B, C, K]`` float (numpy or jax) arrays; segments in snippets.
    valid: ``[B, C, K]`` bool mask of real entries (the fused outputs' validity).
    video_index: optional ``[B]`` int video ids of the rows (default ``arange(B)``).

  Returns:
    ``Detections`` of the valid entries, in row-major (video row, class, k) order; the class id
    is the index on axis 1.

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
  return _table(det, "detections_from_padded", num_classes=num_classes, scored=True)


# ----------------------------------------------------------------------------- outputs


def format_map_table(metrics: Mapping[str, Any], *, protocol: str, dataset_name: str,
                     cmap: float | None = None) -> str:
  """The markdown mAP table (one row: mAP per tIoU, averages, cmAP) for one protocol.

  Args:
    metrics: a dict holding the scalar ``f"{protocol}/mAP@..."`` entries of ``detection_map``
      (other keys are ignored; the array entries are not needed).
    protocol: ``"wtalc"`` or ``"activitynet"``.
    dataset_name: the dataset and variant, e.g. ``"THUMOS14 (Thumos14reduced test, 212 videos)"``.
    cmap: optional classification mAP (percent), shown as the last column.

  Returns:
    A caption line naming dataset and protocol, then a one-row table: mAP (%) per tIoU, the
    averages present, and cmAP.

  Raises:
    ValueError: unknown protocol or no ``f"{protocol}/mAP@<tIoU>"`` entry.
  """
  if protocol not in PROTOCOLS:
    raise ValueError(f"protocol: expected one of {PROTOCOLS}, found {protocol!r}")
  prefix = f"{protocol}/mAP@"
  entries = {k[len(prefix):]: float(v) for k, v in metrics.items()
             if isinstance(k, str) and k.startswith(prefix) and np.ndim(v) == 0}
  per_tiou = sorted((name for name in entries if ":" not in name), key=float)
  if not per_tiou:
    raise ValueError(f"format_map_table: metrics has no '{prefix}<tIoU>' entry "
                     f"(keys: {sorted(metrics)[:20]})")
  averages = [n for n in AVERAGE_RANGES if n in entries]
  averages += sorted(n for n in entries if ":" in n and n not in AVERAGE_RANGES)
  header = per_tiou + [f"avg {n}" for n in averages] + (["cmAP"] if cmap is not None else [])
  values = [entries[n] for n in per_tiou + averages] + ([float(cmap)] if cmap is not None else [])
  caption = f"**{dataset_name}**, protocol `{protocol}` ({PROTOCOL_DESCRIPTIONS[protocol]})"
  dropped = metrics.get(f"{protocol}/num_ambiguous_dropped")
  if dropped is not None:
    caption += f"; ambiguous-interval filter dropped {int(dropped)} predictions"
  return "\n".join([
      caption + ".",
      "",
      "| tIoU | " + " | ".join(header) + " |",
      "|:--|" + "--:|" * len(header),
      "| mAP (%) | " + " | ".join(f"{v:.2f}" for v in values) + " |",
  ])


def _names(values, name: str) -> list[str]:
  names = [v.decode() if isinstance(v, bytes) else v for v in values]
  if not all(isinstance(n, str) for n in names):
    raise ValueError(f"{name}: expected strings, found {sorted({type(n).__name__ for n in names})}")
  if len(set(names)) != len(names):
    raise ValueError(f"{name}: names must be unique")
  return names


def results_json(detections: Mapping[str, Any], video_names: Sequence[str],
                 class_names: Sequence[str], *, fps: float = segments_lib.FPS,
                 frames_per_snippet: float = segments_lib.FRAMES_PER_SNIPPET,
                 version: str = "VERSION 1.3",
                 external_data: Mapping[str, Any] | None = None) -> dict[str, Any]:
  """Detections -> an ActivityNet-format results object, segments in seconds.

  The ``results`` file format read by the official ActivityNet evaluator
  (``ANETdetection._import_prediction``); segments are written unclipped (negative starts and ends
  past the video stay as they are, the official evaluator reads any float).

  Args:
    detections: ``Detections`` (segments in snippets).
    video_names: ``[V]`` unique names (str or bytes) indexed by ``detections["video"]``.
    class_names: ``[C]`` unique names indexed by ``detections["label"]``.
    fps, frames_per_snippet: seconds = snippets * frames_per_snippet / fps.
    version: the ``"version"`` string.
    external_data: ``{"used": bool, "details": str}``; default ``DEFAULT_EXTERNAL_DATA``.

  Returns:
    ``{"version", "results": {video: [{"label", "score", "segment": [s, e]}]},
    "external_data"}`` of plain Python types (``json.dumps``-able); every video of
    ``video_names`` is present (possibly with an empty list), its detections by descending score.

  Raises:
    ValueError: invalid detections (see ``detection_map``), out-of-range indices, or non-unique
      or non-string names.
  """
  videos = _names(video_names, "video_names")
  classes = _names(class_names, "class_names")
  det = _table(detections, "detections", num_classes=len(classes), num_videos=len(videos),
               scored=True)
  seconds = det["segment"] * (_check_positive("frames_per_snippet", frames_per_snippet)
                              / _check_positive("fps", fps))
  order = np.lexsort((-det["score"], det["video"]))
  results: dict[str, list] = {v: [] for v in videos}
  for v, c, s, seg in zip(det["video"][order].tolist(), det["label"][order].tolist(),
                          det["score"][order].tolist(), seconds[order].tolist()):
    results[videos[v]].append({"label": classes[c], "score": s, "segment": seg})
  obj = {"version": version, "results": results,
         "external_data": dict(DEFAULT_EXTERNAL_DATA if external_data is None else external_data)}
  validate_results_json(obj)
  return obj


def _is_real(x) -> bool:
  return isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(x)


def validate_results_json(obj, *, class_names: Sequence[str] | None = None) -> None:
  """Checks an ActivityNet-format results object; raises ``ValueError`` naming the first problem.

  Schema: a dict with ``"version"`` (str), ``"results"`` (dict: video name (str) -> list of
  ``{"label": str, "score": finite number, "segment": [start, end]}`` with finite
  ``start <= end`` seconds, any sign) and ``"external_data"`` (dict with ``"used"`` bool and
  ``"details"`` str). With ``class_names``, every label must be one of them.
  """
  if not isinstance(obj, Mapping):
    raise ValueError(f"results: expected a dict, found {type(obj).__name__}")
  missing = {"version", "results", "external_data"} - set(obj)
  if missing:
    raise ValueError(f"results: missing keys {sorted(missing)}")
  if not isinstance(obj["version"], str):
    raise ValueError(f"results['version']: expected str, found {obj['version']!r}")
  ext = obj["external_data"]
  if not (isinstance(ext, Mapping) and isinstance(ext.get("used"), bool)
          and isinstance(ext.get("details"), str)):
    raise ValueError(f"results['external_data']: expected {{'used': bool, 'details': str}}, "
                     f"found {ext!r}")
  if not isinstance(obj["results"], Mapping):
    raise ValueError(f"results['results']: expected a dict, found {type(obj['results']).__name__}")
  allowed = None if class_names is None else set(_names(class_names, "class_names"))
  for video, entries in obj["results"].items():
    where = f"results['results'][{video!r}]"
    if not isinstance(video, str):
      raise ValueError(f"{where}: video names must be str")
    if not isinstance(entries, list):
      raise ValueError(f"{where}: expected a list, found {type(entries).__name__}")
    for i, entry in enumerate(entries):
      at = f"{where}[{i}]"
      if not isinstance(entry, Mapping) or {"label", "score", "segment"} - set(entry):
        raise ValueError(f"{at}: expected a dict with 'label', 'score', 'segment', found {entry!r}")
      if not isinstance(entry["label"], str) or (allowed is not None
                                                 and entry["label"] not in allowed):
        raise ValueError(f"{at}['label']: unknown or non-string label {entry['label']!r}")
      if not _is_real(entry["score"]):
        raise ValueError(f"{at}['score']: expected a finite number, found {entry['score']!r}")
      seg = entry["segment"]
      if not (isinstance(seg, (list, tuple)) and len(seg) == 2 and all(map(_is_real, seg))
              and seg[0] <= seg[1]):
        raise ValueError(f"{at}['segment']: expected [start, end] finite seconds with "
                         f"start <= end, found {seg!r}")


def detections_from_results_json(obj, video_names: Sequence[str], class_names: Sequence[str], *,
                                 fps: float = segments_lib.FPS,
                                 frames_per_snippet: float = segments_lib.FRAMES_PER_SNIPPET
                                 ) -> Detections:
  """An ActivityNet-format results object -> ``Detections`` (segments back in snippets).

  The inverse of ``results_json`` (up to float round-off of the unit conversion), e.g. to score a
  saved results file with ``detection_map``.

  Raises:
    ValueError: an invalid object (``validate_results_json``), or a video or label not in
      ``video_names`` / ``class_names``.
  """
  validate_results_json(obj, class_names=class_names)
  video_id = {n: i for i, n in enumerate(_names(video_names, "video_names"))}
  class_id = {n: i for i, n in enumerate(_names(class_names, "class_names"))}
  unknown = sorted(set(obj["results"]) - set(video_id))
  if unknown:
    raise ValueError(f"results: videos not in video_names: {unknown[:5]}")
  rows = [(video_id[v], class_id[e["label"]], e["score"], *e["segment"])
          for v, entries in obj["results"].items() for e in entries]
  table = np.array(rows, np.float64).reshape(-1, 5)
  to_snippets = (_check_positive("fps", fps)
                 / _check_positive("frames_per_snippet", frames_per_snippet))
  return {"video": table[:, 0].astype(np.int64), "label": table[:, 1].astype(np.int64),
          "score": table[:, 2], "segment": table[:, 3:] * to_snippets}
