"""One training epoch, one evaluation pass and one pseudo-label generation on the real THUMOS14
lengths: ours against the reference way, both measured in the same run.

Data: semi-synthetic THUMOS14 (``gaufuse_jax.make_semisynthetic_dataset``): the real 200
training / 212 test videos of ``../shared/data/thumos14`` with their lengths (14-2,615 snippets),
generated features of dimension D (``--dims``, default 512; 2048 is the I3D size).

Ours: the library as ``train_and_evaluate`` runs it: the exact low-rank random walk
(``models.rskp.random_walk``); a training step's 10 videos each padded to its own length bucket
and their gradients accumulated before one Adam update (``config.micro_batch_size = 1``);
evaluation and pseudo labels on batches of 10 videos of similar length.

The reference way, written in JAX here: the authors' ``model/main_branch.py:random_walk`` (a
dense ``[T, T]`` solve per video and branch) and plain autodiff
(``RSKP(low_rank_backward=False)``), one whole video at a time, gradients accumulated over 10
videos, one update; evaluation and pseudo labels one video at a time. Its videos are padded to
the length buckets of ``config.bucket_growth`` (ours: the same for training,
``config.inference_buckets`` sizes fitted to the sorted batches for inference) so that it does
not compile one program per distinct length; that makes it slightly faster than the authors'
code would be in JAX, never slower.

Phases (what the schedule runs most): the training epoch is the full step (memory branch on,
Δ pseudo labels in the loss); evaluation localizes the 212 test videos with Gaussian fusion;
the generation makes the LinPro pseudo labels of the 200 training videos. Every program is
compiled in a first, untimed pass (the number of programs and their compile seconds are
printed), then the pass is timed; each measurement runs in its own process. Printed per phase:
seconds, snippets/s (real snippets), padding overhead (padded / real snippets) and the speed-up
of ours over the reference way.

Run: ``python benchmarks/train_epoch.py [--dims=512,2048] [--phases=train,eval,pseudo]``
(~10 minutes on 2 CPU cores at D=512). Figures: the Performance section of README.md.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import pathlib
import platform
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from configs import thumos14_synth  # pylint: disable=wrong-import-position
from gaufuse_jax._src import compilation  # pylint: disable=wrong-import-position
from gaufuse_jax._src import devices
from gaufuse_jax._src import input_pipeline
from gaufuse_jax._src import programs
from gaufuse_jax._src import schedule as schedule_lib  # pylint: disable=wrong-import-position
from gaufuse_jax._src import steps  # pylint: disable=wrong-import-position
from gaufuse_jax._src import train_state  # pylint: disable=wrong-import-position
from gaufuse_jax._src.data import synthetic  # pylint: disable=wrong-import-position
from gaufuse_jax._src.models import rskp  # pylint: disable=wrong-import-position
from gaufuse_jax._src.models import snippets  # pylint: disable=wrong-import-position

ANNOTATIONS = (pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "thumos14"
               / "Thumos14reduced-Annotations")


def dense_random_walk(x, mask, tokens, token_mask, *, walk_weight, scale):
  """The authors' ``random_walk``: ``(1 - w) (I - w^2 z^T z_hat)^{-1} (w z^T y + x)``, dense."""
  w = walk_weight
  z, z_hat = rskp.token_assignment(tokens, token_mask, x, mask, scale=scale)
  affinity = jnp.einsum("bkt,bks->bts", z, z_hat)
  rhs = w * jnp.einsum("bkt,bkd->btd", z, tokens) + snippets.as_snippets(x).array()
  return (1.0 - w) * jnp.linalg.solve(jnp.eye(x.shape[1], dtype=x.dtype) - w**2 * affinity, rhs)


def _config(dim, *, batch_size):
  c = thumos14_synth.get_config()
  c.data.feature_dim = dim
  c.max_snippets = 0  # whole videos, as the authors train
  c.batch_size = batch_size
  c.num_devices = 1
  # Caps that hold every THUMOS14 video at once, so that the timed pass compiles nothing.
  c.eval.localization.max_proposals, c.eval.localization.max_instances = 2048, 256
  c.pseudo.localization.max_proposals, c.pseudo.localization.max_instances = 2048, 256
  return c


