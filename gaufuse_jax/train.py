"""GauFuse training and evaluation: ``train_and_evaluate(config, workdir)``.

Reads top to bottom: setup, data, model and state, resume, compiled steps, the epoch loop
(pseudo-label generations, training, memory initialisation, evaluation, checkpoints), and the
final evaluation with its outputs (mAP table, ``results/<split>.json``, ``metrics.jsonl``).
"""

from __future__ import annotations

import functools
import pathlib
import time

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from gaufuse_jax._src import checkpointing
from gaufuse_jax._src import compilation
from gaufuse_jax._src import generation
from gaufuse_jax._src import devices
from gaufuse_jax._src import evaluation_loop
from gaufuse_jax._src import programs
from gaufuse_jax._src import results
from gaufuse_jax._src import input_pipeline
from gaufuse_jax._src import metric_writers
from gaufuse_jax._src import schedule as schedule_lib
from gaufuse_jax._src import steps
from gaufuse_jax._src import train_state as train_state_lib


class NonFiniteLossError(FloatingPointError):
  """Training produced a NaN/inf loss; the last good checkpoint is kept."""


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains the GauFuse model under ``config`` in ``workdir`` (resuming a run found there) and
  returns the final test metrics.

  Raises:
    NonFiniteLossError: when a training loss is NaN/inf (the last good checkpoint is kept).
    checkpointing.CheckpointError: when ``workdir`` holds checkpoints none of which restores.
    ValueError: for an inconsistent config (named field).
  """
  # ------------------------------------------------------------------ setup
  compiled = compilation.CompilationCounter()
  run_start = time.time()
  if config.distributed and not jax.distributed.is_initialized():
    jax.distributed.initialize()  # arguments auto-detected (TPU pods, Slurm, Open MPI)
  schedule_lib.validate_schedule(config.schedule)
  workdir = pathlib.Path(workdir)
  is_main = jax.process_index() == 0
  if is_main:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.json").write_text(config.to_json_best_effort(indent=2))
  writer = metric_writers.MetricWriter(workdir)
  ndev = len(devices.local_devices(config))
  if config.batch_size % ndev:
    raise ValueError(f"config.batch_size={config.batch_size} is not divisible by the "
                     f"{ndev} local devices")

  # ------------------------------------------------------------------ data
  train_ds, test_ds = input_pipeline.load_datasets(config.data)
  if is_main:
    results.write_run_info(workdir, train_ds)
  bucket_sizes = input_pipeline.bucket_sizes(config, train_ds, test_ds)  # whole videos
  crop_bucket_sizes = input_pipeline.bucket_sizes(config, train_ds, crop=True)  # training crops
  logging.info("Data %s: %d train / %d test videos, %d classes, D=%d, buckets %s (training %s)",
               train_ds.name, len(train_ds), len(test_ds), train_ds.num_classes,
               train_ds.feature_dim, bucket_sizes, crop_bucket_sizes)

  # ------------------------------------------------------------------ model and state
  model = programs.build_model(config, train_ds)
  tx = train_state_lib.make_optimizer(config)
  state = train_state_lib.create_train_state(
      model, tx, jax.random.PRNGKey(config.seed), num_videos=len(train_ds),
      max_snippets=max(bucket_sizes) + (int(train_ds.lengths.max()) if config.max_snippets else 0),
      feature_dim=train_ds.feature_dim,
      num_classes=train_ds.num_classes, memory_slots=config.memory_slots)

  # ------------------------------------------------------------------ resume
  ckpt = checkpointing.Checkpointer(workdir / "checkpoints", best_metric=config.best_metric,
                                    keep_every=config.keep_checkpoint_every_epochs)
  restored, _ = ckpt.restore(state)
  if restored is not None:
    state = restored
    logging.info("Resumed from %s at epoch %d.", ckpt.directory, int(state.epoch))
  start_epoch = int(state.epoch)
  rstate = devices.replicate(state, config)
  del state

  # ------------------------------------------------------------------ compiled steps
  # An optimizer step: an empty accumulator, the gradients of its micro-batches (each padded to
  # its own length), one update.
  p_init_acc = devices.pmap(steps.init_accumulator, config)
  p_accumulate = {
      use_memory: devices.pmap(
          functools.partial(steps.accumulate_step, model=model, use_memory=use_memory,
                            pseudo_frame_coef=config.pseudo.frame_coef,
                            max_labels=max(int(train_ds.labels.sum(1).max()), 1)),
          config, donate_argnums=(1,))
      for use_memory in (False, True)}
  p_apply = devices.pmap(functools.partial(steps.apply_step, tx=tx), config,
                           donate_argnums=(0,))
  p_memory_init = devices.pmap(functools.partial(steps.memory_init_step, model=model), config)
  p_eval = programs.make_eval_step(config, model)

  p_pseudo = programs.make_pseudo_label_step(config, model)
  dropped = {"pseudo": 0, "test": 0}  # proposals + instances the caps dropped (grow_caps off)

  # ------------------------------------------------------------------ the epoch loop
  num_epochs = config.schedule.num_epochs
  last_metrics, last_detections = {}, None
  for epoch in range(start_epoch, num_epochs):
    t0 = time.time()
    plan = schedule_lib.epoch_plan(config.schedule, epoch)
    if plan.generation_temperature is not None:  # a new generation of pseudo labels
      generations = jax.device_get(rstate.generations[0])
      labels, stats = generation.generate_dataset_pseudo_labels(
          config, p_pseudo, rstate.params, train_ds, epoch=epoch,
          temperature=plan.generation_temperature, bucket_sizes=bucket_sizes,
          num_snippets=generations.shape[2])
      if not np.all(np.isfinite(labels)):
        raise NonFiniteLossError(f"pseudo-label generation at epoch {epoch} produced NaN/inf")
      dropped["pseudo"] += stats["proposals_dropped"] + stats["instances_dropped"]
      logging.info("Pseudo labels @%d (T=%g): %d fused instances, %d LP fallbacks; caps "
                   "max_proposals=%d, max_instances=%d, dropped %d proposals, %d instances.",
                   epoch, plan.generation_temperature, stats["instances"],
                   stats["lp_fallbacks"], stats["max_proposals"], stats["max_instances"],
                   stats["proposals_dropped"], stats["instances_dropped"])
      writer.write(epoch, {f"pseudo/{k}": v for k, v in stats.items()})
      rstate = rstate.replace(  # (latest, previous): the Δ labels' two generations
          generations=devices.replicate(np.stack([labels, generations[0]]), config),
          num_generations=rstate.num_generations + 1)
    hparams = devices.replicate(plan.step_hparams(), config)
    sums = {}
    batches, total = input_pipeline.train_batches(config, train_ds, epoch=epoch,
                                             bucket_sizes=crop_bucket_sizes)
    epoch_name = f"epoch {epoch + 1}/{num_epochs}"
    for micro_batches in input_pipeline.progress(batches, total, epoch_name):
      acc = p_init_acc(rstate)
      for batch in micro_batches:
        # Wait for every device before the next call: queued collective steps deadlock XLA:CPU.
        acc = jax.block_until_ready(p_accumulate[plan.use_memory](rstate, acc, batch, hparams))
      rstate, metrics = jax.block_until_ready(p_apply(rstate, acc, hparams))
      metrics = devices.unreplicate((metrics))
      if not np.isfinite(metrics["loss"]):
        good = ckpt.steps()
        raise NonFiniteLossError(
            f"Non-finite loss {metrics['loss']} at epoch {epoch}, step {int(rstate.step[0])}. "
            f"Training stopped; the last good checkpoint is "
            f"{ckpt.directory / str(good[-1]) if good else 'none (no checkpoint yet)'}.")
      for k, v in metrics.items():
        sums[k] = sums.get(k, 0.0) + float(v)
    if plan.init_memory_after:
      rstate = rstate.replace(memory=generation.fill_memory_bank(
          config, p_memory_init, rstate.memory, rstate.params, train_ds,
          bucket_sizes=bucket_sizes))
    rstate = rstate.replace(epoch=devices.replicate(jnp.int32(epoch + 1), config))
    n = max(sums.pop("num_videos", 0.0), 1.0)
    scalars = {f"train/{k}": v / n for k, v in sums.items()}
    num_programs, compile_seconds = compiled.peek()  # since the start: bounded, not per epoch
    scalars.update({"lr": plan.learning_rate, "epoch_seconds": time.time() - t0,
                    "compiled_programs": num_programs, "compile_seconds": compile_seconds})
    logging.info("epoch %d/%d: loss %.4f (%s) lr %.3g, %.1fs", epoch + 1, num_epochs,
                 scalars["train/loss"],
                 ", ".join(f"{k[6:]} {v:.3f}" for k, v in scalars.items()
                           if k.startswith("train/") and k != "train/loss"),
                 plan.learning_rate, scalars["epoch_seconds"])
    done = epoch + 1
    eval_now = done == num_epochs or (config.eval.every_epochs and
                                      done % config.eval.every_epochs == 0)
    if eval_now:
      last_metrics, last_detections = evaluation_loop.evaluate(
          config, rstate.params, test_ds, p_eval=p_eval, bucket_sizes=bucket_sizes)
      scalars.update({f"test/{k}": v for k, v in last_metrics.items()})
      dropped["test"] += last_metrics["proposals_dropped"] + last_metrics["instances_dropped"]
      logging.info("epoch %d: %s %.2f, cmAP %.2f (dropped %d proposals, %d instances)", done,
                   config.best_metric, last_metrics[config.best_metric], last_metrics["cmAP"],
                   last_metrics["proposals_dropped"], last_metrics["instances_dropped"])
    writer.write(done, scalars)
    if done == num_epochs or done % config.checkpoint_every_epochs == 0:
      ckpt.save(done, devices.unreplicate(rstate),
                last_metrics if eval_now else None)

  # ------------------------------------------------------------------ final outputs
  if last_detections is None:  # resumed a finished run, or the last epoch was not evaluated
    last_metrics, last_detections = evaluation_loop.evaluate(
        config, rstate.params, test_ds, p_eval=p_eval, bucket_sizes=bucket_sizes)
  if is_main:
    results.write_outputs(workdir, test_ds, last_metrics, last_detections)
  num_programs, compile_seconds = compiled.peek()
  logging.info("Run done in %.0f s; it compiled %d XLA programs in %.0f s.",
               time.time() - run_start, num_programs, compile_seconds)
  if any(dropped.values()):
    logging.warning(
        "This run dropped %d proposals / instances in pseudo-label generations and %d in "
        "evaluations (config.grow_caps=False; see metrics.jsonl pseudo/*_dropped and "
        "test/*_dropped): its results are not the authors' post-processing.",
        dropped["pseudo"], dropped["test"])
  writer.close()
  ckpt.close()
  return last_metrics
