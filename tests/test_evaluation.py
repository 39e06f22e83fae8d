"""Tests of gaufuse_jax.evaluation: hand-computed AP cases, a per-prediction pure-Python oracle of
both protocols (written from the module docstring), plain numpy ports of the two reference
evaluators (the authors' ``evaluation/detectionMAP.py`` and the official ActivityNet
``eval_detection.py``) compared with ``detection_map`` on the real THUMOS14 test annotations,
the ambiguous filter, classification mAP, the cross-check of the two protocols,
padded -> Detections, results JSON."""

import json
import math
import pathlib

import jax.numpy as jnp
import numpy as np
import pytest

from gaufuse_jax._src import evaluation as ev
from gaufuse_jax._src import matching
from gaufuse_jax._src import results

F = 25 / 16  # snippets per second


def _det(video, label, score, segment):
  return {"video": np.asarray(video, np.int64), "label": np.asarray(label, np.int64),
          "score": np.asarray(score, np.float64),
          "segment": np.asarray(segment, np.float64).reshape(-1, 2)}


def _gt(video, label, segment):
  return {"video": np.asarray(video, np.int64), "label": np.asarray(label, np.int64),
          "segment": np.asarray(segment, np.float64).reshape(-1, 2)}


def _maps(metrics, protocol):
  thresholds = metrics[f"{protocol}/tiou_thresholds"]
  return np.array([metrics[f"{protocol}/mAP@{t:g}"] for t in thresholds])


# ----------------------------------------------------------------------------- oracle


def _oracle_ap(tp, npos):
  """VOC all-points AP in plain Python."""
  prec, rec, hits = [], [], 0
  for i, t in enumerate(tp):
    hits += t
    prec.append(hits / (i + 1))
    rec.append(hits / npos)
  mprec, mrec = [0.0] + prec + [0.0], [0.0] + rec + [1.0]
  for i in range(len(mprec) - 2, -1, -1):
    mprec[i] = max(mprec[i], mprec[i + 1])
  return sum((mrec[i] - mrec[i - 1]) * mprec[i]
             for i in range(1, len(mrec)) if mrec[i] != mrec[i - 1])


def oracle_map(pred, gt, *, num_classes, thresholds, protocol, ambiguous=None, fps=25.0, fpsn=16.0):
  """Per-prediction brute force: integer snippet *sets* (wtalc) or continuous seconds."""
  f = fps / fpsn

  def pred_iv(s, e):
    return set(range(int(s), int(e))) if protocol == "wtalc" else (s / f, e / f)

  def gt_iv(s, e):
    return set(range(round(s * f), round(e * f))) if protocol == "wtalc" else (s, e)

  def iou(a, b):
    if protocol == "wtalc":
      return len(a & b) / len(a | b) if a | b else 0.0
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = (a[1] - a[0]) + (b[1] - b[0]) - inter
    return inter / union if union > 0 else 0.0

  def overlaps(a, b):
    return bool(a & b) if protocol == "wtalc" else min(a[1], b[1]) - max(a[0], b[0]) > 0

  keep = range(len(pred["score"]))
  if ambiguous is not None:
    keep = [i for i in keep if not any(
        ambiguous["video"][j] == pred["video"][i]
        and overlaps(pred_iv(*pred["segment"][i]), gt_iv(*ambiguous["segment"][j]))
        for j in range(len(ambiguous["video"])))]
  maps, per_class = [], np.zeros((len(thresholds), num_classes))
  classes = sorted(set(gt["label"].tolist()))
  for ti, thr in enumerate(thresholds):
    for c in classes:
      preds = sorted((i for i in keep if pred["label"][i] == c), key=lambda i: -pred["score"][i])
      remaining = [j for j in range(len(gt["label"])) if gt["label"][j] == c]
      npos, tp = len(remaining), []
      for i in preds:
        best, best_j = 0.0, None
        for j in remaining:
          if gt["video"][j] == pred["video"][i]:
            v = iou(pred_iv(*pred["segment"][i]), gt_iv(*gt["segment"][j]))
            if v >= thr and v > best:
              best, best_j = v, j
        if best_j is not None:
          remaining.remove(best_j)
        tp.append(int(best_j is not None))
      per_class[ti, c] = 100 * _oracle_ap(tp, npos)
    maps.append(np.mean(per_class[ti, classes]))
  return np.array(maps), per_class, len(keep)


def _random_case(rng, *, videos=4, classes=3, num_gt=14, num_pred=40, integer=False):
  """Scores drawn from a few values (ties); GT in 0.1 s steps; predictions near the GT (some
  start before 0)."""
  gv = rng.integers(0, videos, num_gt)
  gl = rng.integers(0, classes - 1, num_gt)  # the last class has no GT
  gs = np.round(rng.uniform(0, 30, num_gt), 1)
  ge = np.round(gs + rng.uniform(0.3, 8, num_gt), 1)
  gt = _gt(gv, gl, np.stack([gs, ge], -1))
  base = rng.integers(0, num_gt, num_pred)
  ps = gs[base] * F + rng.normal(0, 2, num_pred)
  pe = ge[base] * F + rng.normal(0, 2, num_pred)
  lo, hi = np.minimum(ps, pe), np.maximum(ps, pe)
  if integer:
    lo, hi = np.round(lo), np.round(hi)
  pv = np.where(rng.random(num_pred) < 0.85, gv[base], rng.integers(0, videos, num_pred))
  pl = np.where(rng.random(num_pred) < 0.8, gl[base], rng.integers(0, classes, num_pred))
  score = rng.choice([0.2, 0.5, 0.7, 0.9], num_pred)
  return _det(pv, pl, score, np.stack([lo, hi], -1)), gt


# ----------------------------------------------------------------------------- hand cases


@pytest.mark.parametrize("protocol", ["wtalc", "activitynet"])
def test_perfect_predictions_score_100(protocol):
  # Snippet-aligned GT: 1.28 s * 25/16 = 2 snippets exactly.
  gt = _gt([0, 0, 1], [0, 1, 1], [[1.28, 3.2], [6.4, 9.6], [0.0, 0.64]])
  pred = _det([0, 0, 1], [0, 1, 1], [0.3, 0.2, 0.9], [[2, 5], [10, 15], [0, 1]])
  m = ev.detection_map(pred, gt, num_classes=2, protocol=protocol)
  assert np.all(_maps(m, protocol) == 100.0)
  assert all(v == 100.0 for k, v in m.items() if ":" in k)


