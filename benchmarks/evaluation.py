"""Benchmark: vectorized ``detection_map`` vs a W-TALC-style per-class Python loop.

Both evaluate the same predictions on the real THUMOS14 test ground truth (212 videos, 3358
segments, the W-TALC ``Thumos14reduced-Annotations`` npy files) with the ambiguous-interval
filter: each GT becomes a jittered detection (fractional snippets, some dropped, some
duplicated) and random false positives are added. The baseline below is written the way
W-TALC's / GauFuse's ``detectionMAP.py`` does it (``filter_segments``, ``getLocMAP`` and
``_ap_from_pr``: Python lists and sets, one pass per tIoU threshold), with stable sorts so that
tied scores are ordered the same way. The mAPs must be bit-identical.

Run from the repository root (< 1 min on 2 CPU cores):

  python -m benchmarks.evaluation
      [--annotations=../shared/data/thumos14/Thumos14reduced-Annotations]
"""

from __future__ import annotations

import pathlib
import platform
import time

from absl import app
from absl import flags
import numpy as np

from gaufuse_jax._src import evaluation

_DEFAULT_ANNOTATIONS = (pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "thumos14"
                        / "Thumos14reduced-Annotations")
_ANNOTATIONS = flags.DEFINE_string("annotations", str(_DEFAULT_ANNOTATIONS),
                                   "W-TALC Thumos14reduced-Annotations folder.")
_FALSE_POSITIVES = flags.DEFINE_integer("false_positives", 4000, "Random false positives.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the synthetic predictions.")
_REPEATS = flags.DEFINE_integer("repeats", 5, "Timed repeats of the vectorized evaluator (best).")

IOU_LIST = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]
FACTOR = 25.0 / 16.0


# ----------------------------------------------------------------------------- W-TALC-style loop


def wtalc_filter_segments(segment_predict, videonames, ambilist, factor):
  ind = np.zeros(np.shape(segment_predict)[0])
  for i in range(np.shape(segment_predict)[0]):
    vn = videonames[int(segment_predict[i, 0])]
    for a in ambilist:
      if a[0] == vn:
        gt = range(int(round(float(a[2]) * factor)), int(round(float(a[3]) * factor)))
        pd = range(int(segment_predict[i][1]), int(segment_predict[i][2]))
        IoU = float(len(set(gt).intersection(set(pd)))) / float(len(set(gt).union(set(pd))))
        if IoU > 0:
          ind[i] = 1
  s = [segment_predict[i, :] for i in range(np.shape(segment_predict)[0]) if ind[i] == 0]
  return np.array(s)


def _ap_from_pr(prec, rec):
  mprec = np.hstack([[0], prec, [0]])
  mrec = np.hstack([[0], rec, [1]])
  for i in range(len(mprec) - 1)[::-1]:
    mprec[i] = max(mprec[i], mprec[i + 1])
  idx = np.where(mrec[1::] != mrec[0:-1])[0] + 1
  return np.sum((mrec[idx] - mrec[idx - 1]) * mprec[idx])


def wtalc_loc_map(seg_preds, th, gtsegments, gtlabels, classlist, factor):
  """``getLocMAP``: seg_preds[c] = array of rows [video, start, end, score] (snippets)."""
  templabelidx = sorted({classlist.index(l) for gtl in gtlabels for l in gtl})
  ap = []
  for c in templabelidx:
    segment_predict = seg_preds[c]
    segment_predict = segment_predict[np.argsort(-segment_predict[:, 3], kind="stable")]
    segment_gt = [[i, gtsegments[i][j][0], gtsegments[i][j][1]] for i in range(len(gtsegments))
                  for j in range(len(gtsegments[i])) if classlist.index(gtlabels[i][j]) == c]
    gtpos = len(segment_gt)
    tp, fp = [], []
    for i in range(len(segment_predict)):
      matched = False
      best_iou = 0
      for j in range(len(segment_gt)):
        if segment_predict[i][0] == segment_gt[j][0]:
          gt = range(int(round(segment_gt[j][1] * factor)), int(round(segment_gt[j][2] * factor)))
          p = range(int(segment_predict[i][1]), int(segment_predict[i][2]))
          IoU = float(len(set(gt).intersection(set(p)))) / float(len(set(gt).union(set(p))))
          if IoU >= th:
            matched = True
            if IoU > best_iou:
              best_iou = IoU
              best_j = j
      if matched:
        del segment_gt[best_j]
      tp.append(float(matched))
      fp.append(1. - float(matched))
    tp_c = np.cumsum(tp)
    fp_c = np.cumsum(fp)
    if sum(tp) == 0:
      prc = 0.
    else:
      prc = _ap_from_pr(tp_c / (fp_c + tp_c), tp_c / gtpos)
    ap.append(prc)
  return 100 * np.mean(ap)


def wtalc_detection_map(rows, videonames, gtsegments, gtlabels, classlist, ambilist):
  """Per class: W-TALC's sort + ``filter_segments`` (``getActLoc``), then ``getLocMAP`` per tIoU."""
  seg_preds = []
  for c in range(len(classlist)):
    c_temp = rows[rows[:, 4] == c][:, :4]
    c_temp = c_temp[np.argsort(-c_temp[:, 3], kind="stable")]
    seg_preds.append(wtalc_filter_segments(c_temp, videonames, ambilist, FACTOR).reshape(-1, 4))
  return [wtalc_loc_map(seg_preds, th, gtsegments, gtlabels, classlist, FACTOR) for th in IOU_LIST]


# ----------------------------------------------------------------------------- data


