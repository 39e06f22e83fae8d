"""The two evaluation protocols: discretization, tIoU, greedy matching and all-points AP
(host-side numpy, float64, vectorized).

Sources: the authors' W-TALC-style evaluator
(GauFuse_WSTAL ``evaluation/detectionMAP.py``: ``getLocMAP``, ``filter_segments``,
``_ap_from_pr``; ``evaluation/classificationMAP.py``) and the official ActivityNet evaluator
(Heilbron et al., ``ActivityNet/Evaluation/eval_detection.py``:
``compute_average_precision_detection``, ``segment_iou``, ``interpolated_prec_rec``).

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


import numpy as np


PROTOCOLS = ("wtalc", "activitynet")

# k/10 is the float nearest to the decimal literal, as W-TALC's ``[0.1, ..., 0.7]``; ActivityNet's
# official evaluator uses exactly ``np.linspace(0.5, 0.95, 10)`` (its 0.9 is 0.8999999999999999).
DEFAULT_TIOU_THRESHOLDS = {
    "wtalc": np.arange(1, 8) / 10,
    "activitynet": np.linspace(0.5, 0.95, 10),
}



def check_thresholds(tiou_thresholds, protocol: str) -> np.ndarray:
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


def interval_iou(a, b) -> np.ndarray:
  """tIoU of half-open intervals ``a [..., 2]`` and ``b [..., 2]`` (broadcast); 0 if the union is
  empty. On integer-valued intervals this is the tIoU of the integer sets ``range(lo, hi)``."""
  inter = np.maximum(np.minimum(a[..., 1], b[..., 1]) - np.maximum(a[..., 0], b[..., 0]), 0.0)
  union = (a[..., 1] - a[..., 0]) + (b[..., 1] - b[..., 0]) - inter
  return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def pairs_by_key(query_key: np.ndarray, item_key: np.ndarray):
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


def greedy_match(pred_key, pred_score, pred_iv, gt_key, gt_iv, thresholds) -> np.ndarray:
  """True-positive flags ``[n_thr, P]`` of the greedy matching described in the module docstring.

  Matching only interacts inside a (class, video) group, so all groups are matched at once:
  round ``r`` takes the ``r``-th best prediction of every group (vectorized over groups and
  thresholds); the loop runs max-predictions-per-group times.
  """
  num_pred = len(pred_key)
  tp = np.zeros((len(thresholds), num_pred), bool)
  group, count, pair_query, pair_col, pair_item = pairs_by_key(pred_key, gt_key)
  live = np.flatnonzero(count > 0)  # predictions with at least one GT candidate
  if live.size == 0:
    return tp
  row = np.full(num_pred, -1)
  row[live] = np.arange(live.size)
  width = int(count.max())
  iou = np.full((live.size, width), -1.0)  # -1 never reaches a threshold in (0, 1]
  iou[row[pair_query], pair_col] = interval_iou(pred_iv[pair_query], gt_iv[pair_item])

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


def all_points_ap(tp: np.ndarray, num_positive: int) -> np.ndarray:
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


def discretize(protocol: str, pred_snippets, gt_seconds, fps: float, frames_per_snippet: float):
  """Prediction ``[P, 2]`` and GT(-like) ``[G, 2]`` intervals in the units the protocol compares.

  ``"wtalc"``: the integer bounds of the authors' snippet sets, ``range(int(s), int(e))`` (``int``
  truncates toward zero: ``np.trunc``, not ``floor``) and ``range(round(ts * f), round(te * f))``
  (round half to even, as Python's ``round``). ``"activitynet"``: both in seconds.
  """
  if protocol == "wtalc":
    return np.trunc(pred_snippets), np.round(gt_seconds * (fps / frames_per_snippet))
  return pred_snippets * (frames_per_snippet / fps), gt_seconds


def ambiguous_mask(protocol, det, ambiguous, fps, frames_per_snippet) -> np.ndarray:
  """``[P]`` bool, True for predictions that overlap an ambiguous interval of their video."""
  pred_iv, amb_iv = discretize(protocol, det["segment"], ambiguous["segment"], fps,
                                frames_per_snippet)
  _, _, pair_pred, _, pair_amb = pairs_by_key(det["video"], ambiguous["video"])
  a, b = pred_iv[pair_pred], amb_iv[pair_amb]
  touching = np.minimum(a[:, 1], b[:, 1]) - np.maximum(a[:, 0], b[:, 0]) > 0
  hit = np.zeros(len(det["video"]), bool)
  hit[pair_pred[touching]] = True
  return hit