@pytest.mark.parametrize("protocol", ["wtalc", "activitynet"])
def test_one_false_positive_and_duplicates(protocol):
  gt = _gt([0, 0], [0, 0], [[0.0, 6.4], [12.8, 19.2]])  # snippets [0, 10), [20, 30)
  # TP (0.9), FP elsewhere (0.8), TP (0.7): precisions 1, 1/2, 2/3 at recalls 1/2, 1/2, 1.
  pred = _det([0, 0, 0], [0, 0, 0], [0.9, 0.8, 0.7], [[0, 10], [40, 50], [20, 30]])
  m = ev.detection_map(pred, gt, num_classes=1, protocol=protocol, tiou_thresholds=[0.5])
  np.testing.assert_allclose(m[f"{protocol}/mAP@0.5"], 100 * (0.5 + 0.5 * 2 / 3), rtol=1e-12)
  # FP ranked first: 0, 1/2, 2/3 -> envelope 2/3 over both recall steps.
  pred["score"] = np.array([0.8, 0.9, 0.7])
  m = ev.detection_map(pred, gt, num_classes=1, protocol=protocol, tiou_thresholds=[0.5])
  np.testing.assert_allclose(m[f"{protocol}/mAP@0.5"], 100 * 2 / 3, rtol=1e-12)
  # A duplicate of the first TP is a false positive: TP, FP(dup), TP -> 5/6 again.
  pred = _det([0, 0, 0], [0, 0, 0], [0.9, 0.8, 0.7], [[0, 10], [0, 10], [20, 30]])
  m = ev.detection_map(pred, gt, num_classes=1, protocol=protocol, tiou_thresholds=[0.5])
  np.testing.assert_allclose(m[f"{protocol}/mAP@0.5"], 100 * 5 / 6, rtol=1e-12)


@pytest.mark.parametrize("protocol", ["wtalc", "activitynet"])
def test_class_without_predictions_is_ap_zero_and_class_without_gt_is_excluded(protocol):
  gt = _gt([0, 1], [0, 1], [[0.0, 6.4], [0.0, 6.4]])
  pred = _det([0, 0], [0, 2], [0.9, 0.99], [[0, 10], [0, 10]])  # nothing for class 1; class 2 no GT
  m = ev.detection_map(pred, gt, num_classes=3, protocol=protocol)
  assert np.all(_maps(m, protocol) == 50.0)
  np.testing.assert_array_equal(m[f"{protocol}/class_has_gt"], [True, True, False])
  assert np.all(m[f"{protocol}/per_class_ap"][:, 0] == 100)
  assert np.all(m[f"{protocol}/per_class_ap"][:, 1:] == 0)


def test_wtalc_discretization_and_threshold_boundary():
  # GT [1.0, 2.0) s -> round(1.5625) = 2, round(3.125) = 3 -> {2}; prediction [1.9, 3.2) -> {1, 2}.
  gt = _gt([0], [0], [[1.0, 2.0]])
  pred = _det([0], [0], [1.0], [[1.9, 3.2]])
  m = ev.detection_map(pred, gt, num_classes=1, protocol="wtalc", tiou_thresholds=[0.5, 0.6])
  assert m["wtalc/mAP@0.5"] == 100.0 and m["wtalc/mAP@0.6"] == 0.0  # tIoU 1/2 exactly: >= counts
  # ActivityNet: [1.216, 2.048] s vs [1, 2] s: tIoU 0.784 / 1.048.
  m = ev.detection_map(pred, gt, num_classes=1, protocol="activitynet",
                       tiou_thresholds=[0.74, 0.75])
  assert m["activitynet/mAP@0.74"] == 100.0 and m["activitynet/mAP@0.75"] == 0.0
  # W-TALC's 0.7 threshold with a 7/10 overlap matches (float64 7/10 == 0.7).
  gt = _gt([0], [0], [[0.0, 6.4]])  # {0..9}
  pred = _det([0], [0], [1.0], [[3, 10]])  # {3..9}
  assert ev.detection_map(pred, gt, num_classes=1)["wtalc/mAP@0.7"] == 100.0


def test_best_iou_gt_is_taken_and_ties_go_to_the_first_gt():
  gt = _gt([0, 0], [0, 0], [[0.0, 6.4], [3.2, 9.6]])  # [0, 10), [5, 15)
  # First prediction overlaps the second GT more: it must take GT 1, leaving GT 0 for the next.
  pred = _det([0, 0], [0, 0], [0.9, 0.8], [[4, 14], [0, 9]])
  m = ev.detection_map(pred, gt, num_classes=1, tiou_thresholds=[0.5])
  assert m["wtalc/mAP@0.5"] == 100.0
  # A tie (prediction [0, 15) has tIoU 2/3 with both): GT 0 taken, the next needs GT 1.
  pred = _det([0, 0], [0, 0], [0.9, 0.8], [[0, 15], [5, 15]])
  m = ev.detection_map(pred, gt, num_classes=1, tiou_thresholds=[0.5])
  assert m["wtalc/mAP@0.5"] == 100.0
  pred = _det([0, 0], [0, 0], [0.9, 0.8], [[0, 15], [0, 10]])
  m = ev.detection_map(pred, gt, num_classes=1, tiou_thresholds=[0.5])
  assert m["wtalc/mAP@0.5"] == 50.0  # second is a duplicate of the tie winner


def test_equal_scores_keep_input_order():
  gt = _gt([0], [0], [[0.0, 6.4]])
  fp_first = _det([0, 0], [0, 0], [0.5, 0.5], [[30, 40], [0, 10]])
  tp_first = _det([0, 0], [0, 0], [0.5, 0.5], [[0, 10], [30, 40]])
  kw = dict(num_classes=1, tiou_thresholds=[0.5])
  assert ev.detection_map(fp_first, gt, **kw)["wtalc/mAP@0.5"] == 50.0
  assert ev.detection_map(tp_first, gt, **kw)["wtalc/mAP@0.5"] == 100.0


def test_ambiguous_filter():
  gt = _gt([0, 1], [0, 1], [[0.0, 6.4], [0.0, 6.4]])
  amb = {"video": np.array([0]), "segment": np.array([[12.8, 19.2]])}  # video 0, snippets [20, 30)
  pred = _det([0, 0, 0, 1, 0], [0, 0, 1, 1, 0], [0.9, 0.95, 0.8, 0.7, 0.6],
              [[0, 10],     # TP, kept
               [25, 28],    # FP inside the ambiguous interval: dropped
               [29.5, 35],  # other class, shares snippet 29: dropped (class-agnostic)
               [20, 30],    # same place but another video: kept
               [30, 40]])   # touches the interval's end: kept
  m = ev.detection_map(pred, gt, num_classes=2, ambiguous=amb, tiou_thresholds=[0.5])
  assert m["wtalc/num_ambiguous_dropped"] == 2 and m["wtalc/num_predictions"] == 3
  np.testing.assert_allclose(m["wtalc/per_class_ap"][0], [100.0, 0.0])
  without = ev.detection_map(pred, gt, num_classes=2, tiou_thresholds=[0.5])
  np.testing.assert_allclose(without["wtalc/per_class_ap"][0], [50.0, 0.0])
  assert "wtalc/num_ambiguous_dropped" not in without
  # ActivityNet compares in continuous seconds: [29.5, 35) snippets = [18.88, 22.4) s overlaps.
  m = ev.detection_map(pred, gt, num_classes=2, ambiguous=amb, protocol="activitynet",
                       tiou_thresholds=[0.5])
  assert m["activitynet/num_ambiguous_dropped"] == 2