def load_test_split(folder: pathlib.Path):
  load = lambda name: np.load(folder / name, allow_pickle=True)
  subset = [s.decode() for s in load("subset.npy")]
  test = [i for i, s in enumerate(subset) if s == "test"]
  videonames = [load("videoname.npy")[i].decode() for i in test]
  gtsegments = [list(load("segments.npy")[i]) for i in test]
  gtlabels = [list(load("labels.npy")[i]) for i in test]
  classlist = [c.decode() for c in load("classlist.npy")]
  duration = np.asarray([float(np.ravel(load("duration.npy")[i])[0]) for i in test])
  ambilist = [a.strip("\n").split(" ") for a in open(folder / "Ambiguous_test.txt")]
  return videonames, gtsegments, gtlabels, classlist, duration, ambilist


def synthetic_predictions(gtsegments, gtlabels, classlist, duration, *, false_positives, seed):
  """Rows [video, start, end, score, class] in fractional snippets."""
  rng = np.random.default_rng(seed)
  gt = np.array([(i, s * FACTOR, e * FACTOR, classlist.index(l))
                 for i, (segs, labs) in enumerate(zip(gtsegments, gtlabels))
                 for (s, e), l in zip(segs, labs)])
  keep = gt[rng.random(len(gt)) < 0.9]
  keep = np.concatenate([keep, keep[rng.random(len(keep)) < 0.2]])  # duplicates
  length = keep[:, 2] - keep[:, 1]
  center = (keep[:, 1] + keep[:, 2]) / 2 + rng.normal(0, 0.15, len(keep)) * length
  # At least one snippet: W-TALC divides by zero when both snippet sets are empty.
  length = np.maximum(length * rng.uniform(0.6, 1.4, len(keep)), 1.0)
  tps = np.stack([keep[:, 0], np.maximum(center - length / 2, 0), center + length / 2,
                  rng.uniform(0.2, 1.0, len(keep)), keep[:, 3]], -1)
  video = rng.integers(0, len(duration), false_positives)
  start = rng.uniform(0, duration[video] * FACTOR)
  fps = np.stack([video, start, start + rng.uniform(1, 40, false_positives),
                  np.round(rng.uniform(0.0, 0.8, false_positives), 2),  # coarse: ties
                  rng.integers(0, len(classlist), false_positives)], -1)
  return np.concatenate([tps, fps])


def _best_time(fn, repeats):
  best, out = np.inf, None
  for _ in range(repeats):
    t0 = time.perf_counter()
    out = fn()
    best = min(best, time.perf_counter() - t0)
  return best, out


def main(argv):
  del argv
  folder = pathlib.Path(_ANNOTATIONS.value)
  videonames, gtsegments, gtlabels, classlist, duration, ambilist = load_test_split(folder)
  rows = synthetic_predictions(gtsegments, gtlabels, classlist, duration,
                               false_positives=_FALSE_POSITIVES.value, seed=_SEED.value)
  gt_rows = np.array([(i, classlist.index(l), s, e)
                      for i, (segs, labs) in enumerate(zip(gtsegments, gtlabels))
                      for (s, e), l in zip(segs, labs)])
  ground_truth = {"video": gt_rows[:, 0].astype(np.int64), "label": gt_rows[:, 1].astype(np.int64),
                  "segment": gt_rows[:, 2:]}
  predictions = {"video": rows[:, 0].astype(np.int64), "label": rows[:, 4].astype(np.int64),
                 "score": rows[:, 3], "segment": rows[:, 1:3]}
  index = {n: i for i, n in enumerate(videonames)}
  amb = [(index[a[0]], float(a[2]), float(a[3])) for a in ambilist if a[0] in index]
  ambiguous = {"video": np.array([a[0] for a in amb]), "segment": np.array([a[1:] for a in amb])}

  t_loop, loop_maps = _best_time(
      lambda: wtalc_detection_map(rows, videonames, gtsegments, gtlabels, classlist, ambilist), 1)
  t_vec, metrics = _best_time(
      lambda: evaluation.detection_map(predictions, ground_truth, num_classes=len(classlist),
                                       protocol="wtalc", ambiguous=ambiguous), _REPEATS.value)
  vec_maps = [metrics[f"wtalc/mAP@{t:g}"] for t in IOU_LIST]
  identical = all(a == b for a, b in zip(loop_maps, vec_maps))

  print(f"THUMOS14 test: {len(videonames)} videos, {len(gt_rows)} GT segments, {len(rows)} "
        f"predictions ({metrics['wtalc/num_ambiguous_dropped']} dropped by the ambiguous filter), "
        f"7 tIoU thresholds; {platform.processor() or platform.machine()}, numpy {np.__version__}")
  print()
  print("| tIoU | " + " | ".join(f"{t:g}" for t in IOU_LIST) + " | avg |")
  print("|:--|" + "--:|" * (len(IOU_LIST) + 1))
  for name, maps in (("W-TALC loop", loop_maps), ("detection_map", vec_maps)):
    print(f"| {name} | " + " | ".join(f"{m:.10f}" for m in maps) + f" | {np.mean(maps):.4f} |")
  print()
  print("| evaluator | seconds | ratio |")
  print("|:--|--:|--:|")
  print(f"| W-TALC per-class Python loop | {t_loop:.3f} | 1.0x |")
  print(f"| gaufuse_jax.evaluation.detection_map | {t_vec:.4f} | {t_loop / t_vec:.1f}x |")
  print()
  print(f"values identical: {identical}")
  if not identical:
    raise SystemExit("detection_map differs from the W-TALC loop")


if __name__ == "__main__":
  app.run(main)
