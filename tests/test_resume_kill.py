"""Faults of a real training process: kill -9 and resume, and
a corrupt latest checkpoint, each compared with an uninterrupted run of the same seed.

Slow (about 7 minutes on 2 cores): three `python -m launch.train --config=configs/tiny.py`
processes. Each runs on 1 CPU device (no forced host device count), so the runs compare equal.
NaN features are rejected by the data layer: tests/test_data_wtalc.py::test_error_nan_rows.
"""

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from configs import tiny
from gaufuse_jax import evaluate_run

pytestmark = pytest.mark.slow

REPO = pathlib.Path(__file__).resolve().parents[1]
# A checkpoint every 4 epochs (tiny.py: 2): the first one, after epoch 4, follows the memory
# initialisation and the first pseudo-label generation, so a resume must restore both; the
# override also checks that --config.* flags reach the run (config.json, checkpoint steps).
FLAGS = ("--config=configs/tiny.py", "--config.checkpoint_every_epochs=4")
NUM_EPOCHS = tiny.get_config().schedule.num_epochs  # 8
RUN_TIMEOUT_S = 1200


def _command(workdir):
  return [sys.executable, "-m", "launch.train", *FLAGS, f"--workdir={workdir}"]


def _env():
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # conftest forces 2 devices
  env["JAX_PLATFORMS"] = "cpu"
  return env


def _train(workdir) -> subprocess.CompletedProcess:
  proc = subprocess.run(_command(workdir), cwd=REPO, env=_env(), capture_output=True, text=True,
                        timeout=RUN_TIMEOUT_S)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc


def _final(workdir) -> tuple[dict, dict, dict]:
  """(final test metrics from metrics.jsonl, results/test.json, params of the last step)."""
  last = [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()][-1]
  assert last["step"] == NUM_EPOCHS
  metrics = {k: v for k, v in last.items() if k.startswith("test/")}
  results = json.loads((workdir / "results" / "test.json").read_text())
  raw, step = evaluate_run.restore_checkpoint(tiny.get_config(), workdir, "latest")
  assert step == NUM_EPOCHS
  return metrics, results, raw["params"]


def _assert_same_run(workdir, reference):
  metrics, results, params = _final(workdir)
  ref_metrics, ref_results, ref_params = reference
  assert metrics.keys() == ref_metrics.keys()
  np.testing.assert_allclose([metrics[k] for k in ref_metrics],
                             [ref_metrics[k] for k in ref_metrics], rtol=1e-6, atol=1e-6)
  assert results["results"].keys() == ref_results["results"].keys()
  for video, entries in ref_results["results"].items():
    got = results["results"][video]
    assert [e["label"] for e in got] == [e["label"] for e in entries], video
    np.testing.assert_allclose([e["score"] for e in got], [e["score"] for e in entries],
                               rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose([e["segment"] for e in got], [e["segment"] for e in entries],
                               rtol=1e-6, atol=1e-6)
  flat = lambda tree: {"/".join(map(str, k)): v for k, v in _items(tree)}
  got, want = flat(params), flat(ref_params)
  assert got.keys() == want.keys()
  for k in want:
    np.testing.assert_allclose(got[k], want[k], rtol=1e-6, atol=1e-6, err_msg=k)


def _items(tree, prefix=()):
  if isinstance(tree, dict):
    for k, v in tree.items():
      yield from _items(v, prefix + (k,))
  else:
    yield prefix, np.asarray(tree)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
  workdir = tmp_path_factory.mktemp("uninterrupted")
  _train(workdir)
  return workdir, _final(workdir)


def test_config_override_reaches_the_run(uninterrupted):
  workdir, _ = uninterrupted
  config = json.loads((workdir / "config.json").read_text())
  assert config["checkpoint_every_epochs"] == 4 and config["seed"] == 0
  steps = sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())
  assert steps == [4, 8]


def test_sigkill_then_resume_equals_uninterrupted(uninterrupted, tmp_path):
  _, reference = uninterrupted
  workdir = tmp_path / "killed"
  proc = subprocess.Popen(_command(workdir), cwd=REPO, env=_env(), stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
  try:
    first = workdir / "checkpoints" / "4"  # orbax renames a finished save to its step number
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while not first.is_dir() and proc.poll() is None and time.monotonic() < deadline:
      time.sleep(0.2)
    assert proc.poll() is None, "training ended before it could be killed:\n" + proc.stderr.read()
    assert first.is_dir(), "no checkpoint appeared in time"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
  finally:
    if proc.poll() is None:
      proc.kill()
      proc.wait()
    proc.stderr.close()
  assert not (workdir / "results").exists()  # it really died mid-run
  resumed = _train(workdir)
  assert "Resumed from" in resumed.stderr and "at epoch 4" in resumed.stderr
  _assert_same_run(workdir, reference)


def test_corrupt_latest_checkpoint_resumes_from_previous(uninterrupted, tmp_path):
  """The uninterrupted run with its last step (8) garbled: a restart warns, resumes from 4,
  trains epochs 5-8 again and ends with the same model and metrics."""
  source, reference = uninterrupted
  workdir = tmp_path / "corrupt"
  shutil.copytree(source / "checkpoints", workdir / "checkpoints")
  for f in (workdir / "checkpoints" / str(NUM_EPOCHS) / "default").rglob("*"):
    if f.is_file():
      f.write_bytes(b"\x00garbage\xff" * 3)
  resumed = _train(workdir)
  assert f"Cannot restore checkpoint step {NUM_EPOCHS}" in resumed.stderr
  assert "at epoch 4" in resumed.stderr
  _assert_same_run(workdir, reference)
