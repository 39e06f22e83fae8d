"""Evaluating and localizing with a trained run (``gaufuse_jax.evaluate_run``), on the shared
tiny run of conftest.py: checkpoint restore and its errors, tables and plots, new feature files."""

import json
import os

import numpy as np
import pytest

from conftest import NUM_EPOCHS
from gaufuse_jax import evaluate_run
from gaufuse_jax._src import results as results_lib
from gaufuse_jax._src.data.errors import DataError

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
  assert pngs == sorted([f"{first}.png", "map_vs_tiou_train.png"])
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


def _object_array():
  x = np.empty(2, object)
  x[0], x[1] = np.zeros((5, 32)), np.zeros((7, 32))
  return x


FEATURES = r"expected a \.npy file holding one video's \[T >= 2, D = 32\] float features"
BAD_FEATURE_FILES = {  # name: (write the file, the rest of the message)
    "wrong_dim": (lambda f: np.save(f, np.zeros((20, 16), np.float32)),
                  r", found shape \(20, 16\) dtype float32"),
    "one_dim": (lambda f: np.save(f, np.zeros((20,), np.float32)), r", found shape \(20,\)"),
    "strings": (lambda f: np.save(f, np.array([["a"] * 32] * 3)),
                r", found shape \(3, 32\) dtype <U1"),
    "object_array": (lambda f: np.save(f, _object_array(), allow_pickle=True),
                     r", found an object \(pickled\) array, e\.g\. a W-TALC file of all videos"),
    "npz": (lambda f: np.savez(open(f, "wb"), x=np.zeros((5, 32))),
            r", found an \.npz \(zip\) archive"),
    "text": (lambda f: f.write_text("0.1 0.2\n0.3 0.4\n"),
             r", found a file without the \.npy header \(text, or another format\)"),
    "truncated": (lambda f: (np.save(f, np.zeros((50, 32), np.float32)),
                             f.write_bytes(f.read_bytes()[:300])),
                  r", found (an unreadable or truncated file|a file numpy cannot read)"),
}


@pytest.mark.parametrize("kind", sorted(BAD_FEATURE_FILES))
def test_localize_bad_feature_file_names_it(run, tmp_path, kind):
  write, rest = BAD_FEATURE_FILES[kind]
  folder = tmp_path / "features"
  _write_features(folder, ["good"], [run.test_ds.features[0]])
  write(folder / "bad.npy")
  with pytest.raises(DataError, match=rf"bad\.npy: {FEATURES}{rest}"):
    evaluate_run.localize_features(run.config, run.workdir, folder, tmp_path / "out.json")
  assert not (tmp_path / "out.json").exists()


def test_localize_nan_features_names_the_file(run, tmp_path):
  _write_features(tmp_path / "f", ["bad"], [np.full((20, 32), np.nan, np.float32)])
  with pytest.raises(DataError, match=r"bad\.npy: expected finite features, found NaN/inf in 20"):
    evaluate_run.localize_features(run.config, run.workdir, tmp_path / "f", tmp_path / "o.json")


def test_localize_checks_the_output_before_any_work(run, tmp_path, monkeypatch):
  _write_features(tmp_path / "f", ["v"], [run.test_ds.features[0]])
  monkeypatch.setattr(evaluate_run, "restore_checkpoint", None)  # never reached
  with pytest.raises(IsADirectoryError,
                     match=r"--output=.*: expected a file path .*found a folder"):
    evaluate_run.localize_features(run.config, run.workdir, tmp_path / "f", tmp_path)
  (tmp_path / "ro").mkdir(mode=0o500)
  if not os.access(tmp_path / "ro", os.W_OK):  # root may write anywhere
    with pytest.raises(PermissionError, match=r"--output=.*out\.json: cannot write in .*ro"):
      evaluate_run.localize_features(run.config, run.workdir, tmp_path / "f",
                                     tmp_path / "ro" / "sub" / "out.json")


def test_localize_missing_inputs(run, tmp_path):
  (tmp_path / "empty").mkdir()
  with pytest.raises(FileNotFoundError, match="expected a folder of <video>.npy files, found none"):
    evaluate_run.localize_features(run.config, run.workdir, tmp_path / "empty", tmp_path / "o.json")
  with pytest.raises(FileNotFoundError, match="dataset.json not found"):
    evaluate_run.localize_features(run.config, tmp_path, tmp_path / "empty", tmp_path / "o.json")


# ------------------------------------------------------------------ command line overrides