# ----------------------------------------------------------------------------- oracle checks


@pytest.mark.parametrize("protocol", ["wtalc", "activitynet"])
@pytest.mark.parametrize("seed", range(6))
def test_matches_bruteforce_oracle(protocol, seed):
  rng = np.random.default_rng(seed)
  pred, gt = _random_case(rng, integer=seed % 2 == 0)
  amb = None
  if seed >= 3:
    amb = {"video": rng.integers(0, 4, 3),
           "segment": np.array([[5.0, 8.0], [20.0, 21.3], [0.0, 1.5]])}
  thresholds = matching.DEFAULT_TIOU_THRESHOLDS[protocol]
  m = ev.detection_map(pred, gt, num_classes=3, protocol=protocol, ambiguous=amb)
  maps, per_class, kept = oracle_map(pred, gt, num_classes=3, thresholds=thresholds,
                                     protocol=protocol, ambiguous=amb)
  np.testing.assert_allclose(_maps(m, protocol), maps, rtol=1e-12, atol=1e-12)
  np.testing.assert_allclose(m[f"{protocol}/per_class_ap"], per_class, rtol=1e-12, atol=1e-12)
  assert m[f"{protocol}/num_predictions"] == kept
  assert 0 < maps.max() < 100  # the case is not trivial


def test_oracle_on_many_duplicates_and_long_groups():
  # One (video, class) group with many predictions exercises many matching rounds.
  rng = np.random.default_rng(11)
  pred, gt = _random_case(rng, videos=1, classes=2, num_gt=12, num_pred=120)
  m = ev.detection_map(pred, gt, num_classes=2)
  maps, _, _ = oracle_map(pred, gt, num_classes=2, protocol="wtalc",
                          thresholds=matching.DEFAULT_TIOU_THRESHOLDS["wtalc"])
  np.testing.assert_allclose(_maps(m, "wtalc"), maps, rtol=1e-12)


def test_no_predictions_at_all_and_predictions_on_videos_without_gt():
  gt = _gt([0], [0], [[0.0, 6.4]])
  empty = _det([], [], [], np.zeros((0, 2)))
  m = ev.detection_map(empty, gt, num_classes=1)
  assert np.all(_maps(m, "wtalc") == 0.0)
  m = ev.detection_map(_det([5], [0], [1.0], [[0, 10]]), gt, num_classes=1)
  assert np.all(_maps(m, "wtalc") == 0.0)


# ----------------------------------------------------------------------------- protocol cross-check


def test_protocols_agree_exactly_on_snippet_aligned_segments():
  """With 1 snippet = 1 s, integer GT and integer predictions, the integer-set tIoU equals the
  continuous one, so the two protocols agree to the last bit."""
  rng = np.random.default_rng(3)
  pred, gt = _random_case(rng, num_pred=60, integer=True)
  gt["segment"] = np.round(gt["segment"] * F)
  thr = np.arange(1, 20) / 20
  kw = dict(num_classes=3, tiou_thresholds=thr, fps=16.0, frames_per_snippet=16.0)
  wt = ev.detection_map(pred, gt, protocol="wtalc", **kw)
  an = ev.detection_map(pred, gt, protocol="activitynet", **kw)
  np.testing.assert_array_equal(wt["wtalc/per_class_ap"], an["activitynet/per_class_ap"])


def test_protocol_gap_is_exactly_the_rounding():
  """W-TALC == ActivityNet run on int(prediction) (truncated toward zero) and round(GT * f); so
  on fractional predictions the gap is only the discretization."""
  rng = np.random.default_rng(4)
  pred, gt = _random_case(rng, num_pred=60)
  seg = pred["segment"]
  seg[:15] -= seg[:15, :1] + rng.uniform(0, 3, (15, 1))  # starts in (-3, 0): int(), not floor
  kw = dict(num_classes=3, tiou_thresholds=np.arange(1, 20) / 20, fps=16.0, frames_per_snippet=16.0)
  wt = ev.detection_map(pred, gt, protocol="wtalc", **kw)
  an_raw = ev.detection_map(pred, gt, protocol="activitynet", **kw)
  snapped_pred = dict(pred, segment=np.trunc(pred["segment"]))
  snapped_gt = dict(gt, segment=np.round(gt["segment"]))
  an = ev.detection_map(snapped_pred, snapped_gt, protocol="activitynet", **kw)
  np.testing.assert_array_equal(wt["wtalc/per_class_ap"], an["activitynet/per_class_ap"])
  assert not np.array_equal(wt["wtalc/per_class_ap"], an_raw["activitynet/per_class_ap"])


def test_protocol_gap_on_real_thumos_ground_truth(shared_data):
  """The THUMOS14 test GT used as predictions, in fractional snippets (GT seconds * 25/16).

  ActivityNet gives 100 at every tIoU. W-TALC compares int(prediction) with round(GT): short
  actions shift by a snippet, and 80 of the 3358 GT (mostly 1-2 snippets long) are not matched
  even at tIoU 0.1, so the same "perfect" predictions lose 4.0 / 9.1 / 39.8 points at
  0.1 / 0.5 / 0.7. Predictions snapped to the GT rounding give 100, except for the 17 GT shorter
  than one rounded snippet (empty snippet set: no prediction can match them under W-TALC).
  """
  path = shared_data / "thumos14" / "json" / "th14_groundtruth.json"
  if not path.is_file():
    pytest.skip(f"{path} not found")
  db = json.loads(path.read_text())["database"]
  names = sorted(v for v, d in db.items() if d["subset"] == "test")
  classes = sorted({a["label"] for v in names for a in db[v]["annotations"]})
  rows = [(i, classes.index(a["label"]), *a["segment"])
          for i, v in enumerate(names) for a in db[v]["annotations"]]
  table = np.array(rows, np.float64)
  gt = _gt(table[:, 0], table[:, 1], table[:, 2:])
  pred = _det(gt["video"], gt["label"], np.linspace(1, 0.1, len(table)), gt["segment"] * F)
  kw = dict(num_classes=len(classes), tiou_thresholds=matching.DEFAULT_TIOU_THRESHOLDS["wtalc"])
  an = ev.detection_map(pred, gt, protocol="activitynet", **kw)
  assert min(_maps(an, "activitynet")) == 100.0
  wt = ev.detection_map(pred, gt, protocol="wtalc", **kw)
  np.testing.assert_allclose(100.0 - _maps(wt, "wtalc"),
                             [3.96, 3.96, 3.96, 9.08, 9.08, 22.63, 39.80], atol=0.01)
  rounded = np.round(gt["segment"] * F)
  nonempty = rounded[:, 1] > rounded[:, 0]
  assert np.sum(~nonempty) == 17
  snapped = dict(pred, segment=rounded)
  assert max(_maps(ev.detection_map(snapped, gt, **kw), "wtalc")) < 100.0
  keep = lambda d: {k: v[nonempty] for k, v in d.items()}
  assert min(_maps(ev.detection_map(keep(snapped), keep(gt), **kw), "wtalc")) == 100.0


