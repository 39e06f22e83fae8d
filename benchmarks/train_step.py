"""Training throughput: snippets per second of the full GauFuse train step (``steps.train_step``)
for the ``configs/thumos14.py`` model shape (I3D D=2048, 20 classes + background) at the
reference batch of 10 videos, on 1 and 2 devices.

Each device count runs in its own process (the host-device count of XLA:CPU is fixed at import):
on a CPU host the second "device" is forced with
``XLA_FLAGS=--xla_force_host_platform_device_count=2``, on a GPU/TPU host the real devices are
used. The step is the heaviest phase of the schedule: memory branch on and Δ pseudo labels in
the loss. Inputs: 10 videos padded to T=512 with seeded lengths in [256, 512] (THUMOS14 training
videos have a median of ~330 snippets), random non-negative features. Each step is blocked on
before the next (as the training loop does); the first 2 steps (compilation) are not timed.

Printed: step time, snippets/s (real snippets, padding excluded) and the ratio to 1 device
measured in the same run.

Run: ``python benchmarks/train_step.py [--steps=10] [--devices=1,2] [--timeout=600]`` (a few
minutes on 2 CPU cores). On this 2-core host the 2-device worker deadlocks in the first
collective step (README "Devices") and is reported as "no result".
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

BATCH, T_PAD, MIN_LEN = 10, 512, 256


def measure(num_devices: int, steps: int) -> dict:
  """Times ``steps`` train steps on ``num_devices`` local devices (in this process)."""
  import jax  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel

  from configs import thumos14  # pylint: disable=import-outside-toplevel
  from gaufuse_jax import inference  # pylint: disable=import-outside-toplevel
  from gaufuse_jax import schedule  # pylint: disable=import-outside-toplevel
  from gaufuse_jax import steps as steps_lib  # pylint: disable=import-outside-toplevel
  from gaufuse_jax import train_state  # pylint: disable=import-outside-toplevel
  from gaufuse_jax.models import rskp  # pylint: disable=import-outside-toplevel

  config = thumos14.get_config()
  config.num_devices = num_devices
  num_classes, dim = 20, config.data.feature_dim
  model = rskp.RSKP(num_classes=num_classes, feature_dim=dim, **config.model)
  tx = train_state.make_optimizer(config)
  state = train_state.create_train_state(
      model, tx, jax.random.PRNGKey(0), num_videos=BATCH, max_snippets=T_PAD, feature_dim=dim,
      num_classes=num_classes, memory_slots=config.memory_slots)
  rng = np.random.default_rng(0)
  state = state.replace(generations=rng.uniform(0, 0.1, state.generations.shape).astype(np.float32))
  lengths = rng.integers(MIN_LEN, T_PAD + 1, BATCH)
  features = np.where(rng.random((BATCH, T_PAD, dim)) < 0.3,
                      rng.exponential(1.0, (BATCH, T_PAD, dim)), 0).astype(np.float32)
  features[np.arange(T_PAD)[None, :] >= lengths[:, None]] = 0
  labels = np.zeros((BATCH, num_classes), np.float32)
  labels[np.arange(BATCH), rng.integers(0, num_classes, BATCH)] = 1
  batch = {"features": features, "valid_length": lengths.astype(np.int32), "labels": labels,
           "video_index": np.arange(BATCH, dtype=np.int32), "video_mask": np.ones(BATCH, bool),
           "offset": np.zeros(BATCH, np.int32)}
  batch = {k: v.reshape((num_devices, BATCH // num_devices) + v.shape[1:]) for k, v in batch.items()}
  plan = schedule.epoch_plan(config.schedule, config.schedule.num_epochs - 1)  # Δ labels, memory
  hparams = inference.replicate(plan.step_hparams(), config)
  step = inference.pmap(lambda s, b, h: steps_lib.train_step(
      s, b, h, model=model, tx=tx, use_memory=True, pseudo_frame_coef=config.pseudo.frame_coef),
                        config, donate_argnums=(0,))
  rstate = inference.replicate(state, config)
  times = []
  for i in range(steps + 2):
    t0 = time.perf_counter()
    rstate, metrics = jax.block_until_ready(step(rstate, batch, hparams))
    if i >= 2:
      times.append(time.perf_counter() - t0)
  loss = float(np.asarray(metrics["loss"])[0])
  if not np.isfinite(loss):
    raise FloatingPointError(f"train step loss is {loss}")
  seconds = float(np.median(times))
  return {"devices": num_devices, "device_kind": jax.devices()[0].device_kind,
          "platform": jax.default_backend(), "step_s": seconds,
          "snippets_per_s": float(lengths.sum()) / seconds}


def _run_worker(num_devices: int, steps: int, timeout: float) -> dict | None:
  """``measure`` in a fresh process with ``num_devices`` host devices forced on CPU; None when
  it does not finish within ``timeout`` seconds (forced XLA:CPU host devices can deadlock in
  collectives on a small host, see README "Devices")."""
  env = dict(os.environ)
  env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") +
                      f" --xla_force_host_platform_device_count={num_devices}"
                      " --xla_cpu_enable_concurrency_optimized_scheduler=false")
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  try:
    out = subprocess.run(
        [sys.executable, __file__, "--worker", str(num_devices), "--steps", str(steps)],
        env=env, cwd=root, capture_output=True, text=True, timeout=timeout, check=False)
  except subprocess.TimeoutExpired:
    return None
  if out.returncode:
    raise RuntimeError(f"{num_devices}-device worker failed:\n{out.stderr[-3000:]}")
  return json.loads(out.stdout.strip().splitlines()[-1])


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--steps", type=int, default=10, help="timed steps per device count")
  parser.add_argument("--devices", default="1,2", help="comma-separated device counts")
  parser.add_argument("--timeout", type=float, default=600, help="seconds per device count")
  parser.add_argument("--worker", type=int, default=0, help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.worker:
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    print(json.dumps(measure(args.worker, args.steps)))
    return
  counts = [int(d) for d in args.devices.split(",")]
  print(f"GauFuse train step, thumos14 model shape (D=2048, C=20+1), batch {BATCH} padded to "
        f"T={T_PAD}; host {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs")
  rows = [_run_worker(n, args.steps, args.timeout) for n in counts]
  base = rows[0]["snippets_per_s"] if rows[0] else float("nan")
  print(f"{'devices':>7} {'kind':>14} {'step (s)':>9} {'snippets/s':>11} {'vs ' + str(counts[0]):>7}")
  for n, r in zip(counts, rows):
    if r is None:
      print(f"{n:>7} no result within {args.timeout:g} s (deadlocked or too slow)")
      continue
    print(f"{r['devices']:>7} {r['device_kind'][:14]:>14} {r['step_s']:>9.3f} "
          f"{r['snippets_per_s']:>11.0f} {r['snippets_per_s'] / base:>6.2f}x")


if __name__ == "__main__":
  main()
