"""Tests of gaufuse_jax.viz: panel layout, the seconds time axis, bar / curve coordinates, colour
consistency, PNG output, input errors, mAP-vs-tIoU parsing, and precision-recall against a
pure-Python oracle of the evaluation protocol (module docstring of gaufuse_jax.evaluation)."""

import math

from matplotlib.collections import LineCollection
from matplotlib.colors import to_rgba
from matplotlib.patches import Rectangle, StepPatch
import numpy as np
import pytest

from gaufuse_jax._src import evaluation as ev
from gaufuse_jax._src import viz

T = 50
SPS = 0.64
NAMES = [f"action{i}" for i in range(5)] + ["background"]
CLASSES = [1, 3]


def _inputs(seed=0):
  rng = np.random.default_rng(seed)
  return dict(
      cas=rng.random((T, 6)),
      attention=rng.random(T),
      pseudo_labels=rng.random((T, 6)),
      delta_labels=rng.random((T, 6)) - 0.5,
      proposals={"segment": np.array([[2.0, 10.0], [4.0, 9.0], [30.0, 41.0]]),
                 "label": np.array([1, 1, 3]), "score": np.array([0.9, 0.4, 0.7])},
      detections={"segment": np.array([[2.5, 9.5], [30.0, 40.25], [12.0, 14.0]]),
                  "label": np.array([1, 3, 4]), "score": np.array([0.8, 0.6, 0.1]),
                  "video": np.zeros(3, np.int64)},  # extra key: ignored
      ground_truth={"segment": np.array([[1.6, 6.4], [20.0, 25.6]]), "label": np.array([1, 0])},
  )


def _plot(**overrides):
  kwargs = dict(_inputs(), class_names=NAMES, classes=CLASSES, title="video 0")
  kwargs.update(overrides)
  return viz.plot_video(**kwargs)


def _rectangles(ax, gid):
  return [p for p in ax.patches if isinstance(p, Rectangle) and p.get_gid() == gid]


# ----------------------------------------------------------------------------- plot_video


def test_all_panels_share_one_seconds_axis():
  fig = _plot()
  axes = fig.axes
  assert len(axes) == 6
  assert [a.get_ylabel() for a in axes[:-1]] == [
      "CAS", "attention", "LinPro\npseudo label", "Δ pseudo\nlabel", "proposal\nscore"]
  for ax in axes:
    assert ax.get_xlim() == pytest.approx((0.0, T * SPS))
    assert axes[0].get_shared_x_axes().joined(axes[0], ax)
  assert axes[-1].get_xlabel() == "time (s)"
  assert fig.get_suptitle() == "video 0"


@pytest.mark.parametrize("omit", [
    (),
    ("attention",),
    ("pseudo_labels", "delta_labels"),
    ("proposals", "detections"),  # ground truth alone keeps the instance panel
    ("attention", "pseudo_labels", "delta_labels", "proposals", "detections", "ground_truth"),
])
def test_panel_count_equals_non_none_inputs(omit):
  fig = _plot(**{k: None for k in omit})
  kept = {"attention", "pseudo_labels", "delta_labels", "proposals", "instances"}
  kept -= set(omit)
  if "detections" in omit and "ground_truth" in omit:
    kept.discard("instances")
  assert len(fig.axes) == 1 + len(kept)


def test_cas_and_pseudo_label_steps_are_per_snippet_in_seconds():
  inputs = _inputs()
  fig = _plot()
  cas_ax, att_ax, pl_ax, delta_ax = fig.axes[:4]
  for ax, key in ((cas_ax, "cas"), (pl_ax, "pseudo_labels"), (delta_ax, "delta_labels")):
    steps = [p for p in ax.patches if isinstance(p, StepPatch)]
    assert len(steps) == len(CLASSES)
    for step, c in zip(steps, CLASSES):
      values, edges, _ = step.get_data()
      np.testing.assert_allclose(edges, np.arange(T + 1) * SPS)
      np.testing.assert_allclose(values, inputs[key][:, c])
  (att,) = [p for p in att_ax.patches if isinstance(p, StepPatch)]
  np.testing.assert_allclose(att.get_data()[0], inputs["attention"])
  assert any(np.allclose(line.get_ydata(), 0.0) for line in delta_ax.get_lines())
  legend = [t.get_text() for t in cas_ax.get_legend().get_texts()]
  # the shown classes, then the instance labels without a CAS column (sorted)
  assert legend == ["action1", "action3", "action0 (no CAS)", "action4 (no CAS)"]