# ----------------------------------------------------------------------------- unclipped segments


def test_wtalc_truncates_negative_bounds_toward_zero():
  """The authors' prediction set is ``range(int(s), int(e))``: int() truncates toward zero."""
  gt = _gt([0], [0], [[0.0, 6.4]])  # snippets {0, ..., 9}
  kw = dict(num_classes=1, tiou_thresholds=[0.85, 0.9])
  # [-0.9, 9): int -> {0..8}: 9/10 (floor would give {-1..8}: 9/11 < 0.85).
  m = ev.detection_map(_det([0], [0], [1.0], [[-0.9, 9.0]]), gt, **kw)
  assert m["wtalc/mAP@0.85"] == 100.0 and m["wtalc/mAP@0.9"] == 100.0
  # [-1.5, 10): int -> {-1..9}: 10/11 = 0.909 (floor {-2..9}: 10/12 = 0.833).
  m = ev.detection_map(_det([0], [0], [1.0], [[-1.5, 10.0]]), gt, **kw)
  assert m["wtalc/mAP@0.85"] == 100.0 and m["wtalc/mAP@0.9"] == 100.0
  # Ends in (-1, 0) truncate to 0 as well; the whole-negative prediction never overlaps.
  m = ev.detection_map(_det([0], [0], [1.0], [[-3.7, -0.2]]), gt, num_classes=1,
                       tiou_thresholds=[0.01])
  assert m["wtalc/mAP@0.01"] == 0.0
  # Ends past the video are kept as they are: [0, 1e4) against 10 snippets.
  m = ev.detection_map(_det([0], [0], [1.0], [[0.0, 1e4]]), gt, num_classes=1,
                       tiou_thresholds=[1e-3, 2e-3])
  assert m["wtalc/mAP@0.001"] == 100.0 and m["wtalc/mAP@0.002"] == 0.0


def test_wtalc_gt_rounds_half_to_even():
  """``round(1.6 * 25/16)`` is ``round(2.5) = 2`` (Python and numpy), not 3."""
  assert 1.6 * F == 2.5 and round(1.6 * F) == 2
  gt = _gt([0], [0], [[1.6, 3.2]])  # 2.5 -> 2, 5.0 -> 5: {2, 3, 4}
  m = ev.detection_map(_det([0], [0], [1.0], [[2.0, 5.0]]), gt, num_classes=1,
                       tiou_thresholds=[1.0])
  assert m["wtalc/mAP@1"] == 100.0


def test_activitynet_negative_start_is_continuous():
  gt = _gt([0], [0], [[0.0, 6.4]])
  # [-1.5625, 10) snippets = [-1, 6.4) s: tIoU 6.4 / 7.4 = 0.865.
  pred = _det([0], [0], [1.0], [[-1.5625, 10.0]])
  m = ev.detection_map(pred, gt, num_classes=1, protocol="activitynet",
                       tiou_thresholds=[0.86, 0.87])
  assert m["activitynet/mAP@0.86"] == 100.0 and m["activitynet/mAP@0.87"] == 0.0


@pytest.mark.parametrize("protocol", ["wtalc", "activitynet"])
def test_empty_union_never_matches(protocol):
  """An empty prediction against an empty GT: tIoU 0 (the authors raise ZeroDivisionError, the
  official code gets NaN); both kept by the ambiguous filter."""
  # GT [1.0, 1.2) s: round(1.5625) = round(1.875) = 2, an empty W-TALC set.
  gt = _gt([0, 0], [0, 0], [[1.0, 1.2], [20.0, 26.4]])
  empty = [[-0.5, 0.7], [0.75, 0.75]] if protocol == "wtalc" else [[1.6, 1.6], [1.6, 1.6]]
  if protocol == "activitynet":
    gt["segment"][0] = [1.024, 1.024]  # zero length; 1.6 snippets = 1.024 s
  pred = _det([0, 0, 0], [0, 0, 0], [0.9, 0.8, 0.1], empty + [[31.25, 41.25]])
  m = ev.detection_map(pred, gt, num_classes=1, protocol=protocol, tiou_thresholds=[0.5],
                       ambiguous={"video": [0], "segment": [[1.0, 1.2]]})
  assert m[f"{protocol}/num_ambiguous_dropped"] == 0
  # FP, FP, TP: precision 1/3 at recall 1/2.
  np.testing.assert_allclose(m[f"{protocol}/mAP@0.5"], 100 / 6, rtol=1e-12)
  maps, _, _ = oracle_map(pred, gt, num_classes=1, thresholds=[0.5], protocol=protocol)
  np.testing.assert_allclose(maps, [100 / 6], rtol=1e-12)
  if protocol == "activitynet":  # the official NaN passes `tiou < thr`: TP, FP, TP there
    np.testing.assert_allclose(anet_reference_maps(pred, gt, [0.5])[0], [100 * 5 / 6])


def test_ambiguous_filter_with_negative_starts():
  gt = _gt([0], [0], [[10.0, 16.4]])
  amb = {"video": np.array([0]), "segment": np.array([[0.0, 1.4]])}  # snippets {0, 1}
  pred = _det([0, 0, 0, 0], [0, 0, 0, 0], [0.9, 0.8, 0.7, 0.6],
              [[-0.5, 0.9],    # int -> empty set: kept
               [-0.9, 1.5],    # int -> {0}: dropped
               [-2.5, -0.1],   # int -> {-2, -1}: kept
               [1.9, 2.0]])    # int -> {1}: dropped
  m = ev.detection_map(pred, gt, num_classes=1, ambiguous=amb)
  assert m["wtalc/num_ambiguous_dropped"] == 2 and m["wtalc/num_predictions"] == 2
  # Continuous seconds: [-0.32, 0.576), [-0.576, 0.96), [1.216, 1.28) overlap [0, 1.4).
  m = ev.detection_map(pred, gt, num_classes=1, ambiguous=amb, protocol="activitynet")
  assert m["activitynet/num_ambiguous_dropped"] == 3


# ----------------------------------------------------------------------------- reference ports

# Plain numpy ports of the two reference evaluators, written from reading their code and kept
# close to it (lists, sets, loops, the same sorts). One change, the documented decision of
# gaufuse_jax.evaluation: an empty union has tIoU 0 where the authors divide by zero.


def _set_iou(a: set, b: set) -> float:
  union = len(a | b)
  return len(a & b) / union if union else 0.0  # authors: ZeroDivisionError


def wtalc_filter_segments(segment_predict, videonames, ambilist, factor, to_int=int):
  """The authors' ``filter_segments``: drops the rows ``[video, start, end, score]`` (snippets)
  whose set ``range(int(s), int(e))`` meets an ambiguous interval of the video
  (``ambilist`` rows ``[name, '', start_s, end_s]``, GT rounding)."""
  ind = np.zeros(len(segment_predict))
  for i in range(len(segment_predict)):
    vn = videonames[int(segment_predict[i, 0])]
    for a in ambilist:
      if a[0] == vn:
        gt = set(range(int(round(float(a[2]) * factor)), int(round(float(a[3]) * factor))))
        pd = set(range(to_int(segment_predict[i][1]), to_int(segment_predict[i][2])))
        if _set_iou(gt, pd) > 0:
          ind[i] = 1
  return np.array([segment_predict[i] for i in range(len(segment_predict)) if ind[i] == 0])


