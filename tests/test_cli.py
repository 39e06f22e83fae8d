"""The absl mains: config files and command-line overrides reach ``train_and_evaluate``."""

import json
import pathlib
import subprocess
import sys


from configs import tiny

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
