"""GauFuse training and evaluation: ``train_and_evaluate(config, workdir)``.

``train_and_evaluate`` reads top to bottom: setup, data, model and state, resume, compiled steps,
the epoch loop (a pseudo-label generation where the schedule has one, the epoch's optimizer
steps, memory initialisation after the warm-up, evaluation, checkpoints), and the final
evaluation with its outputs (mAP table, ``results/<split>.json``, ``metrics.jsonl``). The three
phases of an epoch are the functions above it.
"""

from __future__ import annotations

import pathlib
import time

from absl import logging
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from gaufuse_jax._src import checkpointing
from gaufuse_jax._src import compilation
from gaufuse_jax._src import config_validation
from gaufuse_jax._src import generation
from gaufuse_jax._src import devices
from gaufuse_jax._src import evaluation_loop
from gaufuse_jax._src import programs
from gaufuse_jax._src import results
from gaufuse_jax._src import run_directory
from gaufuse_jax._src import input_pipeline
from gaufuse_jax._src import metric_writers
from gaufuse_jax._src import schedule as schedule_lib
from gaufuse_jax._src import train_state as train_state_lib


class NonFiniteLossError(FloatingPointError):
  """Training produced a NaN/inf loss; the last good checkpoint is kept."""


def new_generation(config, p_pseudo, rstate, train_ds, *, epoch, temperature, bucket_sizes,
                   writer):
  """A generation of pseudo labels for every training video (paper §3.2) by the current model at
  fusion ``temperature``; it becomes the latest of the state's two generations (the Δ labels'
  pair, paper §3.3). Returns ``(rstate, proposals and instances the caps dropped)``.

  Raises:
    NonFiniteLossError: labels with NaN/inf.
  """
  generations = jax.device_get(rstate.generations[0])
  labels, stats = generation.generate_dataset_pseudo_labels(
      config, p_pseudo, rstate.params, train_ds, epoch=epoch, temperature=temperature,
      bucket_sizes=bucket_sizes, num_snippets=generations.shape[2])
  if not np.all(np.isfinite(labels)):
    raise NonFiniteLossError(f"pseudo-label generation at epoch {epoch} produced NaN/inf")
  logging.info("Pseudo labels @%d (T=%g): %d fused instances, %d LP fallbacks; caps "
               "max_proposals=%d, max_instances=%d, dropped %d proposals, %d instances.",
               epoch, temperature, stats["instances"], stats["lp_fallbacks"],
               stats["max_proposals"], stats["max_instances"], stats["proposals_dropped"],
               stats["instances_dropped"])
  if stats["instances"] and not stats["labelled_snippets"]:
    logging.warning("Pseudo labels @%d: %d fused instances but every label is 0 (%d LP "
                    "fallbacks): this generation teaches nothing.", epoch, stats["instances"],
                    stats["lp_fallbacks"])
  writer.write(epoch, {f"pseudo/{k}": v for k, v in stats.items()})
  rstate = rstate.replace(  # (latest, previous)
      generations=devices.replicate(np.stack([labels, generations[0]]), config),
      num_generations=rstate.num_generations + 1)
  return rstate, stats["proposals_dropped"] + stats["instances_dropped"]


def train_epoch(config, train_steps, rstate, train_ds, plan, *, epoch, bucket_sizes, ckpt):
  """The optimizer steps of one epoch (``plan``: its learning rate, loss weights, memory use).
  Returns ``(rstate, {"train/<loss term>": mean per video})``.

  Raises:
    NonFiniteLossError: a NaN/inf loss (names the last good checkpoint of ``ckpt``).
  """
  hparams = devices.replicate(plan.step_hparams(), config)
  sums = {}
  batches, total = input_pipeline.train_batches(config, train_ds, epoch=epoch,
                                                bucket_sizes=bucket_sizes)
  name = f"epoch {epoch + 1}/{config.schedule.num_epochs}"
  for micro_batches in input_pipeline.progress(batches, total, name):
    acc = train_steps.init_accumulator(rstate)
    for batch in micro_batches:
      # Wait for every device before the next call: queued collective steps deadlock XLA:CPU.
      acc = jax.block_until_ready(
          train_steps.accumulate[plan.use_memory](rstate, acc, batch, hparams))
    rstate, metrics = jax.block_until_ready(train_steps.apply(rstate, acc, hparams))
    metrics = devices.unreplicate(metrics)
    if not np.isfinite(metrics["loss"]):
      good = ckpt.steps()
      raise NonFiniteLossError(
          f"Non-finite loss {metrics['loss']} at epoch {epoch}, step {int(rstate.step[0])}. "
          f"Training stopped; the last good checkpoint is "
          f"{ckpt.directory / str(good[-1]) if good else 'none (no checkpoint yet)'}.")
    for k, v in metrics.items():
      sums[k] = sums.get(k, 0.0) + float(v)
  n = max(sums.pop("num_videos", 0.0), 1.0)
  return rstate, {f"train/{k}": v / n for k, v in sums.items()}