def wtalc_ap_from_pr(prec, rec):
  """The authors' ``_ap_from_pr`` (VOC all-points AP)."""
  mprec = np.hstack([[0], prec, [0]])
  mrec = np.hstack([[0], rec, [1]])
  for i in range(len(mprec) - 1)[::-1]:
    mprec[i] = max(mprec[i], mprec[i + 1])
  idx = np.where(mrec[1::] != mrec[0:-1])[0] + 1
  return np.sum((mrec[idx] - mrec[idx - 1]) * mprec[idx])


def wtalc_get_loc_map(seg_preds, th, gtsegments, gtlabels, classlist, factor, to_int=int):
  """The authors' ``getLocMAP`` (after its test-subset selection): ``seg_preds[c]`` rows
  ``[video, start, end, score]`` of class c; the mAP in percent. (The authors index
  ``seg_preds`` by position in the list of GT classes, which is the class id on THUMOS14.)"""
  templabelidx = [classlist.index(t) for t in sorted({l for gtl in gtlabels for l in gtl})]
  ap = []
  for c in templabelidx:
    segment_predict = seg_preds[c]
    if len(segment_predict) == 0:
      return 0
    segment_predict = segment_predict[np.argsort(-segment_predict[:, 3])].tolist()
    segment_gt = [[i, gtsegments[i][j][0], gtsegments[i][j][1]] for i in range(len(gtsegments))
                  for j in range(len(gtsegments[i])) if classlist.index(gtlabels[i][j]) == c]
    gtpos = len(segment_gt)
    tp, fp = [], []
    for i in range(len(segment_predict)):
      matched, best_iou, best_j = False, 0, None
      for j in range(len(segment_gt)):
        if segment_predict[i][0] == segment_gt[j][0]:
          gt = set(range(int(round(segment_gt[j][1] * factor)),
                         int(round(segment_gt[j][2] * factor))))
          p = set(range(to_int(segment_predict[i][1]), to_int(segment_predict[i][2])))
          iou = _set_iou(gt, p)
          if iou >= th:
            matched = True
            if iou > best_iou:
              best_iou, best_j = iou, j
      if matched:
        del segment_gt[best_j]
      tp.append(float(matched))
      fp.append(1. - float(matched))
    tp_c, fp_c = np.cumsum(tp), np.cumsum(fp)
    ap.append(0. if sum(tp) == 0 else wtalc_ap_from_pr(tp_c / (fp_c + tp_c), tp_c / gtpos))
  return 100 * np.mean(ap)


def wtalc_reference_maps(det, data, thresholds, to_int=int):
  """``getActLoc``'s per-class sort and ``filter_segments``, then ``getLocMAP`` per tIoU.

  Returns the mAPs (percent) and the number of predictions kept by the filter."""
  rows = np.concatenate([det["video"][:, None], det["segment"], det["score"][:, None]], 1)
  seg_preds = {}
  for c in range(len(data["classlist"])):
    c_temp = rows[det["label"] == c]
    c_temp = c_temp[np.argsort(-c_temp[:, 3])]
    seg_preds[c] = wtalc_filter_segments(c_temp, data["videonames"], data["ambilist"], F, to_int)
    assert len(seg_preds[c]), "getLocMAP would return 0 for the whole mAP"
  maps = [wtalc_get_loc_map(seg_preds, th, data["gtsegments"], data["gtlabels"],
                            data["classlist"], F, to_int) for th in thresholds]
  return np.array(maps), sum(len(v) for v in seg_preds.values())


def anet_segment_iou(target_segment, candidate_segments):
  """The official ``segment_iou`` (NaN for an empty union, as there)."""
  tt1 = np.maximum(target_segment[0], candidate_segments[:, 0])
  tt2 = np.minimum(target_segment[1], candidate_segments[:, 1])
  segments_intersection = (tt2 - tt1).clip(0)
  segments_union = ((candidate_segments[:, 1] - candidate_segments[:, 0])
                    + (target_segment[1] - target_segment[0]) - segments_intersection)
  with np.errstate(invalid="ignore"):
    return segments_intersection.astype(float) / segments_union


# The official ``interpolated_prec_rec`` is line for line the authors' ``_ap_from_pr``.
anet_interpolated_prec_rec = wtalc_ap_from_pr


def anet_compute_average_precision_detection(gt_video, gt_segment, pred_video, pred_segment,
                                             pred_score, tiou_thresholds):
  """The official ``compute_average_precision_detection`` for one class, the DataFrames replaced
  by arrays (GT in file order; segments in seconds)."""
  ap = np.zeros(len(tiou_thresholds))
  if len(pred_score) == 0:
    return ap
  npos = float(len(gt_video))
  lock_gt = np.ones((len(tiou_thresholds), len(gt_video))) * -1
  sort_idx = pred_score.argsort()[::-1]
  pred_video, pred_segment = pred_video[sort_idx], pred_segment[sort_idx]
  tp = np.zeros((len(tiou_thresholds), len(sort_idx)))
  fp = np.zeros((len(tiou_thresholds), len(sort_idx)))
  for idx in range(len(sort_idx)):
    this_gt = np.flatnonzero(gt_video == pred_video[idx])  # groupby('video-id').get_group
    if not this_gt.size:
      fp[:, idx] = 1
      continue
    tiou_arr = anet_segment_iou(pred_segment[idx], gt_segment[this_gt])
    tiou_sorted_idx = tiou_arr.argsort()[::-1]
    for tidx, tiou_thr in enumerate(tiou_thresholds):
      for jdx in tiou_sorted_idx:
        if tiou_arr[jdx] < tiou_thr:
          fp[tidx, idx] = 1
          break
        if lock_gt[tidx, this_gt[jdx]] >= 0:
          continue
        tp[tidx, idx] = 1
        lock_gt[tidx, this_gt[jdx]] = idx
        break
      if fp[tidx, idx] == 0 and tp[tidx, idx] == 0:
        fp[tidx, idx] = 1
  tp_cumsum = np.cumsum(tp, axis=1).astype(float)
  fp_cumsum = np.cumsum(fp, axis=1).astype(float)
  recall_cumsum = tp_cumsum / npos
  precision_cumsum = tp_cumsum / (tp_cumsum + fp_cumsum)
  for tidx in range(len(tiou_thresholds)):
    ap[tidx] = anet_interpolated_prec_rec(precision_cumsum[tidx, :], recall_cumsum[tidx, :])
  return ap