def _state(config, model, train_ds, bucket_sizes):
  """A train state as in the pseudo-label phase: full memory bank, two label generations."""
  tx = train_state.make_optimizer(config)
  state = train_state.create_train_state(
      model, tx, jax.random.PRNGKey(0), num_videos=len(train_ds), max_snippets=max(bucket_sizes),
      feature_dim=train_ds.feature_dim, num_classes=train_ds.num_classes,
      memory_slots=config.memory_slots)
  rng = np.random.default_rng(0)
  memory = state.memory.replace(
      tokens=np.abs(rng.normal(size=state.memory.tokens.shape)).astype(np.float32),
      scores=rng.uniform(0.1, 1.0, state.memory.scores.shape).astype(np.float32))
  generations = rng.uniform(0, 0.1, state.generations.shape).astype(np.float32)
  return tx, state.replace(memory=memory, generations=generations)


def _snippets(batch):
  return int(batch["valid_length"].sum()), int(np.prod(batch["features"].shape[:3]))


def train_epoch(config, model, train_ds, bucket_sizes):
  """Seconds of one epoch of the full step and its (real, padded) snippets; compiles first."""
  tx, state = _state(config, model, train_ds, bucket_sizes)
  rstate = devices.replicate(state, config)
  plan = schedule_lib.epoch_plan(config.schedule, config.schedule.num_epochs - 1)
  hparams = devices.replicate(plan.step_hparams(), config)
  init = devices.pmap(functools.partial(steps.init_accumulator, model=model), config)
  accumulate = devices.pmap(functools.partial(
      steps.accumulate_step, model=model, use_memory=True,
      pseudo_frame_coef=config.pseudo.frame_coef,
      max_labels=max(int(train_ds.labels.sum(1).max()), 1)), config, donate_argnums=(1,))
  apply = devices.pmap(functools.partial(steps.apply_step, tx=tx), config, donate_argnums=(0,))
  out = []
  for _ in range(2):  # compile, then time
    t0, real, padded = time.perf_counter(), 0, 0
    iterator, _ = input_pipeline.train_batches(config, train_ds, epoch=0, bucket_sizes=bucket_sizes)
    for micro_batches in iterator:
      acc = init(rstate)
      for batch in micro_batches:
        acc = jax.block_until_ready(accumulate(rstate, acc, batch, hparams))
        r, p = _snippets(batch)
        real, padded = real + r, padded + p
      rstate, metrics = jax.block_until_ready(apply(rstate, acc, hparams))
    if not np.isfinite(np.asarray(metrics["loss"])).all():
      raise FloatingPointError("non-finite training loss")
    out.append((time.perf_counter() - t0, real, padded))
  return out


def _inference_passes(config, dataset, bucket_sizes, run_batch):
  """Two passes of ``run_batch`` over the sorted batches of ``dataset`` (compile, then time):
  ``[(seconds, real snippets, padded snippets)] * 2``."""
  out = []
  for _ in range(2):
    t0, real, padded = time.perf_counter(), 0, 0
    iterator, _ = input_pipeline.batches(config, dataset, bucket_sizes=bucket_sizes)
    for batch in iterator:
      run_batch(batch)
      r, p = _snippets(batch)
      real, padded = real + r, padded + p
    out.append((time.perf_counter() - t0, real, padded))
  return out


def evaluation_pass(config, model, test_ds, bucket_sizes):
  """Seconds of one localization pass over ``test_ds`` (mAP computed untimed)."""
  _, state = _state(config, model, test_ds, bucket_sizes)
  params = devices.replicate(state.params, config)
  p_eval = programs.make_eval_step(config, model)
  return _inference_passes(config, test_ds, bucket_sizes, lambda batch: p_eval(params, batch))


def generation_pass(config, model, train_ds, bucket_sizes):
  """Seconds of one pseudo-label generation (fusion + LinPro) over ``train_ds``."""
  _, state = _state(config, model, train_ds, bucket_sizes)
  params = devices.replicate(state.params, config)
  p_pseudo = programs.make_pseudo_label_step(config, model)
  temps = np.full((1,), 0.03, np.float32)

  def run_batch(batch):
    labels, _ = p_pseudo(params, batch, temps, None)
    if not np.isfinite(labels).all():
      raise FloatingPointError("non-finite pseudo labels")

  return _inference_passes(config, train_ds, bucket_sizes, run_batch)