def test_detection_and_ground_truth_bars_at_the_right_seconds_and_rows():
  inputs = _inputs()
  ax = _plot().axes[-1]
  rows = [t.get_text() for t in ax.get_yticklabels()]
  assert rows == ["action1", "action3", "action0", "action4"]
  row_of = {1: 0, 3: 1, 0: 2, 4: 3}
  det = inputs["detections"]
  bars = _rectangles(ax, "detection")
  assert len(bars) == 3
  for bar, (start, end), c in zip(bars, det["segment"], det["label"]):
    assert bar.get_x() == pytest.approx(start * SPS)
    assert bar.get_width() == pytest.approx((end - start) * SPS)
    assert bar.get_y() + bar.get_height() / 2 == pytest.approx(row_of[c] - 0.22)
  # e.g. the class-3 detection [30, 40.25) snippets spans [19.2, 25.76) seconds
  assert (bars[1].get_x(), bars[1].get_x() + bars[1].get_width()) == pytest.approx((19.2, 25.76))
  # darker = higher score: alpha is monotone in the score
  alphas = [b.get_alpha() for b in bars]
  assert alphas[0] > alphas[1] > alphas[2]
  gt_bars = _rectangles(ax, "ground_truth")
  gt = inputs["ground_truth"]
  for bar, (start, end), c in zip(gt_bars, gt["segment"], gt["label"]):  # seconds, unscaled
    assert (bar.get_x(), bar.get_width()) == pytest.approx((start, end - start))
    assert bar.get_y() + bar.get_height() / 2 == pytest.approx(row_of[c] + 0.22)


def test_one_colour_per_class_in_every_panel():
  fig = _plot()
  cas_ax, prop_ax, inst_ax = fig.axes[0], fig.axes[4], fig.axes[5]
  colour = {c: to_rgba(s.get_edgecolor()) for c, s in zip(
      CLASSES, [p for p in cas_ax.patches if isinstance(p, StepPatch)])}
  assert colour[1] != colour[3]
  for step, c in zip([p for p in fig.axes[2].patches if isinstance(p, StepPatch)], CLASSES):
    assert to_rgba(step.get_edgecolor()) == colour[c]
  (props,) = [c for c in prop_ax.collections if isinstance(c, LineCollection)]
  prop = _inputs()["proposals"]
  for seg, rgba, (start, end), score, c in zip(props.get_segments(), props.get_colors(),
                                               prop["segment"], prop["score"], prop["label"]):
    np.testing.assert_allclose(seg, [[start * SPS, score], [end * SPS, score]])
    assert tuple(rgba) == colour[c]
  det_bars = _rectangles(inst_ax, "detection")
  assert to_rgba(det_bars[0].get_facecolor())[:3] == colour[1][:3]
  assert to_rgba(det_bars[1].get_facecolor())[:3] == colour[3][:3]


def test_seconds_per_snippet_and_defaults():
  fig = viz.plot_video(cas=np.zeros((7, 2)), class_names=["a", "b"], seconds_per_snippet=1.5)
  assert len(fig.axes) == 1
  assert fig.axes[0].get_xlim() == pytest.approx((0.0, 10.5))
  assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["a", "b"]


def test_empty_instances_draw_nothing():
  empty = {"segment": np.zeros((0, 2)), "label": np.zeros(0, np.int64), "score": np.zeros(0)}
  fig = _plot(proposals=empty, detections=empty, ground_truth=None)
  assert len(fig.axes) == 6
  assert not _rectangles(fig.axes[-1], "detection")


@pytest.mark.parametrize("override, name", [
    (dict(cas=np.zeros(T)), "cas"),
    (dict(cas=np.zeros((T, 0))), "cas"),
    (dict(cas=np.full((T, 6), np.nan)), "cas"),
    (dict(attention=np.zeros(T + 1)), "attention"),
    (dict(attention=np.zeros((T, 1))), "attention"),
    (dict(pseudo_labels=np.zeros((T - 1, 6))), "pseudo_labels"),
    (dict(delta_labels=np.zeros((T, 3))), "delta_labels"),  # class 3 needs 4 columns
    (dict(proposals={"segment": np.zeros((2, 2)), "label": np.zeros(2, np.int64)}), "proposals"),
    (dict(detections={"segment": np.zeros((2, 3)), "label": np.zeros(2, np.int64),
                      "score": np.zeros(2)}), "detections"),
    (dict(detections={"segment": np.zeros((2, 2)), "label": np.zeros(3, np.int64),
                      "score": np.zeros(2)}), "detections"),
    (dict(ground_truth={"segment": np.zeros((1, 2)), "label": np.array([9])}), "ground_truth"),
    (dict(classes=[1, 6]), "classes"),
    (dict(classes=[1, 1]), "classes"),
    (dict(class_names=NAMES[:2]), "class_names"),
    (dict(seconds_per_snippet=0.0), "seconds_per_snippet"),
])
def test_bad_input_raises_naming_the_argument(override, name):
  with pytest.raises(ValueError, match=name):
    _plot(**override)