def anet_reference_maps(det, gt, thresholds, seconds_per_snippet=16 / 25):
  """``ANETdetection.evaluate``: per-class AP over the GT's classes, mAP = mean (percent).

  Returns the mAPs ``[n_thr]``, the per-class APs ``[n_thr, n_cls]`` (percent) and the class ids."""
  classes = np.unique(gt["label"])
  ap = np.zeros((len(thresholds), len(classes)))
  for k, c in enumerate(classes):
    g, p = gt["label"] == c, det["label"] == c
    ap[:, k] = anet_compute_average_precision_detection(
        gt["video"][g], gt["segment"][g], det["video"][p],
        det["segment"][p] * seconds_per_snippet, det["score"][p], thresholds)
  return 100 * ap.mean(axis=1), 100 * ap, classes


# ----------------------------------------------------------------------------- real THUMOS14


def load_thumos_test(folder: pathlib.Path):
  """The THUMOS14 test videos with segments, as ``getLocMAP`` selects them from the W-TALC files.

  Returns ``(data, ground_truth, ambiguous)``: ``data`` the authors' lists (videonames,
  gtsegments, gtlabels, classlist, duration, ambilist), the other two ``detection_map`` dicts."""
  load = lambda name: np.load(folder / name, allow_pickle=True)
  subset, segments = load("subset.npy"), load("segments.npy")
  keep = [i for i, s in enumerate(subset) if s.decode() == "test" and len(segments[i])]
  data = {
      "videonames": [load("videoname.npy")[i].decode() for i in keep],
      "gtsegments": [list(segments[i]) for i in keep],
      "gtlabels": [list(load("labels.npy")[i]) for i in keep],
      "classlist": [c.decode() for c in load("classlist.npy")],
      "duration": np.array([float(np.ravel(load("duration.npy")[i])[0]) for i in keep]),
      "ambilist": [a.strip("\n").split(" ") for a in open(folder / "Ambiguous_test.txt")],
  }
  rows = [(i, data["classlist"].index(l), s, e) for i, (segs, labs)
          in enumerate(zip(data["gtsegments"], data["gtlabels"])) for (s, e), l in zip(segs, labs)]
  table = np.array(rows, np.float64)
  gt = _gt(table[:, 0], table[:, 1], table[:, 2:])
  index = {n: i for i, n in enumerate(data["videonames"])}
  amb = [(index[a[0]], float(a[2]), float(a[3])) for a in data["ambilist"] if a[0] in index]
  ambiguous = {"video": np.array([a[0] for a in amb]), "segment": np.array([a[1:] for a in amb])}
  return data, gt, ambiguous


@pytest.fixture(scope="module")
def thumos(shared_data):
  folder = shared_data / "thumos14" / "Thumos14reduced-Annotations"
  if not folder.is_dir():
    pytest.skip(f"{folder} not found")
  return load_thumos_test(folder)


def _thumos_predictions(rng, data, gt, ambiguous, *, jittered=80):
  """Random predictions (fractional snippets, continuous scores) over the real GT.

  Per class: ``jittered`` GT jittered tightly or loosely; starts in (-1, 0) and < -1 on the GT
  that begin in the first 3 snippets; ends past the video; wholly negative and zero-straddling
  ones; copies of ambiguous intervals; random false positives (some of zero length). Plus fixed
  cases on the ambiguous interval [0.0, 1.4] s of video_test_0000278."""
  num_videos, num_classes = len(data["videonames"]), len(data["classlist"])
  length_of_video = data["duration"] * F
  seg = gt["segment"] * F
  near_start = np.flatnonzero(seg[:, 0] < 3)
  parts = []  # (video, label, start, end)

  def add(video, label, start, end):
    start, end = np.asarray(start, float), np.asarray(end, float)
    parts.append(np.stack(np.broadcast_arrays(video, label, np.minimum(start, end),
                                              np.maximum(start, end)), -1).astype(float))

  for c in range(num_classes):
    idx = np.flatnonzero(gt["label"] == c)
    n = jittered
    g = rng.choice(idx, n)
    mid, half = seg[g].mean(1), np.diff(seg[g], axis=1)[:, 0] / 2
    sigma = rng.choice([0.02, 0.1, 0.3], n)
    mid = mid + rng.normal(0, 1, n) * sigma * 2 * half
    half = half * np.exp(rng.normal(0, 1, n) * sigma)
    add(gt["video"][g], c, mid - half, mid + half)
    pool = np.intersect1d(idx, near_start)
    g = rng.choice(pool if pool.size else near_start, 4)
    add(gt["video"][g], c, -np.r_[rng.uniform(0, 1, 2), rng.uniform(1, 4, 2)],
        seg[g, 1] + rng.normal(0, 0.5, 4))
    g = rng.choice(pool if pool.size else near_start, 2)
    add(gt["video"][g], c, [-1 - rng.uniform(0, 3), -rng.uniform(0, 1)],
        [-rng.uniform(0, 1), rng.uniform(0, 1)])
    g = rng.choice(idx, 2)
    v = gt["video"][g]
    add(v, c, seg[g, 0] + rng.normal(0, 0.5, 2),
        np.maximum(seg[g, 1], length_of_video[v]) + rng.uniform(0.1, 5, 2))
    v = rng.integers(0, num_videos, 2)
    add(v, c, length_of_video[v] - rng.uniform(0, 15, 2), length_of_video[v] + rng.uniform(0, 9, 2))
    a = rng.integers(0, len(ambiguous["video"]), 2)
    add(ambiguous["video"][a], c, ambiguous["segment"][a, 0] * F + rng.normal(0, 1, 2),
        ambiguous["segment"][a, 1] * F + rng.normal(0, 1, 2))
    v = rng.integers(0, num_videos, 4)
    start = rng.uniform(-5, length_of_video[v])
    add(v, c, start, start + np.r_[0.0, rng.uniform(0, 40, 3)])
  v = data["videonames"].index("video_test_0000278")
  add(v, rng.integers(0, num_classes, 4), [-0.5, -0.9, -2.5, -0.3], [0.9, 1.5, -0.1, 2.1])
  rows = np.concatenate(parts)[rng.permutation(sum(len(p) for p in parts))]
  return _det(rows[:, 0], rows[:, 1], rng.random(len(rows)), rows[:, 2:])


@pytest.mark.parametrize("seed", [0, 1])
def test_wtalc_equals_authors_getlocmap_on_real_thumos(thumos, seed):
  """``detection_map(protocol="wtalc", ambiguous=...)`` == the authors' ``filter_segments`` +
  ``getLocMAP`` (ported above) on the 212 THUMOS14 test videos, with unclipped predictions."""
  data, gt, ambiguous = thumos
  det = _thumos_predictions(np.random.default_rng(seed), data, gt, ambiguous)
  start, end = det["segment"].T
  assert np.any((start > -1) & (start < 0)) and np.any(start < -1)
  assert np.any(end > data["duration"][det["video"]] * F)
  thresholds = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]  # the authors' getDetectionMAP iou_list
  m = ev.detection_map(det, gt, num_classes=len(data["classlist"]), ambiguous=ambiguous,
                       tiou_thresholds=thresholds)
  want, kept = wtalc_reference_maps(det, data, thresholds)
  np.testing.assert_allclose(_maps(m, "wtalc"), want, rtol=0, atol=1e-3)
  assert m["wtalc/num_predictions"] == kept and 0 < m["wtalc/num_ambiguous_dropped"]
  assert 5 < want.min() and want.max() < 95
  if seed == 0:  # the data tell int() from floor(): truncation matters here
    floor_maps, floor_kept = wtalc_reference_maps(det, data, thresholds, to_int=math.floor)
    # (The filter itself cannot tell them apart: they differ only in negative snippets.)
    assert floor_kept == kept and np.abs(floor_maps - want).max() > 0.1


