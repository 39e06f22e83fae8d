"""Synthetic features, semi-synthetic datasets, write_wtalc round trips, the embedded default,
and `launch.check_data`."""

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from gaufuse_jax._src.data import embedded
from gaufuse_jax._src.data import synthetic
from gaufuse_jax._src.data import wtalc_annotations as ann
from gaufuse_jax._src.data import wtalc

REPO = pathlib.Path(__file__).resolve().parents[1]


def test_num_snippets_hand_values():
  np.testing.assert_array_equal(synthetic.num_snippets([1.0, 8.9, 0.64, 1673.4, 0.01]),
                                [2, 14, 1, 2615, 1])
  k = np.arange(1, 3001)
  np.testing.assert_array_equal(synthetic.num_snippets(k * 16 / 25), k)  # exact multiples
  np.testing.assert_array_equal(synthetic.num_snippets([2.0], fps=10, frames_per_snippet=4), [5])


def test_snippet_segments_hand_values():
  # 25/16 snippets/s: [0.2, 0.3] -> round(0.3125)=0, round(0.47)=0 -> widened to [0, 1);
  # [6.4, 9.6] -> [10, 15); [9.0, 30.0] -> [14, 47) clipped to [14, 20); [13.0, 14] starts at
  # round(20.3)=20 >= T and is dropped.
  segs, keep = synthetic.snippet_segments([[0.2, 0.3], [6.4, 9.6], [9.0, 30.0], [13.0, 14.0]], 20)
  np.testing.assert_array_equal(segs, [[0, 1], [10, 15], [14, 20]])
  np.testing.assert_array_equal(keep, [True, True, True, False])


def test_instance_profiles_hand_computed():
  p = synthetic.SynthesisParams(instance_jitter=0.0, core_fraction=0.4, core_strength=1.5,
                                periphery_strength=0.5, context_strength=0.8, context_margin=1.0,
                                context_video_strength=0.3)
  action, context = synthetic.instance_profiles(40, [[5, 15]], [1], 3,
                                                rng=np.random.default_rng(0), params=p)
  assert action.shape == context.shape == (40, 3) and action.dtype == np.float32
  inst = action[5:15, 1]
  core = np.flatnonzero(inst == 1.5)
  assert len(core) == 4 and np.all(np.diff(core) == 1)  # round(0.4 * 10) contiguous snippets
  assert np.all(inst[inst != 1.5] == 0.5)
  assert np.all(action[:5] == 0) and np.all(action[15:] == 0) and np.all(action[:, [0, 2]] == 0)
  # Context: 0.8 inside; 0.8 * (1 - d / 11) at distance d (ramp width 10); floor 0.3.
  distance = np.array([max(5 - t, t - 14, 0) for t in range(40)])
  expected = np.maximum(0.3, 0.8 * np.clip(1 - distance / 11, 0, 1))
  assert expected[0] == pytest.approx(0.8 * 6 / 11) and expected[30] == 0.3
  np.testing.assert_allclose(context[:, 1], expected, rtol=1e-6)
  assert np.all(context[:, [0, 2]] == 0)


def test_instance_profiles_overlap_takes_maximum():
  p = synthetic.SynthesisParams(instance_jitter=0.0, core_fraction=1.0, context_video_strength=0.0)
  action, _ = synthetic.instance_profiles(12, [[0, 6], [4, 10]], [0, 0], 1,
                                          rng=np.random.default_rng(0), params=p)
  np.testing.assert_allclose(action[:, 0], [1.5] * 10 + [0, 0])


def test_render_features_constant_case():
  # No patterns, noise or background: x = feature_scale * relu(offset) everywhere.
  p = synthetic.SynthesisParams(offset_mean=0.5, offset_std=0.0, background_strength=0.0,
                                noise_strength=0.0, feature_scale=0.4)
  patterns = synthetic.make_patterns(2, 6, seed=0, params=p)
  zeros = np.zeros((7, 2), np.float32)
  x = synthetic.render_features(patterns, zeros, zeros, rng=np.random.default_rng(0), params=p)
  np.testing.assert_allclose(x, np.full((7, 6), 0.2), rtol=1e-6)
  p = synthetic.SynthesisParams(offset_mean=-0.5, offset_std=0.0, background_strength=0.0,
                                noise_strength=0.0)
  patterns = synthetic.make_patterns(2, 6, seed=0, params=p)
  x = synthetic.render_features(patterns, zeros, zeros, rng=np.random.default_rng(0), params=p)
  assert np.all(x == 0)


def test_ar1_statistics():
  x = synthetic.ar1(np.random.default_rng(0), 20000, 4, 0.8)
  assert x.dtype == np.float32
  np.testing.assert_allclose(x.var(0), 1.0, atol=0.08)
  lag1 = np.mean(x[1:] * x[:-1], 0) / x.var(0)
  np.testing.assert_allclose(lag1, 0.8, atol=0.03)


def _cos(x, y):
  return (x @ y) / np.maximum(np.linalg.norm(x, axis=-1) * np.linalg.norm(y), 1e-9)


