"""The absl mains: config files and command-line overrides reach ``train_and_evaluate``, user
mistakes end in one message, and the documented path from features to detections works."""

import json
import pathlib
import subprocess
import sys

from configs import tiny
from gaufuse_jax import evaluate_run

REPO = pathlib.Path(__file__).resolve().parents[1]


_DUMP_CONFIG = ("from absl import app; import launch.train as m; "
                "m.train.train_and_evaluate = lambda c, w: print('CONFIG=' + c.to_json()); "
                "app.run(m.main)")


def _launch_train_config(*flags):
  """Runs launch.train's real absl main in a subprocess (its flags stay out of this process)
  with train_and_evaluate replaced by a dump of the config it receives."""
  return subprocess.run([sys.executable, "-c", _DUMP_CONFIG, "--config=configs/tiny.py",
                         "--workdir=/nonexistent", *flags], cwd=REPO, capture_output=True,
                        text=True, timeout=300)


def test_config_overrides_reach_train_and_evaluate():
  proc = _launch_train_config("--config.pseudo.localization.class_threshold=0.2",
                              "--config.schedule.num_epochs=3",
                              "--config.eval.localization.suppression=nms")
  assert proc.returncode == 0, proc.stderr[-2000:]
  line = next(l for l in proc.stdout.splitlines() if l.startswith("CONFIG="))
  got = json.loads(line[len("CONFIG="):])
  want = tiny.get_config()
  want.pseudo.localization.class_threshold = 0.2
  want.schedule.num_epochs = 3
  want.eval.localization.suppression = "nms"
  assert got == json.loads(json.dumps(want.to_dict()))


def test_unknown_config_override_is_rejected():
  proc = _launch_train_config("--config.pseudo.no_such_field=1")
  assert proc.returncode != 0
  assert "no_such_field" in proc.stderr


# ------------------------------------------------------------------ checkpointer faults (unit)


def test_export_features_then_localize(run, tmp_path):
  """The README's path from features to detections, on the embedded data of a fresh clone."""
  proc = subprocess.run(
      [sys.executable, "-m", "launch.export_features", "--config=configs/tiny.py", "--split=test",
       f"--out={tmp_path / 'feats'}"], cwd=REPO, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-2000:]
  assert f"Wrote {len(run.test_ds)} videos of embedded (test, [T, 32] float32)" in proc.stdout
  results = evaluate_run.localize_features(run.config, run.workdir, tmp_path / "feats",
                                           tmp_path / "detections.json")
  assert set(results["results"]) == set(run.test_ds.video_names)
  assert results["external_data"]["details"].startswith(f"features read from {tmp_path}")


def test_user_mistakes_end_in_one_message_and_exit_code_1(tmp_path):
  for args, message in (
      (["launch.train", "--config=configs/tiny.py", "--config.seedd=1", f"--workdir={tmp_path}"],
       "ERROR: command line: no such config field 'seedd' (in --config.seedd). Did you mean "
       "\"seed\""),
      (["launch.train", "--config=configs/tiny.py", "--config.model.foo=1",
        f"--workdir={tmp_path}"],
       "ERROR: command line: no such config field 'foo' (in --config.model.foo)\n"),
      (["launch.train", "--config=configs/thumos14_synth_stpn.py:nope", f"--workdir={tmp_path}"],
       "ERROR: command line: flag --config=configs/thumos14_synth_stpn.py: ValueError: config "
       "argument: expected a method in ('gaufuse', 'backbone'), got 'nope'\n"),
      (["launch.train", "--config=configs/tiny.py", "--config.schedule.num_epochs=0",
        f"--workdir={tmp_path / 'w'}"],
       "ERROR: 1 bad config field(s):\n  config.schedule.num_epochs: expected an integer >= 1"),
      (["launch.evaluate", "--config=configs/tiny.py", f"--workdir={tmp_path / 'none'}"],
       "ERROR: No checkpoint in"),
  ):
    proc = subprocess.run([sys.executable, "-m"] + args, cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 1 and message in proc.stderr, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
  assert not (tmp_path / "w").exists() and not (tmp_path / "none").exists()