@pytest.mark.parametrize("seed", [0, 1])
def test_activitynet_equals_official_evaluator_on_real_thumos(thumos, seed):
  """``detection_map(protocol="activitynet")`` == the official
  ``compute_average_precision_detection`` (ported above) on the THUMOS14 test GT, with
  unclipped predictions (negative starts, ends past the video, zero lengths)."""
  data, gt, ambiguous = thumos
  det = _thumos_predictions(np.random.default_rng(seed + 10), data, gt, ambiguous)
  assert np.any(det["segment"][:, 0] < -1) and np.any(np.diff(det["segment"], axis=1) == 0)
  thresholds = np.linspace(0.5, 0.95, 10)
  m = ev.detection_map(det, gt, num_classes=len(data["classlist"]), protocol="activitynet")
  want, per_class, classes = anet_reference_maps(det, gt, thresholds)
  np.testing.assert_allclose(_maps(m, "activitynet"), want, rtol=0, atol=1e-3)
  np.testing.assert_allclose(m["activitynet/per_class_ap"][:, classes], per_class, rtol=0,
                             atol=1e-3)
  assert want[0] > 10 and want[-1] < want[0]
  if seed == 0:  # clipping the starts at 0 would change the numbers
    clipped = dict(det, segment=np.maximum(det["segment"], 0))
    assert np.abs(anet_reference_maps(clipped, gt, thresholds)[0] - want).max() > 0.01


# ----------------------------------------------------------------------------- classification mAP


def _oracle_cmap(scores, labels):
  aps = []
  for c in range(scores.shape[1]):
    ranked = sorted(range(len(scores)), key=lambda v: -scores[v, c])
    hits, precs = 0, []
    for r, v in enumerate(ranked):
      if labels[v, c] == 1:
        hits += 1
        precs.append(hits / (r + 1))
    if precs:
      aps.append(sum(precs) / len(precs))
  return 100 * sum(aps) / len(aps)


def test_classification_map_hand_case_and_oracle():
  scores = np.array([[0.9, 0.2], [0.8, 0.7], [0.1, 0.3]])
  labels = np.array([[1, 0], [0, 1], [1, 0]])
  np.testing.assert_allclose(ev.classification_map(scores, labels), 100 * (5 / 6 + 1) / 2,
                             rtol=1e-12)
  rng = np.random.default_rng(0)
  for _ in range(5):
    scores = np.round(rng.random((30, 6)), 1)  # ties
    labels = (rng.random((30, 6)) < 0.3).astype(np.float32)
    labels[:, 5] = 0  # a class without positives is excluded
    np.testing.assert_allclose(ev.classification_map(scores, labels), _oracle_cmap(scores, labels),
                               rtol=1e-12)


def test_classification_map_errors():
  with pytest.raises(ValueError, match="same shape"):
    ev.classification_map(np.zeros((3, 2)), np.zeros((3, 3)))
  with pytest.raises(ValueError, match="NaN"):
    ev.classification_map(np.array([[np.nan, 0.0]]), np.array([[1, 0]]))
  with pytest.raises(ValueError, match="0/1"):
    ev.classification_map(np.zeros((2, 2)), np.full((2, 2), 2))
  with pytest.raises(ValueError, match="no class has a positive"):
    ev.classification_map(np.zeros((2, 2)), np.zeros((2, 2)))


# ----------------------------------------------------------------------------- validation


def test_detection_map_input_errors():
  gt = _gt([0], [0], [[0.0, 6.4]])
  good = _det([0], [0], [0.5], [[0, 10]])
  cases = [
      (dict(good, score=np.array([np.nan])), "NaN"),
      (dict(good, label=np.array([3])), r"class ids in \[0, 2\)"),
      (dict(good, video=np.array([0, 0])), "same length"),
      (dict(good, segment=np.array([[0.0, 1.0, 2.0]])), r"shape \[n, 2\]"),
      (dict(good, segment=np.array([[5.0, 1.0]])), r"expected start <= end, found \[5\. 1\.\]"),
      (dict(good, segment=np.array([[-5.0, -5.5]])), "start <= end"),
      (dict(good, segment=np.array([[0.0, np.inf]])), r"predictions\['segment'\]: NaN or inf"),
      (dict(good, segment=np.array([[-np.inf, 1.0]])), "NaN or inf"),
      (dict(good, segment=np.array([[np.nan, 1.0]])), "NaN or inf"),
      (dict(good, score=np.array([-np.inf])), r"predictions\['score'\]: NaN or inf"),
      (dict(good, label=np.array([-1])), r"class ids in \[0, 2\), found \[-1, -1\]"),
      (dict(good, video=np.array([-3])), r"predictions\['video'\]: negative video index -3"),
      (dict(good, label=np.array([0.0])), "integer"),
      ({k: v for k, v in good.items() if k != "score"}, "missing key 'score'"),
  ]
  for bad, match in cases:
    with pytest.raises(ValueError, match=match):
      ev.detection_map(bad, gt, num_classes=2)
  with pytest.raises(ValueError, match="protocol"):
    ev.detection_map(good, gt, num_classes=2, protocol="coco")
  with pytest.raises(ValueError, match="tiou_thresholds"):
    ev.detection_map(good, gt, num_classes=2, tiou_thresholds=[0.0, 0.5])
  with pytest.raises(ValueError, match="no segments"):
    ev.detection_map(good, _gt([], [], np.zeros((0, 2))), num_classes=2)
  with pytest.raises(ValueError, match=r"ground_truth\['segment'\]: expected start <= end"):
    ev.detection_map(good, _gt([0], [0], [[6.4, 0.0]]), num_classes=2)
  with pytest.raises(ValueError, match=r"ground_truth\['segment'\]: NaN or inf"):
    ev.detection_map(good, _gt([0], [0], [[0.0, np.nan]]), num_classes=2)
  for protocol in matching.PROTOCOLS:
    with pytest.raises(ValueError, match=r"ambiguous\['segment'\]: expected start <= end"):
      ev.detection_map(good, gt, num_classes=2, protocol=protocol,
                       ambiguous={"video": [0], "segment": [[2.0, 1.0]]})
    with pytest.raises(ValueError, match=r"ambiguous\['segment'\]: NaN or inf"):
      ev.detection_map(good, gt, num_classes=2, protocol=protocol,
                       ambiguous={"video": [0], "segment": [[np.inf, np.inf]]})
  with pytest.raises(ValueError, match="fps"):
    ev.detection_map(good, gt, num_classes=2, fps=0)