def test_failure_modes_are_present():
  """Similarity to a class's core centroid orders core > periphery > nearby context >
  far background > other classes: incomplete-localization and context traps exist."""
  p = synthetic.SynthesisParams(instance_jitter=0.0)
  num_classes, dim = 3, 256
  patterns = synthetic.make_patterns(num_classes, dim, seed=0, params=p)
  videos = []
  for v in range(24):
    rng = np.random.default_rng(v)
    c = v % num_classes
    action, context = synthetic.instance_profiles(200, [[40, 60], [120, 140]], [c, c],
                                                  num_classes, rng=rng, params=p)
    x = synthetic.render_features(patterns, action, context, rng=rng, params=p)
    videos.append((x, action[:, c], context[:, c], c))
  centroid = {c: np.concatenate([x[a == 1.5] for x, a, _, k in videos if k == c]).mean(0)
              for c in range(num_classes)}
  means = {k: [] for k in ("core", "periphery", "near", "far", "other")}
  for x, a, ctx, c in videos:
    sim = _cos(x, centroid[c])
    means["core"].append(sim[a == 1.5].mean())
    means["periphery"].append(sim[a == 0.5].mean())
    means["near"].append(sim[(a == 0) & (ctx > 0.35)].mean())
    means["far"].append(sim[(a == 0) & (ctx <= 0.3 + 1e-6)].mean())
    means["other"].append(_cos(x, centroid[(c + 1) % num_classes]).mean())
  m = {k: np.array(v) for k, v in means.items()}
  assert np.all(m["core"] > m["periphery"]) and np.all(m["periphery"] > m["near"])
  assert m["near"].mean() > m["far"].mean() > m["other"].mean()


def test_features_sparse_nonnegative_not_parallel():
  train, _ = embedded.make_embedded_dataset(num_train=20, num_test=1, feature_dim=256, seed=3)
  x = np.concatenate(train.features)
  assert x.min() >= 0 and x.dtype == np.float32
  assert 0.4 < np.mean(x == 0) < 0.75  # sparse as after a ReLU, not dense
  within = []
  for f in train.features:
    n = f / np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-9)
    sim = n @ n.T
    within.append(sim[np.triu_indices(len(f), 1)].mean())
  assert 0.3 < np.mean(within) < 0.85  # dense positive features would be ~0.99


def test_synthesis_is_deterministic_per_seed():
  ann = embedded.embedded_annotations(num_train=4, num_test=2, seed=1)
  a = synthetic.synthesize_features(ann, seed=5, feature_dim=16)
  b = synthetic.synthesize_features(ann, seed=5, feature_dim=16)
  c = synthetic.synthesize_features(ann, seed=6, feature_dim=16)
  assert all(np.array_equal(x, y) for x, y in zip(a, b))
  assert not any(np.array_equal(x, y) for x, y in zip(a, c))


def test_params_validation():
  with pytest.raises(ValueError, match=r"SynthesisParams: out of range .*core_fraction=0\.0, "
                                       r"noise_correlation=1\.0"):
    synthetic.SynthesisParams(core_fraction=0.0, noise_correlation=1.0)
  with pytest.raises(ValueError, match=r"EmbeddedLayout: expected"):
    embedded.EmbeddedLayout(min_length=10, max_length=5)


@pytest.fixture(scope="module")
def thumos_annotations(shared_data):
  return ann.load_annotations(shared_data / "thumos14", dataset="Thumos14reduced")


def test_semisynthetic_thumos14(shared_data, thumos_annotations):
  train, test = synthetic.make_semisynthetic_dataset(shared_data / "thumos14", feature_dim=8)
  assert (len(train), len(test)) == (200, 212) and train.feature_dim == 8
  index = {n: i for i, n in enumerate(thumos_annotations.video_names)}
  for ds in (train, test):
    dur = thumos_annotations.durations[[index[n] for n in ds.video_names]]
    np.testing.assert_array_equal(ds.lengths, np.ceil(dur * 25 / 16 - 1e-9))
  assert train.report["segments"] + test.report["segments"] + 30 == 6365


def test_write_wtalc_round_trip(shared_data, thumos_annotations, tmp_path):
  features = synthetic.synthesize_features(thumos_annotations, seed=2, feature_dim=8)
  synthetic.write_wtalc(tmp_path, "Thumos14reduced", thumos_annotations, features)
  names = sorted(p.name for p in (tmp_path / "Thumos14reduced-Annotations").iterdir())
  assert names == sorted([f"{n}.npy" for n in ann.ANNOTATION_FILES] + ["Ambiguous_test.txt"])
  assert np.load(tmp_path / "Thumos14reduced-Annotations" / "classlist.npy").dtype.kind == "S"
  expected = synthetic.make_semisynthetic_dataset(shared_data / "thumos14", seed=2, feature_dim=8)
  for split, want in zip(ann.SPLITS, expected):
    got = wtalc.load_wtalc(tmp_path, dataset="Thumos14reduced", split=split)
    assert got.video_names == want.video_names and got.class_names == want.class_names
    assert all(np.array_equal(a, b) for a, b in zip(got.features, want.features))
    assert all(np.array_equal(a, b) for a, b in zip(got.segments, want.segments))
    assert all(np.array_equal(a, b) for a, b in zip(got.segment_labels, want.segment_labels))
    np.testing.assert_array_equal(got.labels, want.labels)
    np.testing.assert_array_equal(got.durations, want.durations)
    for key in ("video", "segment"):
      np.testing.assert_array_equal(got.ambiguous_arrays()[key], want.ambiguous_arrays()[key])
    assert got.report == want.report