def evaluate(config, rstate, test_ds, *, p_eval, bucket_sizes, epoch) -> tuple[dict, dict]:
  """Test metrics and detections of the current model (``evaluation_loop.evaluate``), logged."""
  metrics, detections = evaluation_loop.evaluate(config, rstate.params, test_ds, p_eval=p_eval,
                                                 bucket_sizes=bucket_sizes)
  logging.info("epoch %d: %s %.2f, cmAP %.2f (dropped %d proposals, %d instances)", epoch,
               config.best_metric, metrics[config.best_metric], metrics["cmAP"],
               metrics["proposals_dropped"], metrics["instances_dropped"])
  return metrics, detections


def checkpoint_and_evaluate(config, ckpt, rstate, test_ds, *, epoch, p_eval, bucket_sizes):
  """After ``epoch`` epochs: saves the state when it is a checkpoint epoch, before the
  evaluation when it is an evaluation epoch (a crash in it never loses the epoch); an evaluated
  epoch that beats the best so far is saved whatever the interval. Returns ``(metrics,
  detections)``, or ``(None, None)`` when the epoch is not evaluated."""
  num_epochs = config.schedule.num_epochs
  saved = epoch == num_epochs or epoch % config.checkpoint_every_epochs == 0
  if saved:
    ckpt.save(epoch, devices.unreplicate(rstate))
  if not (epoch == num_epochs or
          (config.eval.every_epochs and epoch % config.eval.every_epochs == 0)):
    return None, None
  metrics, detections = evaluate(config, rstate, test_ds, p_eval=p_eval,
                                 bucket_sizes=bucket_sizes, epoch=epoch)
  best = ckpt.best_value()
  if not saved and (best is None or metrics[config.best_metric] > best):
    ckpt.save(epoch, devices.unreplicate(rstate))
    saved = True
  if saved:
    ckpt.record_metrics(epoch, metrics)
  return metrics, detections


def log_plan(config, model) -> None:
  """Logs the run's plan (``schedule.describe_plan``) and warns about the phases of the method
  that fall outside it."""
  plan, warnings = schedule_lib.describe_plan(config.schedule,
                                              eval_every=config.eval.every_epochs,
                                              checkpoint_every=config.checkpoint_every_epochs,
                                              memory=model.uses_memory)
  logging.info("Backbone: %s.", type(model).__name__)
  logging.info("%s", plan)
  for warning in warnings:
    logging.warning("Plan: %s.", warning)


def log_epoch(epoch, num_epochs, scalars, *, learning_rate, eta_seconds):
  """One line per epoch: the loss and its terms, the learning rate, the time, the run's ETA
  (None: not yet known)."""
  terms = ", ".join(f"{k[6:]} {v + 0.0:.3f}" for k, v in scalars.items()  # + 0.0: no -0.000
                    if k.startswith("train/") and k != "train/loss")
  eta = "" if eta_seconds is None else f"; run ETA {eta_seconds / 60:.0f} min"
  logging.info("epoch %d/%d: loss %.4f (%s) lr %.3g, %.1fs%s", epoch, num_epochs,
               scalars["train/loss"], terms, learning_rate, scalars["epoch_seconds"], eta)


def label_snippets(config, train_ds, bucket_sizes, crop_bucket_sizes) -> int:
  """``T`` of the state's pseudo-label generations: every whole video (``bucket_sizes``) and
  every training window (a crop of ``crop_bucket_sizes`` snippets at its offset) fits."""
  crops = int(train_ds.lengths.max()) if config.max_snippets else 0  # offsets up to a length
  return max(max(bucket_sizes), max(crop_bucket_sizes)) + crops