def test_detections_from_padded_with_jax_arrays():
  start = jnp.arange(12, dtype=jnp.float32).reshape(2, 3, 2)
  end = start + 2
  score = -start
  valid = jnp.array([[[True, False], [False, False], [True, True]],
                     [[False, False], [False, True], [False, False]]])
  det = ev.detections_from_padded(start, end, score, valid, video_index=np.array([7, 3]))
  np.testing.assert_array_equal(det["video"], [7, 7, 7, 3])
  np.testing.assert_array_equal(det["label"], [0, 2, 2, 1])
  np.testing.assert_array_equal(det["segment"], [[0, 2], [4, 6], [5, 7], [9, 11]])
  np.testing.assert_array_equal(det["score"], [0, -4, -5, -9])
  with pytest.raises(ValueError, match="one shape"):
    ev.detections_from_padded(start, end, score, valid[:, :, :1])
  bad = np.asarray(score).copy()
  bad[0, 0, 0] = np.nan
  with pytest.raises(ValueError, match="NaN"):
    ev.detections_from_padded(start, end, bad, valid)
  bad[0, 0, 0] = 1.0
  bad[0, 0, 1] = np.nan  # invalid entries may hold anything
  ev.detections_from_padded(start, end, bad, valid)
  # Fused / regressed segments may start before 0 and end past the video: kept as they are.
  det = ev.detections_from_padded(start - 3.5, end + 1e4, score, valid)
  np.testing.assert_array_equal(det["segment"][0], [-3.5, 2 + 1e4])
  with pytest.raises(ValueError, match="start <= end"):
    ev.detections_from_padded(end, start, score, valid)


# ----------------------------------------------------------------------------- outputs


def test_format_map_table_from_scalar_metrics():
  rng = np.random.default_rng(0)
  pred, gt = _random_case(rng)
  m = ev.detection_map(pred, gt, num_classes=3, ambiguous={"video": [0], "segment": [[0.0, 1.0]]})
  scalars = {k: v for k, v in m.items() if np.ndim(v) == 0}
  table = results.format_map_table(scalars, protocol="wtalc", dataset_name="THUMOS14 toy",
                                   cmap=91.234)
  lines = table.splitlines()
  assert "THUMOS14 toy" in lines[0] and "`wtalc`" in lines[0] and "ambiguous" in lines[0]
  assert lines[2] == ("| tIoU | 0.1 | 0.2 | 0.3 | 0.4 | 0.5 | 0.6 | 0.7 | avg 0.1:0.5 "
                      "| avg 0.3:0.7 | avg 0.1:0.7 | cmAP |")
  cells = lines[4].strip("|").split("|")
  assert cells[1].strip() == f"{m['wtalc/mAP@0.1']:.2f}"
  assert cells[10].strip() == f"{m['wtalc/mAP@0.1:0.7']:.2f}" and cells[11].strip() == "91.23"
  an = ev.detection_map(pred, gt, num_classes=3, protocol="activitynet")
  assert "avg 0.5:0.05:0.95" in results.format_map_table(an, protocol="activitynet",
                                                         dataset_name="x")
  with pytest.raises(ValueError, match="no 'activitynet/mAP@"):
    results.format_map_table(scalars, protocol="activitynet", dataset_name="x")


def test_results_json_round_trip():
  rng = np.random.default_rng(1)
  pred, gt = _random_case(rng)
  pred["score"] = rng.permutation(len(pred["score"])) / 10  # distinct: the file reorders them
  videos = [f"video_test_{i:07d}" for i in range(4)]
  classes = ["A", "B", "C"]
  obj = results.results_json(pred, videos, classes, fps=25.0, frames_per_snippet=16.0)
  obj = json.loads(json.dumps(obj))
  results.validate_results_json(obj, class_names=classes)
  assert obj["version"] == "VERSION 1.3" and set(obj["results"]) == set(videos)
  first = obj["results"][videos[pred["video"][0]]]
  assert [e["score"] for e in first] == sorted((e["score"] for e in first), reverse=True)
  back = results.detections_from_results_json(obj, videos, classes)
  assert len(back["score"]) == len(pred["score"])
  # Same detections (as a multiset), segments back in snippets.
  key = lambda d: np.lexsort((d["segment"][:, 0].round(6), d["score"], d["label"], d["video"]))
  a, b = key(pred), key(back)
  for k in ("video", "label", "score"):
    np.testing.assert_array_equal(pred[k][a], back[k][b])
  np.testing.assert_allclose(pred["segment"][a], back["segment"][b], rtol=1e-12, atol=1e-12)
  for protocol in ("wtalc", "activitynet"):
    # int() of round-tripped snippets may move by an ulp; evaluate on whole snippets.
    snap = lambda d: dict(d, segment=np.round(d["segment"], 6))
    m1 = ev.detection_map(snap(pred), gt, num_classes=3, protocol=protocol)
    m2 = ev.detection_map(snap(back), gt, num_classes=3, protocol=protocol)
    np.testing.assert_allclose(_maps(m1, protocol), _maps(m2, protocol), rtol=1e-12)


def test_validate_results_json_errors():
  good = {"version": "VERSION 1.3", "external_data": {"used": True, "details": "I3D"},
          "results": {"v1": [{"label": "A", "score": 0.5, "segment": [1.0, 2.0]}]}}
  results.validate_results_json(good)

  def entry(**kw):
    return dict(good, results={"v1": [dict(good["results"]["v1"][0], **kw)]})

  results.validate_results_json(entry(segment=[-1.0, 1.0]))  # any finite start <= end

  cases = [
      ({k: v for k, v in good.items() if k != "version"}, "missing keys"),
      (dict(good, external_data={"used": "yes"}), "external_data"),
      (dict(good, results=[]), r"\['results'\]: expected a dict"),
      (dict(good, results={"v1": {}}), r"'v1'\]: expected a list"),
      (entry(score=float("nan")), r"\['score'\]"),
      (entry(score=True), r"\['score'\]"),
      (entry(segment=[2.0, 1.0]), r"\['segment'\]"),
      (entry(segment=[1.0, float("inf")]), r"\['segment'\]"),
      (entry(segment=[1.0]), r"\['segment'\]"),
      (entry(label=3), r"\['label'\]"),
  ]
  for bad, match in cases:
    with pytest.raises(ValueError, match=match):
      results.validate_results_json(bad)
  with pytest.raises(ValueError, match="label"):
    results.validate_results_json(good, class_names=["B"])
  with pytest.raises(ValueError, match="not in video_names"):
    results.detections_from_results_json(good, ["v2"], ["A"])
  with pytest.raises(ValueError, match="out of range"):
    results.results_json(_det([4], [0], [1.0], [[0, 1]]), ["v1"], ["A"])
