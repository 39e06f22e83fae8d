"""Multi-process training: two processes on localhost act as two hosts (1 CPU device each).

Both run ``tests/distributed_worker.py`` (``train_and_evaluate`` on conftest's shared tiny
run with ``config.distributed=True``) in ONE workdir, as pod workers share storage. pmap spans
both processes, each feeds its own shard of the videos, and the pseudo labels and detections
are gathered across them. About a minute on 2 cores (mostly compilation, done by both
processes at once): in the long run (``pytest -m slow``), which keeps the default run under 10
minutes.
"""

import json
import os
import pathlib
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

import conftest
import distributed_worker
from gaufuse_jax._src import checkpointing
from gaufuse_jax._src import devices
from gaufuse_jax._src import evaluation_loop
from gaufuse_jax._src import programs
from gaufuse_jax._src import input_pipeline

pytestmark = pytest.mark.slow

WORKER = pathlib.Path(distributed_worker.__file__)
TIMEOUT_S = 240
STEPS = tuple(range(1, conftest.NUM_EPOCHS + 1))


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


@pytest.fixture(scope="module")
def two_hosts(tmp_path_factory):
  """Runs both workers; kills both and fails with their log tails when one fails or hangs."""
  root = tmp_path_factory.mktemp("distributed")
  workdir, out = root / "workdir", root / "out"
  out.mkdir()
  # One CPU device per process; the collectives between processes go through gloo.
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=conftest.CPU_FLAGS)
  port = _free_port()
  logs = [root / f"log_{i}.txt" for i in range(2)]
  procs = []
  for i in range(2):
    with logs[i].open("w") as log:
      procs.append(subprocess.Popen(
          [sys.executable, str(WORKER), str(port), str(i), str(workdir), str(out)],
          env=env, stdout=log, stderr=subprocess.STDOUT))
  deadline = time.monotonic() + TIMEOUT_S
  try:
    while time.monotonic() < deadline and any(p.poll() is None for p in procs):
      if any(p.returncode not in (None, 0) for p in procs):
        break  # the other one would wait for it forever in a collective
      time.sleep(1.0)
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
      p.wait()
  if any(p.returncode for p in procs):
    tails = "\n".join(f"--- process {i} (rc {p.returncode}):\n"
                      + "\n".join(logs[i].read_text(errors="replace").splitlines()[-30:])
                      for i, p in enumerate(procs))
    pytest.fail(f"distributed workers failed or timed out after {TIMEOUT_S} s:\n{tails}")
  return workdir, out


def _load(path):
  with np.load(path) as f:
    return {k: f[k] for k in f}


def test_processes_end_every_epoch_with_the_same_state(two_hosts):
  """Parameters and pseudo labels are bit-identical on both processes at every checkpoint."""
  _, out = two_hosts
  for step in STEPS:
    first, second = _load(out / f"state_0_{step}.npz"), _load(out / f"state_1_{step}.npz")
    assert first.keys() == second.keys() and len(first) > 2
    for k in first:
      np.testing.assert_array_equal(first[k], second[k], err_msg=f"{k} after epoch {step}")


def test_pseudo_labels_of_both_shards_reach_both_processes(two_hosts):
  """Each process labels its own shard (unshuffled, 4 per process per step: process 0 gets
  videos 0-3 and 8-11, process 1 videos 4-7); after the gather both hold all of them (equal
  states are checked above)."""
  _, out = two_hosts
  labels = _load(out / f"state_0_{STEPS[-1]}.npz")["generations"]  # [2, V, T, C+1]
  assert labels.shape[:2] == (2, 12)
  labelled = labels.reshape(2, 12, -1).max(-1) > 0
  assert labelled[:, [0, 1, 2, 3, 8, 9, 10, 11]].any(1).all()
  assert labelled[:, 4:8].any(1).all()


def test_only_process_0_writes_the_run_files(two_hosts):
  workdir, out = two_hosts
  written = [json.loads((out / f"writes_{i}.json").read_text()) for i in range(2)]
  assert written[1] == []
  assert {"config.json", "dataset.json", "metrics.jsonl", "results/test.json",
          "results/test.md"} <= set(written[0])
  assert not list(workdir.glob("checkpoints/*/*/ocdbt.process_1"))
  assert list(workdir.glob(f"checkpoints/{STEPS[-1]}/*/ocdbt.process_0"))
  rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in rows if "train/loss" in r] == list(STEPS)
  assert [r["step"] for r in rows if "pseudo/instances" in r] == [1, 2]


def test_evaluation_covers_both_shards_and_matches_one_process(two_hosts):
  """Both processes return the metrics of the whole test set (8 videos: process 0 localizes
  0-3, process 1 4-7): those of one process evaluating the saved final parameters alone."""
  workdir, out = two_hosts
  metrics = [json.loads((out / f"metrics_{i}.json").read_text()) for i in range(2)]
  assert metrics[0] == metrics[1]
  last = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()][-1]
  assert last["step"] == STEPS[-1] and last["test/cmAP"] == pytest.approx(metrics[0]["cmAP"])

  config = distributed_worker.distributed_config()
  ckpt = checkpointing.Checkpointer(workdir / "checkpoints", best_metric=config.best_metric)
  state, step = ckpt.restore()
  ckpt.close()
  assert step == STEPS[-1]
  saved = {jax.tree_util.keystr(k): v
           for k, v in jax.tree_util.tree_flatten_with_path(state["params"])[0]}
  in_memory = _load(out / f"state_1_{STEPS[-1]}.npz")
  del in_memory["generations"]
  assert saved.keys() == in_memory.keys()
  for k, v in saved.items():
    np.testing.assert_array_equal(v, in_memory[k], err_msg=k)

  train_ds, test_ds = input_pipeline.load_datasets(config.data)
  assert len(test_ds) == 8
  model = programs.build_model(config, train_ds)
  alone, detections = evaluation_loop.evaluate(
      config, devices.replicate(state["params"], config), test_ds,
      p_eval=programs.make_eval_step(config, model), bucket_sizes=tuple(config.bucket_sizes))
  assert alone == pytest.approx(metrics[0], abs=1e-6)
  counts = np.bincount(detections["video"], minlength=len(test_ds))
  assert counts[:4].sum() > 0 and counts[4:].sum() > 0
  results = json.loads((workdir / "results" / "test.json").read_text())["results"]
  assert [len(results[name]) for name in test_ds.video_names] == counts.tolist()