def test_write_wtalc_rejects_wrong_feature_count(tmp_path):
  ann = embedded.embedded_annotations(num_train=2, num_test=1)
  with pytest.raises(ValueError, match=r"write_wtalc: expected 3 feature arrays .*found 2"):
    synthetic.write_wtalc(tmp_path, "embedded", ann, [np.zeros((3, 2))] * 2)


def test_embedded_dataset_statistics():
  layout = embedded.EmbeddedLayout()
  train, test = embedded.make_embedded_dataset(num_train=60, num_test=40, feature_dim=16, seed=0)
  assert (len(train), len(test)) == (60, 40) and train.num_classes == 20
  assert train.name == "embedded" and train.feature_dim == 16
  for ds in (train, test):
    assert ds.lengths.min() >= layout.min_length and ds.lengths.max() <= layout.max_length
    np.testing.assert_allclose(ds.durations, ds.lengths * 0.64)
    assert np.all(ds.labels.sum(0)[:min(len(ds), 20)] >= 1)  # every class used
    for segs, seg_labels, label, dur in zip(ds.segments, ds.segment_labels, ds.labels,
                                            ds.durations):
      assert len(segs) >= 1 and np.all(segs[:, 1] > segs[:, 0]) and segs[-1, 1] <= dur + 1e-9
      assert np.all(segs[1:, 0] >= segs[:-1, 1])  # sorted, non-overlapping
      np.testing.assert_array_equal(np.flatnonzero(label), np.unique(seg_labels))
    assert ds.report["clipped_segments"] == ds.report["dropped_segments"] == 0
  again, _ = embedded.make_embedded_dataset(num_train=60, num_test=40, feature_dim=16, seed=0)
  assert all(np.array_equal(a, b) for a, b in zip(train.features, again.features))
  assert train.video_names[0] == "embedded_train_0000"


def test_embedded_round_trip_per_video(tmp_path):
  ann = embedded.embedded_annotations(num_train=3, num_test=2, seed=4)
  features = synthetic.synthesize_features(ann, seed=4, feature_dim=8)
  synthetic.write_wtalc(tmp_path, "embedded", ann, features, per_video=True)
  want_train, want_test = embedded.make_embedded_dataset(num_train=3, num_test=2, seed=4,
                                                         feature_dim=8)
  got = wtalc.load_wtalc(tmp_path, dataset="embedded", split="test")
  assert got.video_names == want_test.video_names
  assert all(np.array_equal(a, b) for a, b in zip(got.features, want_test.features))
  assert all(np.allclose(a, b) for a, b in zip(got.segments, want_test.segments))


def _check_data(*args):
  env = dict(os.environ, PYTHONPATH=str(REPO), JAX_PLATFORMS="cpu")
  return subprocess.run([sys.executable, "-m", "launch.check_data", *args], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=120)


def test_check_data_on_semisynthetic_thumos14(thumos_annotations, tmp_path):
  features = synthetic.synthesize_features(thumos_annotations, seed=0, feature_dim=8)
  synthetic.write_wtalc(tmp_path, "Thumos14reduced", thumos_annotations, features)
  out = _check_data(f"--data_dir={tmp_path}", "--dataset=Thumos14reduced",
                    "--exclude_videos=video_test_0000270")
  assert out.returncode == 0, out.stderr
  assert "412 videos" in out.stdout and "6365 segments before clipping" in out.stdout
  assert "[train] Thumos14reduced: 200 videos, 20 classes, feature dim 8" in out.stdout
  assert "[test] Thumos14reduced: 211 videos, 20 classes, feature dim 8" in out.stdout
  assert "dropped_segments=4" in out.stdout and "excluded: ['video_test_0000270']" in out.stdout
  assert "snippets per video: min 14," in out.stdout


def test_check_data_reports_errors(tmp_path):
  out = _check_data(f"--data_dir={tmp_path}", "--dataset=Thumos14reduced")
  assert out.returncode == 1
  assert "ERROR: missing annotation file classlist.npy" in out.stdout


def test_check_data_checks_an_annotation_folder_without_features(shared_data):
  out = _check_data(f"--data_dir={shared_data / 'thumos14'}", "--dataset=Thumos14reduced")
  assert out.returncode == 0, out.stderr
  assert "Checking the annotations only (missing feature file" in out.stdout
  assert "[test] Thumos14reduced: 212 videos, 20 classes\n" in out.stdout
  assert "snippets per video (from the durations): min 24," in out.stdout
  assert "features: not checked (annotations only)" in out.stdout