def test_save_figure_writes_a_png(tmp_path):
  path = tmp_path / "nested" / "dir" / "video.png"
  viz.save_figure(_plot(), path)
  data = path.read_bytes()
  assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 10_000


# ----------------------------------------------------------------------------- mAP vs tIoU


def _lines(fig):
  return {line.get_label(): (line.get_xdata(), line.get_ydata()) for line in fig.axes[0].lines}


def test_map_vs_tiou_from_runs():
  fig = viz.plot_map_vs_tiou({"a": {0.5: 30.0, 0.1: 60.0, 0.3: 45.0}, "b": {"0.1": 50, "0.7": 5}})
  lines = _lines(fig)
  np.testing.assert_allclose(lines["a"], [[0.1, 0.3, 0.5], [60.0, 45.0, 30.0]])
  np.testing.assert_allclose(lines["b"], [[0.1, 0.7], [50.0, 5.0]])


def test_map_vs_tiou_from_detection_map_metrics():
  det = {"video": np.array([0, 0]), "label": np.array([0, 1]), "score": np.array([0.9, 0.8]),
         "segment": np.array([[0.0, 10.0], [20.0, 24.0]])}
  gt = {"video": np.array([0, 0]), "label": np.array([0, 1]),
        "segment": np.array([[0.0, 6.4], [12.8, 16.0]])}
  metrics = {**ev.detection_map(det, gt, num_classes=2),
             **ev.detection_map(det, gt, num_classes=2, protocol="activitynet")}
  lines = _lines(viz.plot_map_vs_tiou(metrics))
  assert set(lines) == {"wtalc", "activitynet"}  # averages and arrays are skipped
  for protocol in ("wtalc", "activitynet"):
    thresholds = metrics[f"{protocol}/tiou_thresholds"]
    np.testing.assert_allclose(lines[protocol][0], thresholds)
    np.testing.assert_allclose(lines[protocol][1],
                               [metrics[f"{protocol}/mAP@{t:g}"] for t in thresholds])
  by_run = _lines(viz.plot_map_vs_tiou({"seed0": ev.detection_map(det, gt, num_classes=2),
                                        "both": metrics}))
  assert set(by_run) == {"seed0", "both (wtalc)", "both (activitynet)"}


@pytest.mark.parametrize("results", [
    {}, [1, 2], {"a": 3.0}, {"a": {}}, {"a": {1.5: 10.0}}, {"a": {0.5: math.nan}},
    {"a": {"x": 1.0}},
])
def test_map_vs_tiou_bad_input(results):
  with pytest.raises(ValueError, match="results"):
    viz.plot_map_vs_tiou(results)


# ----------------------------------------------------------------------------- precision-recall


def _random_eval_data(seed, num_videos=4, num_classes=3, num_gt=14, num_pred=40):
  """Predictions scattered around the GT (so that many match), plus pure noise."""
  rng = np.random.default_rng(seed)
  gt_start = rng.uniform(0, 50, num_gt)
  gt = {"video": rng.integers(0, num_videos, num_gt), "label": rng.integers(0, num_classes, num_gt),
        "segment": np.stack([gt_start, gt_start + rng.uniform(1, 12, num_gt)], 1)}
  src = rng.integers(0, num_gt, num_pred)
  centre = gt["segment"][src].mean(1) * 25 / 16 + rng.normal(0, 3, num_pred)
  half = np.diff(gt["segment"][src], axis=1)[:, 0] * 25 / 32 * rng.uniform(0.5, 1.5, num_pred)
  noise = rng.random(num_pred) < 0.3
  det = {"video": np.where(noise, rng.integers(0, num_videos, num_pred), gt["video"][src]),
         "label": np.where(noise, rng.integers(0, num_classes, num_pred), gt["label"][src]),
         "score": np.round(rng.random(num_pred), 1),  # ties on purpose
         "segment": np.stack([np.maximum(centre - half, 0), np.maximum(centre + half, 0.5)], 1)}
  return det, gt


def _oracle_precision_recall(det, gt, class_id, thr, protocol):
  """Greedy matching in plain Python, from the evaluation module's description."""
  def units(pred, truth):
    if protocol == "wtalc":
      return [math.floor(pred[0]), math.floor(pred[1])], [round(truth[0] * 25 / 16),
                                                          round(truth[1] * 25 / 16)]
    return [pred[0] * 0.64, pred[1] * 0.64], list(truth)

  preds = sorted((i for i in range(len(det["label"])) if det["label"][i] == class_id),
                 key=lambda i: -det["score"][i])  # stable: ties in input order
  truths = [j for j in range(len(gt["label"])) if gt["label"][j] == class_id]
  matched, hits, precision, recall = set(), 0, [], []
  for rank, i in enumerate(preds, 1):
    best, best_j = -1.0, None
    for j in truths:
      if gt["video"][j] != det["video"][i] or j in matched:
        continue
      (a0, a1), (b0, b1) = units(det["segment"][i], gt["segment"][j])
      inter = max(min(a1, b1) - max(a0, b0), 0.0)
      union = (a1 - a0) + (b1 - b0) - inter
      iou = inter / union if union > 0 else 0.0
      if iou > best:
        best, best_j = iou, j
    if best >= thr:
      matched.add(best_j)
      hits += 1
    precision.append(hits / rank)
    recall.append(hits / len(truths))
  return np.array(precision), np.array(recall)


