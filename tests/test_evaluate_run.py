"""Evaluating and localizing with a trained run (``gaufuse_jax.evaluate_run``), on the shared
tiny run of conftest.py: checkpoint restore and its errors, tables and plots, new feature files."""

import json

import numpy as np
import pytest

from conftest import NUM_EPOCHS
from gaufuse_jax import evaluate_run
from gaufuse_jax._src import results as results_lib

MAIN_METRICS = ("wtalc/mAP@0.1:0.7", "activitynet/mAP@0.5:0.05:0.95", "cmAP")


def test_restore_checkpoint_errors(run, tmp_path):
  with pytest.raises(ValueError, match=r"--checkpoint=99: no such step .*steps: \[.*3, 4\]"):
    evaluate_run.restore_checkpoint(run.config, run.workdir, "99")
  with pytest.raises(ValueError, match=r"'best', 'latest' or an epoch number, got 'last'"):
    evaluate_run.restore_checkpoint(run.config, run.workdir, "last")
  with pytest.raises(FileNotFoundError, match="No checkpoint in .*train first"):
    evaluate_run.restore_checkpoint(run.config, tmp_path, "latest")


def test_evaluate_checkpoint_writes_tables_and_plots(run):
  metrics = evaluate_run.evaluate_checkpoint(run.config, run.workdir, checkpoint="latest",
                                             num_plots=1, split="train")
  for key in MAIN_METRICS:
    assert np.isfinite(metrics[key])
  out = run.workdir / f"eval_{NUM_EPOCHS}"
  results = json.loads((out / "results" / "train.json").read_text())
  results_lib.validate_results_json(results, class_names=run.train_ds.class_names)
  assert set(results["results"]) == set(run.train_ds.video_names)
  assert f"{metrics['cmAP']:.2f}" in (out / "results" / "train.md").read_text()
  first = next(n for n, s in zip(run.train_ds.video_names, run.train_ds.segments) if len(s))
  pngs = sorted(p.name for p in (out / "plots").glob("*.png"))
  assert pngs == sorted([f"{first}.png", "map_vs_tiou.png"])
  for name in pngs:
    assert (out / "plots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _write_features(folder, names, features):
  folder.mkdir(parents=True, exist_ok=True)
  for name, x in zip(names, features):
    np.save(folder / f"{name}.npy", x)


def test_localize_features_folder(run, tmp_path):
  """launch.localize's path on 3 test videos gives a valid results file in seconds, with the
  detections the run's own evaluation of those videos found (same final checkpoint)."""
  picked = [0, 1, 3]
  names = [run.test_ds.video_names[i] for i in picked]
  _write_features(tmp_path / "features", names, [run.test_ds.features[i] for i in picked])
  out = tmp_path / "out" / "detections.json"
  results = evaluate_run.localize_features(run.config, run.workdir, tmp_path / "features", out,
                                           checkpoint="latest")
  assert json.loads(out.read_text()) == results
  results_lib.validate_results_json(results, class_names=run.test_ds.class_names)
  assert sorted(results["results"]) == sorted(names)
  seconds = run.test_ds.frames_per_snippet / run.test_ds.fps
  evaluated = json.loads((run.workdir / "results" / "test.json").read_text())["results"]
  for i, name in zip(picked, names):
    for e in results["results"][name]:
      end = (run.test_ds.lengths[i] + 1) * seconds  # one snippet past the video at most
      assert 0.0 <= e["segment"][0] < e["segment"][1] <= end + 1e-6
    got, want = results["results"][name], evaluated[name]
    assert [e["label"] for e in got] == [e["label"] for e in want], name
    np.testing.assert_allclose([e["score"] for e in got], [e["score"] for e in want], rtol=1e-4)
    np.testing.assert_allclose([e["segment"] for e in got], [e["segment"] for e in want],
                               atol=1e-4)


@pytest.mark.parametrize("bad, match", [
    (np.zeros((20, 16), np.float32),
     r"bad\.npy: expected features \[T >= 2, D = 32\], found \(20, 16\)"),
    (np.zeros((20,), np.float32), r"bad\.npy: expected features \[T >= 2, D = 32\], found \(20,\)"),
    (np.full((20, 32), np.nan, np.float32), r"bad\.npy: 20 snippets hold NaN/inf"),
], ids=["wrong_dim", "one_dim", "nan"])
def test_localize_bad_feature_file_names_it(run, tmp_path, bad, match):
  good = run.test_ds.features[0]
  _write_features(tmp_path / "features", ["good", "bad"], [good, bad])
  with pytest.raises(ValueError, match=match):
    evaluate_run.localize_features(run.config, run.workdir, tmp_path / "features",
                                   tmp_path / "out.json")
  assert not (tmp_path / "out.json").exists()


def test_localize_missing_inputs(run, tmp_path):
  (tmp_path / "empty").mkdir()
  with pytest.raises(FileNotFoundError, match="folder holds no .npy file"):
    evaluate_run.localize_features(run.config, run.workdir, tmp_path / "empty", tmp_path / "o.json")
  with pytest.raises(FileNotFoundError, match="dataset.json not found"):
    evaluate_run.localize_features(run.config, tmp_path, tmp_path / "empty", tmp_path / "o.json")


# ------------------------------------------------------------------ command line overrides
