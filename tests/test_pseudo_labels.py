"""Δ pseudo labels, the pseudo-label loss and the on-device pipeline (paper §3.2-3.3)."""

import jax
import numpy as np
import pytest

from gaufuse_jax._src import linpro
from gaufuse_jax._src import localization
from gaufuse_jax._src import pseudo_labels as pl


def test_delta_hand_case():
  new = np.array([[0.3, 0.0], [0.1, 0.2]])
  old = np.array([[0.1, 0.2], [0.1, 0.0]])
  np.testing.assert_allclose(pl.delta_pseudo_labels(new, old, 2.0), [[0.4, -0.4], [0.0, 0.4]])


def test_loss_hand_case_negative_labels_and_padding():
  logits = np.log(np.array([[[0.5, 0.5], [0.9, 0.1], [0.2, 0.8]]], np.float32))
  labels = np.array([[[1.0, 0.0], [-1.0, 0.5], [7.0, 7.0]]], np.float32)
  valid = np.array([[True, True, False]])
  expected = (-np.log(0.5) + (np.log(0.9) - 0.5 * np.log(0.1))) / 2
  np.testing.assert_allclose(pl.pseudo_label_loss(logits, labels, valid), [expected], rtol=1e-5)
  assert float(pl.pseudo_label_loss(logits, labels, np.zeros((1, 3), bool))[0]) == 0.0


def _cas():
  rng = np.random.default_rng(0)
  cas = rng.random((2, 60, 3)).astype(np.float32) * 0.002
  cas[0, 10:25, 0] += 0.03
  cas[0, 40:48, 1] += 0.02
  cas[1, 5:15, 2] += 0.03
  return cas


def test_pipeline_gates_classes_and_gives_finite_labels():
  cas = _cas()
  scores = np.array([[0.5, 0.3, 0.1], [0.1, 0.1, 0.9]], np.float32)
  cfg = pl.PseudoLabelConfig(localization=localization.LocalizationConfig(
      max_proposals=64, max_instances=8))
  labels, diag = jax.jit(pl.generate_pseudo_labels, static_argnums=3)(
      cas, scores, np.array([60, 40]), cfg, 0.02)
  labels = np.asarray(labels)
  assert labels.shape == (2, 60, 3) and np.all(np.isfinite(labels))
  assert np.all((labels >= 0) & (labels <= 1 + 1e-6))
  gated_off = scores < 0.16
  assert np.all(labels[gated_off[:, None, :].repeat(60, 1)] == 0)  # gate: no label
  assert np.all(labels[1, 40:] == 0)  # past valid_length
  assert np.asarray(diag["num_instances"])[0, 0] > 0
  assert labels[0, 10:25, 0].sum() > 0 and labels[0, :, 2].sum() == 0


def test_pipeline_equals_per_video_loop_and_padding_invariant():
  cas = _cas()
  scores = np.array([[0.5, 0.3, 0.2], [0.2, 0.2, 0.9]], np.float32)
  lengths = np.array([60, 40])
  cfg = pl.PseudoLabelConfig(localization=localization.LocalizationConfig(
      max_proposals=64, max_instances=8))
  batched, _ = pl.generate_pseudo_labels(cas, scores, lengths, cfg, 0.02)
  for v, length in enumerate(lengths):
    # Video v alone, garbage CAS past its length, next to a video with every class gated off
    # (the same shapes as the batch: one compilation).
    alone = np.full_like(cas, 5.0)
    alone[0, :length] = cas[v, :length]
    alone_scores = np.zeros_like(scores)
    alone_scores[0] = scores[v]
    single, _ = pl.generate_pseudo_labels(alone, alone_scores, np.array([length, 60]), cfg, 0.02)
    np.testing.assert_allclose(np.asarray(single)[0], np.asarray(batched)[v], atol=1e-5)
    assert np.all(np.asarray(single)[0, length:] == 0)
    assert np.all(np.asarray(single)[1] == 0)


def test_pipeline_labels_satisfy_lp_constraints_of_fused_instances():
  cas = _cas()[:1]
  scores = np.array([[0.5, 0.1, 0.1]], np.float32)
  # One fused instance with a positive OIC score and an outer area: the LP is feasible.
  loc = localization.LocalizationConfig(max_proposals=64, max_instances=1, temperature=0.02)
  cfg = pl.PseudoLabelConfig(localization=loc)
  labels, diag = pl.generate_pseudo_labels(cas, scores, np.array([60]), cfg)
  inst, _ = localization.localize(cas, scores, np.array([60]), loc)
  a, b = linpro.linpro_constraints(inst.segments[0, 0], inst.scores[0, 0], inst.valid[0, 0], 60,
                                   num_snippets=60)
  assert int(diag["lp_status"][0, 0]) == linpro.STATUS_SOLVED
  assert float(b[0]) > 0
  np.testing.assert_allclose(np.asarray(a) @ np.asarray(labels)[0, :, 0], np.asarray(b), atol=2e-4)


@pytest.mark.parametrize("suppression", ["fusion", "nms"])
def test_localize_gives_the_same_instances_with_merged_copies(suppression):
  cas = _cas()
  scores = np.array([[0.5, 0.3, 0.2], [0.2, 0.2, 0.9]], np.float32)
  run = lambda merge: localization.localize(cas, scores, np.array([60, 40]),
                                            localization.LocalizationConfig(
                                                max_proposals=64, max_instances=16,
                                                suppression=suppression,
                                                merge_duplicates=merge))
  (merged, stats_m), (full, stats_f) = run(True), run(False)
  assert not np.any(stats_f["proposals_dropped"]) and not np.any(stats_m["proposals_dropped"])
  np.testing.assert_array_equal(merged.count, full.count)
  assert int(np.sum(full.count)) > 6
  np.testing.assert_allclose(merged.segments, full.segments, atol=1e-5)
  np.testing.assert_allclose(merged.scores, full.scores, atol=1e-6)


def test_merging_copies_does_not_apply_to_soft_nms():
  assert localization.LocalizationConfig().merge_duplicates is True
  assert localization.LocalizationConfig(suppression="soft_nms").merge_duplicates is False
  with pytest.raises(ValueError, match="merge_duplicates=True does not apply to soft-NMS"):
    localization.LocalizationConfig(suppression="soft_nms", merge_duplicates=True)