def check_devices(config) -> None:
  """Raises ValueError for a batch the local devices do not divide, and for several XLA:CPU
  host devices (a whole run pmapped over them can deadlock XLA:CPU: it would hang)."""
  ndev = len(devices.local_devices(config))
  if config.batch_size % ndev:
    raise ValueError(f"config.batch_size={config.batch_size} is not divisible by the "
                     f"{ndev} local devices")
  if ndev > 1 and jax.default_backend() == "cpu":
    raise ValueError(
        f"config.num_devices={config.num_devices} selects {ndev} XLA:CPU host devices (forced by "
        f"XLA_FLAGS=--xla_force_host_platform_device_count): pmapped over them, the full "
        f"training step can deadlock XLA:CPU (the device threads starve its shared thread pool "
        f"during collectives) and the run would hang without a word. On a CPU, train on one "
        f"device: --config.num_devices=1.")


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains the GauFuse model under ``config`` in ``workdir`` (resuming a run found there) and
  returns the final test metrics.

  Raises:
    NonFiniteLossError: when a training loss is NaN/inf (the last good checkpoint is kept).
    checkpointing.CheckpointError: when ``workdir`` holds checkpoints none of which restores.
    config_validation.ConfigError: for bad config fields (all of them named), before any work.
    run_directory.ResumeMismatchError: ``workdir`` holds checkpoints of another config or data
      (nothing is written then).
    ValueError: a batch that the devices do not divide, or several XLA:CPU host devices.
  """
  # ------------------------------------------------------------------ setup
  config_validation.validate_config(config)  # every field, before any data or compilation
  compiled = compilation.CompilationCounter()
  run_start = time.time()
  if config.distributed and not jax.distributed.is_initialized():
    jax.distributed.initialize()  # arguments auto-detected (TPU pods, Slurm, Open MPI)
  workdir = pathlib.Path(workdir)
  is_main = jax.process_index() == 0
  run_directory.check_config(workdir, config)  # a resume must not change the trained model
  check_devices(config)

  # ------------------------------------------------------------------ data
  train_ds, test_ds = input_pipeline.load_datasets(config.data)
  if is_main:
    run_directory.record(workdir, config, train_ds)  # config.json, dataset.json
  writer = metric_writers.MetricWriter(workdir)
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
      max_snippets=label_snippets(config, train_ds, bucket_sizes, crop_bucket_sizes),
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
  train_steps = programs.make_train_steps(config, model, tx, train_ds)
  p_eval = programs.make_eval_step(config, model)
  p_pseudo = programs.make_pseudo_label_step(config, model)
  dropped = {"pseudo": 0, "test": 0}  # proposals + instances the caps dropped (grow_caps off)

  # ------------------------------------------------------------------ the epoch loop
  num_epochs = config.schedule.num_epochs
  log_plan(config, model)
  metrics, detections = {}, None
  for epoch in range(start_epoch, num_epochs):
    t0 = time.time()
    plan = schedule_lib.epoch_plan(config.schedule, epoch, memory=model.uses_memory)
    if plan.generation_temperature is not None:
      rstate, n = new_generation(config, p_pseudo, rstate, train_ds, epoch=epoch,
                                 temperature=plan.generation_temperature,
                                 bucket_sizes=bucket_sizes, writer=writer)
      dropped["pseudo"] += n
    rstate, scalars = train_epoch(config, train_steps, rstate, train_ds, plan, epoch=epoch,
                                  bucket_sizes=crop_bucket_sizes, ckpt=ckpt)
    if plan.init_memory_after:
      rstate = rstate.replace(memory=generation.fill_memory_bank(
          config, train_steps.memory_init, rstate.memory, rstate.params, train_ds,
          bucket_sizes=bucket_sizes))
    done = epoch + 1
    rstate = rstate.replace(epoch=devices.replicate(jnp.int32(done), config))
    num_programs, compile_seconds = compiled.peek()  # since the start: bounded, not per epoch
    scalars.update({"lr": plan.learning_rate, "epoch_seconds": time.time() - t0,
                    "compiled_programs": num_programs, "compile_seconds": compile_seconds})
    if done == start_epoch + 1:  # the first epoch's time is mostly compilation: not an ETA
      loop_start, eta = time.time(), None
    else:
      eta = (time.time() - loop_start) / (done - start_epoch - 1) * (num_epochs - done)
    log_epoch(done, num_epochs, scalars, learning_rate=plan.learning_rate, eta_seconds=eta)
    evaluated = checkpoint_and_evaluate(config, ckpt, rstate, test_ds, epoch=done,
                                        p_eval=p_eval, bucket_sizes=bucket_sizes)
    if evaluated[0] is not None:
      metrics, detections = evaluated
      scalars.update({f"test/{k}": v for k, v in metrics.items()})
      dropped["test"] += metrics["proposals_dropped"] + metrics["instances_dropped"]
    writer.write(done, scalars)

  # ------------------------------------------------------------------ final outputs
  if detections is None:  # resumed a finished run, or the last epoch was not evaluated
    metrics, detections = evaluate(config, rstate, test_ds, p_eval=p_eval,
                                   bucket_sizes=bucket_sizes, epoch=num_epochs)
  if is_main:
    results.write_outputs(workdir, test_ds, metrics, detections, epoch=num_epochs)
  num_programs, compile_seconds = compiled.peek()
  logging.info("Run done in %.0f s; it compiled %d XLA programs in %.0f s.",
               time.time() - run_start, num_programs, compile_seconds)
  if any(dropped.values()):
    logging.warning("This run dropped %d proposals / instances in pseudo-label generations and "
                    "%d in evaluations (config.grow_caps=False): not the authors' "
                    "post-processing.", dropped["pseudo"], dropped["test"])
  writer.close()
  ckpt.close()
  return metrics
