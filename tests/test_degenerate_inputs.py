"""Degenerate predictions get defined results: a video with no proposal at all and
all-background predictions, through localization, pseudo labels and evaluation."""

import jax
import numpy as np

from gaufuse_jax._src import evaluation
from gaufuse_jax._src import localization
from gaufuse_jax._src import pseudo_labels as pl

# The shapes and configuration of test_pseudo_labels.py: the same compiled functions.
LOC = localization.LocalizationConfig(max_proposals=64, max_instances=8)
T, C1 = 60, 3  # snippets; 2 classes + background


def _ground_truth():
  return {"video": np.array([0, 1]), "label": np.array([0, 1]),
          "segment": np.array([[1.0, 4.0], [2.0, 6.0]])}


def _map(instances, protocol):
  det = evaluation.detections_from_padded(
      instances.segments[..., 0], instances.segments[..., 1], instances.scores,
      np.asarray(instances.valid))
  return det, evaluation.detection_map(det, _ground_truth(), num_classes=C1 - 1,
                                       protocol=protocol)


def test_video_without_any_proposal():
  cas = np.zeros((2, T, C1), np.float32)  # below every threshold (the lowest is 0.001)
  cas[1, 10:20, 1] = 0.5  # the second video has one clear instance
  scores = np.full((2, C1), 0.9, np.float32)  # every class gated on
  instances, _ = jax.jit(localization.localize, static_argnums=3)(
      cas[..., :-1], scores[..., :-1], np.array([T, T]), LOC)
  counts = np.asarray(instances.count)
  assert counts[0].sum() == 0 and counts[1, 1] >= 1
  labels, diag = pl.generate_pseudo_labels(cas, scores, np.array([T, T]),
                                           pl.PseudoLabelConfig(localization=LOC), 0.02)
  labels = np.asarray(labels)
  assert np.all(labels[0] == 0) and np.all(np.isfinite(labels))
  assert np.asarray(diag["num_instances"])[0].sum() == 0 and labels[1, 10:20, 1].sum() > 0
  for protocol in ("wtalc", "activitynet"):
    det, m = _map(instances, protocol)
    assert set(det["video"].tolist()) == {1}
    values = [v for k, v in m.items() if k.startswith(f"{protocol}/mAP@")]
    assert all(np.isfinite(values)) and m[f"{protocol}/per_class_ap"][:, 0].max() == 0


def test_all_background_predictions():
  cas = np.zeros((2, T, C1), np.float32)
  cas[:, 5:30, -1] = 0.6  # only the background column has activity ...
  scores = np.array([[0.01, 0.0, 0.95]] * 2, np.float32)  # ... and passes the gate
  instances, stats = localization.localize(cas[..., :-1], scores[..., :-1], np.array([T, T]), LOC)
  assert not np.asarray(stats["gated"]).any() and np.asarray(instances.count).sum() == 0
  for protocol in ("wtalc", "activitynet"):
    det, m = _map(instances, protocol)
    assert det["score"].size == 0
    assert all(m[f"{protocol}/mAP@{t:g}"] == 0.0 for t in m[f"{protocol}/tiou_thresholds"])
  # Pseudo labels: the background column only.
  labels, _ = pl.generate_pseudo_labels(cas, scores, np.array([T, T]),
                                        pl.PseudoLabelConfig(localization=LOC), 0.02)
  labels = np.asarray(labels)
  assert np.all(labels[..., :-1] == 0) and labels[:, 5:30, -1].sum() > 0
  assert np.all(np.isfinite(labels))