PHASES = {"train": (train_epoch, "train"), "eval": (evaluation_pass, "test"),
          "pseudo": (generation_pass, "train")}
WAYS = ("ours", "reference way")


def measure(phase: str, way: str, dim: int) -> dict:
  """One (phase, way) in this process: compile pass, then the timed pass."""
  compilations = compilation.CompilationCounter()
  train_ds, test_ds = synthetic.make_semisynthetic_dataset(ANNOTATIONS, feature_dim=dim)
  fn, split = PHASES[phase]
  dataset = train_ds if split == "train" else test_ds
  ours = way == "ours"
  # Both ways accumulate 10 videos per update; inference: batches of 10 vs one video at a time.
  config = _config(dim, batch_size=10 if ours or phase == "train" else 1)
  crop = phase == "train"
  datasets = (train_ds,) if crop else (train_ds, test_ds)
  # The reference way infers one video at a time: the training ladder pads it least.
  bucket_sizes = input_pipeline.bucket_sizes(config, *datasets, crop=crop or not ours)
  model = programs.build_model(config, dataset).clone(
      walk=rskp.random_walk if ours else dense_random_walk, low_rank_backward=ours)
  compilations.take()  # data and config set-up
  (_, _, _), (seconds, real, padded) = fn(config, model, dataset, bucket_sizes)
  count, compile_s = compilations.take()
  return {"seconds": seconds, "real": real, "padded": padded, "compiles": count,
          "compile_s": compile_s, "buckets": list(bucket_sizes), "videos": len(dataset)}


def _worker(phase, way, dim, timeout):
  """``measure`` in a fresh process (XLA:CPU's compiled code is never freed; one process per
  measurement keeps the programs of one from crowding out the next)."""
  try:
    out = subprocess.run([sys.executable, __file__, "--worker", f"{phase},{way},{dim}"],
                         capture_output=True, text=True, timeout=timeout, check=False)
  except subprocess.TimeoutExpired:
    return None
  if out.returncode:
    raise RuntimeError(f"{phase} / {way} / D={dim} failed:\n{out.stderr[-3000:]}")
  return json.loads(out.stdout.strip().splitlines()[-1])


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--dims", default="512", help="comma-separated feature dimensions")
  parser.add_argument("--phases", default="train,eval,pseudo", help="of " + ",".join(PHASES))
  parser.add_argument("--timeout", type=float, default=1200, help="seconds per measurement")
  parser.add_argument("--worker", default="", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.worker:
    phase, way, dim = args.worker.split(",")
    print(json.dumps(measure(phase, way, int(dim))))
    return
  if not ANNOTATIONS.is_dir():
    sys.exit(f"benchmarks/train_epoch.py: needs the THUMOS14 annotations at {ANNOTATIONS}")
  phases = args.phases.split(",")
  unknown = set(phases) - set(PHASES)
  if unknown:
    sys.exit(f"--phases: unknown {sorted(unknown)}; expected some of {sorted(PHASES)}")
  print(f"THUMOS14 lengths (200 training / 212 test videos), 10 videos per update; "
        f"{jax.devices()[0].device_kind} ({jax.default_backend()}), "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs")
  for dim in (int(d) for d in args.dims.split(",")):
    print(f"\nD={dim}")
    print(f"{'phase':<7} {'way':<14} {'seconds':>8} {'snippets/s':>11} {'padding':>8} "
          f"{'programs':>9} {'compile s':>9} {'speed-up':>9}")
    for phase in phases:
      ours = None
      for way in WAYS:
        r = _worker(phase, way, dim, args.timeout)
        if r is None:
          print(f"{phase:<7} {way:<14} no result within {args.timeout:g} s", flush=True)
          continue
        ours = r["seconds"] if way == "ours" else ours
        speedup = "" if way == "ours" or ours is None else f"{r['seconds'] / ours:.2f}x"
        print(f"{phase:<7} {way:<14} {r['seconds']:>8.2f} {r['real'] / r['seconds']:>11.0f} "
              f"{r['padded'] / r['real']:>8.3f} {r['compiles']:>9d} {r['compile_s']:>9.1f} "
              f"{speedup:>9}", flush=True)


if __name__ == "__main__":
  main()