@pytest.mark.parametrize("protocol", ["wtalc", "activitynet"])
@pytest.mark.parametrize("seed", [0, 1])
def test_precision_recall_matches_oracle_and_detection_map(protocol, seed):
  det, gt = _random_eval_data(seed)
  thresholds = [0.1, 0.3, 0.5, 0.7]
  metrics = ev.detection_map(det, gt, num_classes=3, tiou_thresholds=thresholds,
                             protocol=protocol)
  checked = 0
  for class_id in np.unique(gt["label"]):
    precision, recall, ap, thr = ev.precision_recall(
        det, gt, class_id=int(class_id), tiou=thresholds, num_classes=3, protocol=protocol)
    np.testing.assert_array_equal(thr, thresholds)
    for t, value in enumerate(thresholds):
      want_p, want_r = _oracle_precision_recall(det, gt, class_id, value, protocol)
      np.testing.assert_allclose(precision[t], want_p)
      np.testing.assert_allclose(recall[t], want_r)
      checked += want_r[-1] > 0
    np.testing.assert_allclose(100 * ap, metrics[f"{protocol}/per_class_ap"][:, class_id])
  assert checked >= 3  # the data produce real matches


def test_precision_recall_hand_case():
  # class 0: GT [0, 6.4) s = snippets [0, 10); predictions ranked 0.9 (miss), 0.8 (hit), 0.1 (dup)
  det = {"video": np.array([0, 0, 0]), "label": np.array([0, 0, 0]),
         "score": np.array([0.9, 0.8, 0.1]),
         "segment": np.array([[30.0, 40.0], [0.0, 8.0], [0.0, 10.0]])}
  gt = {"video": np.array([0]), "label": np.array([0]), "segment": np.array([[0.0, 6.4]])}
  precision, recall, ap, _ = ev.precision_recall(det, gt, class_id=0, tiou=0.5, num_classes=1)
  np.testing.assert_allclose(precision, [[0.0, 0.5, 1 / 3]])
  np.testing.assert_allclose(recall, [[0.0, 1.0, 1.0]])
  np.testing.assert_allclose(ap, [0.5])


def test_precision_recall_class_without_predictions():
  det = {"video": np.array([0]), "label": np.array([1]), "score": np.array([0.9]),
         "segment": np.array([[0.0, 10.0]])}
  gt = {"video": np.array([0]), "label": np.array([0]), "segment": np.array([[0.0, 6.4]])}
  precision, recall, ap, _ = ev.precision_recall(det, gt, class_id=0, tiou=0.5, num_classes=2)
  assert precision.shape == recall.shape == (1, 0)
  np.testing.assert_array_equal(ap, [0.0])
  fig = viz.plot_precision_recall(det, gt, class_id=0, tiou=0.5, num_classes=2)
  assert fig.axes[0].get_title() == "class 0 (wtalc protocol, 0 predictions)"


def test_plot_precision_recall():
  det, gt = _random_eval_data(0)
  class_id = int(gt["label"][0])
  fig = viz.plot_precision_recall(det, gt, class_id=class_id, tiou=[0.1, 0.5], num_classes=3,
                                  class_name="jump")
  _, _, ap, _ = ev.precision_recall(det, gt, class_id=class_id, tiou=[0.1, 0.5], num_classes=3)
  ax = fig.axes[0]
  assert [t.get_text() for t in ax.get_legend().get_texts()] == [
      f"tIoU 0.1: AP {100 * ap[0]:.1f}%", f"tIoU 0.5: AP {100 * ap[1]:.1f}%"]
  assert ax.get_title().startswith("jump (wtalc protocol")


@pytest.mark.parametrize("kwargs, name", [
    (dict(class_id=5), "class_id"),
    (dict(class_id=2, gt_labels=[0, 1]), "class_id"),  # no GT for class 2
    (dict(tiou=0.0), "tiou_thresholds"),
    (dict(protocol="voc"), "protocol"),
])
def test_precision_recall_bad_input(kwargs, name):
  det, gt = _random_eval_data(0)
  labels = kwargs.pop("gt_labels", None)
  if labels is not None:
    gt = {k: v[np.isin(gt["label"], labels)] for k, v in gt.items()}
  args = dict(class_id=0, tiou=0.5, num_classes=3) | kwargs
  with pytest.raises(ValueError, match=name):
    ev.precision_recall(det, gt, **args)
