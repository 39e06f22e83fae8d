"""The training job end to end, on ONE shared tiny run (as flax's ``train_test.py``).

The session-scoped ``run`` fixture of conftest.py (test_notebooks.py uses it too) trains
``configs/tiny.py`` in-process, shortened to 4 epochs that still fire every phase of the schedule
(`test_shared_schedule_fires_every_phase`), with one bucket size so that each step function
compiles once; these tests read its workdir, its log, its checkpoints and resume it. Training
always uses ``num_devices=1`` (a whole run pmapped over the 2 forced CPU devices of conftest can
starve XLA:CPU: ``test_parallelism.py`` checks one step). The SIGKILL/resume check is in
``test_resume_kill.py`` (slow).
"""

import json

import jax
import numpy as np
import pytest

from configs import tiny
from conftest import NUM_EPOCHS
from conftest import shared_config
from gaufuse_jax._src import checkpointing
from gaufuse_jax import evaluate_run
from gaufuse_jax._src import evaluation
from gaufuse_jax._src import input_pipeline
from gaufuse_jax._src import results as results_lib
from gaufuse_jax._src import schedule as schedule_lib
from gaufuse_jax import train

MAIN_METRICS = ("wtalc/mAP@0.1:0.7", "activitynet/mAP@0.5:0.05:0.95", "cmAP")


def _train_rows(run):
  return [r for r in run.log() if "train/loss" in r]


def test_shared_schedule_fires_every_phase():
  """The 4-epoch schedule of the shared run still exercises every phase of the epoch loop."""
  s = shared_config().schedule
  schedule_lib.validate_schedule(s)
  plans = [schedule_lib.epoch_plan(s, e) for e in range(s.num_epochs)]
  assert [p.label_mode for p in plans] == [schedule_lib.LABEL_NONE] * 2 + [
      schedule_lib.LABEL_PLAIN, schedule_lib.LABEL_DELTA]
  assert [p.use_memory for p in plans] == [False, True, True, True]
  assert [p.init_memory_after for p in plans] == [True, False, False, False]
  assert [p.generation_temperature for p in plans] == [None, 0.02, 0.002, None]
  assert [p.learning_rate for p in plans] == [1e-3, 1e-3, 5e-4, 5e-4]
  assert plans[3].delta_scale == 2.0 and plans[2].pseudo_weight > 0


def test_run_returns_finite_metrics(run):
  for key in MAIN_METRICS:
    assert key in run.metrics
  for key, value in run.metrics.items():
    assert np.isfinite(value), key
  for key in MAIN_METRICS:
    assert 0.0 <= run.metrics[key] <= 100.0, key
  # The returned metrics are the ones logged after the last epoch.
  last = run.log()[-1]
  assert last["step"] == NUM_EPOCHS
  assert {k: last[f"test/{k}"] for k in run.metrics} == run.metrics


def test_training_log_follows_the_schedule_and_loss_falls(run):
  rows = _train_rows(run)
  assert [r["step"] for r in rows] == list(range(1, NUM_EPOCHS + 1))
  assert [r["lr"] for r in rows] == [1e-3, 1e-3, 5e-4, 5e-4]
  # The pseudo-label term is 0 before labels are used (epochs 0, 1), then joins the loss.
  assert [r["train/pseudo"] for r in rows[:2]] == [0.0, 0.0]
  assert all(r["train/pseudo"] != 0.0 for r in rows[2:])
  for r in rows:
    assert all(v is not None and np.isfinite(v) for v in r.values()), r
  # The video-level foreground term does not depend on the schedule's weights: it must fall
  # (compared from epoch 2, the first with the memory branch's term in it).
  assert rows[-1]["train/fore"] < 0.9 * rows[1]["train/fore"]
  # Test metrics were logged exactly after the evaluated epochs.
  assert [r["step"] for r in rows if "test/cmAP" in r] == [2, 4]


def test_config_and_dataset_json(run):
  saved = json.loads((run.workdir / "config.json").read_text())
  assert saved == json.loads(json.dumps(run.config.to_dict()))  # tuples become lists
  assert saved["schedule"]["num_epochs"] == NUM_EPOCHS and saved["bucket_sizes"] == [288]
  info = json.loads((run.workdir / "dataset.json").read_text())
  assert info == {"name": "embedded", "class_names": list(run.train_ds.class_names),
                  "feature_dim": 32, "fps": run.train_ds.fps,
                  "frames_per_snippet": run.train_ds.frames_per_snippet,
                  "num_videos": len(run.train_ds)}


def test_results_json_and_table(run):
  results = json.loads((run.workdir / "results" / "test.json").read_text())
  results_lib.validate_results_json(results, class_names=run.test_ds.class_names)
  assert set(results["results"]) == set(run.test_ds.video_names)
  seconds = run.test_ds.frames_per_snippet / run.test_ds.fps
  durations = dict(zip(run.test_ds.video_names, run.test_ds.lengths * seconds))
  assert sum(len(v) for v in results["results"].values()) > 0
  for video, entries in results["results"].items():
    for e in entries:
      # The authors' segments end one snippet past their run: at most one past the video.
      assert 0.0 <= e["segment"][0] < e["segment"][1] <= durations[video] + seconds + 1e-6, (
          video, e)
  # The file holds the evaluated detections: scoring it again gives the run's ActivityNet mAP.
  detections = results_lib.detections_from_results_json(
      results, run.test_ds.video_names, run.test_ds.class_names, fps=run.test_ds.fps,
      frames_per_snippet=run.test_ds.frames_per_snippet)
  again = evaluation.detection_map(
      detections, run.test_ds.ground_truth(), num_classes=run.test_ds.num_classes,
      protocol="activitynet", fps=run.test_ds.fps,
      frames_per_snippet=run.test_ds.frames_per_snippet)
  key = "activitynet/mAP@0.5:0.05:0.95"
  np.testing.assert_allclose(again[key], run.metrics[key], atol=1e-9)
  table = (run.workdir / "results" / "test.md").read_text()
  assert "`wtalc`" in table and "`activitynet`" in table
  assert f"embedded (test, 8 videos; the model after epoch {NUM_EPOCHS})" in table
  # Generated features: the results JSON says no external data was used.
  external = json.loads((run.workdir / "results" / "test.json").read_text())["external_data"]
  assert external == {"used": False, "details": "generated: embedded features (seed 0), "
                                                "generated by gaufuse_jax: no pretrained model"}
  assert f"{run.metrics['cmAP']:.2f}" in table
  assert f"{run.metrics['wtalc/mAP@0.1:0.7']:.2f}" in table


def test_checkpoints_keep_latest_and_best(run):
  evaluated = {r["step"]: r["test/" + run.config.best_metric]
               for r in run.log() if "test/cmAP" in r}
  best = max(evaluated, key=evaluated.get)
  assert sorted(evaluated) == [2, NUM_EPOCHS]  # epoch 2 is no checkpoint epoch (every 3)
  ckpt = checkpointing.Checkpointer(run.workdir / "checkpoints", best_metric=run.config.best_metric)
  try:
    assert ckpt.steps() == sorted({NUM_EPOCHS - 1, NUM_EPOCHS, best})
    assert ckpt.best_step() == best
  finally:
    ckpt.close()
  raw, step = evaluate_run.restore_checkpoint(run.config, run.workdir, "latest")
  assert step == NUM_EPOCHS and int(raw["epoch"]) == NUM_EPOCHS
  batches_per_epoch = -(-len(run.train_ds) // run.config.batch_size)
  assert int(raw["step"]) == NUM_EPOCHS * batches_per_epoch
  assert evaluate_run.restore_checkpoint(run.config, run.workdir, "best")[1] == best


def test_pseudo_label_generations(run):
  pseudo = [r for r in run.log() if "pseudo/instances" in r]
  assert [r["step"] for r in pseudo] == [1, 2]
  assert all(r["pseudo/instances"] > 0 for r in pseudo)
  raw, _ = evaluate_run.restore_checkpoint(run.config, run.workdir, "latest")
  assert int(raw["num_generations"]) == 2
  g = np.asarray(raw["generations"])
  num_classes = run.train_ds.num_classes
  assert g.shape == (2, len(run.train_ds), 288, num_classes + 1)
  assert np.all(np.isfinite(g)) and g.min() >= 0.0 and g.max() <= 1.0
  assert np.count_nonzero(g[0]) and np.count_nonzero(g[1]) and not np.array_equal(g[0], g[1])
  for v, length in enumerate(run.train_ds.lengths):
    assert not np.any(g[:, v, length:]), f"labels past the end of video {v}"
  # The memory bank was filled after the warm-up, for the classes of the training videos.
  scores = np.asarray(raw["memory"]["scores"])
  assert np.all(np.isfinite(scores[run.train_ds.labels.sum(0) > 0]))


def test_rerun_resumes_the_finished_run(run, caplog):
  log_before = (run.workdir / "metrics.jsonl").read_text()
  caplog.set_level("INFO")
  metrics = train.train_and_evaluate(run.config, str(run.workdir))
  assert metrics == run.metrics  # restored final params, evaluated again: same numbers
  assert (run.workdir / "metrics.jsonl").read_text() == log_before  # no epoch was run again
  assert any("Resumed from" in r.getMessage() and f"epoch {NUM_EPOCHS}" in r.getMessage()
             for r in caplog.records)


def _one_compile_config():
  """tiny.py in 2 epochs without memory or pseudo labels: one training program."""
  config = tiny.get_config()
  s = config.schedule
  s.num_epochs = 2
  s.warmup_epochs = s.pseudo_start = s.delta_start = 2
  s.generation_epochs = s.generation_temperatures = ()
  s.lr_boundaries, s.lr_values = (), (1e-3,)
  config.bucket_sizes = (288,)
  return config


def test_the_epoch_is_saved_before_its_evaluation(tmp_path, monkeypatch):
  """A crash in an evaluation never loses the epoch it evaluates."""
  config = _one_compile_config()
  config.eval.every_epochs = config.checkpoint_every_epochs = 2

  def crash(*args, **kwargs):
    raise RuntimeError("evaluation crashed")

  monkeypatch.setattr(train.evaluation_loop, "evaluate", crash)
  with pytest.raises(RuntimeError, match="evaluation crashed"):
    train.train_and_evaluate(config, str(tmp_path))
  raw, step = evaluate_run.restore_checkpoint(config, tmp_path, "latest")
  assert step == 2 and int(raw["epoch"]) == 2


def test_diverging_run_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
  """The NaN/inf guard: an infinite learning rate from epoch 1 on makes the parameters, then
  the loss, non-finite; training stops with a message naming the last good checkpoint, which
  restores. (A merely huge rate, 1e30, does not: the cosine classifiers normalise the
  parameters away. The config check refuses an infinite rate, so it is bypassed here: the
  guard is for what no config check can foresee.)"""
  monkeypatch.setattr(train.config_validation, "validate_config", lambda *a, **k: None)
  config = tiny.get_config()
  s = config.schedule
  s.num_epochs = 2
  s.warmup_epochs = s.pseudo_start = s.delta_start = 2  # no memory, no pseudo labels: 1 compile
  s.generation_epochs = s.generation_temperatures = ()
  s.lr_boundaries = (1,)
  s.lr_values = (1e-3, float("inf"))
  config.eval.every_epochs = 0
  config.checkpoint_every_epochs = 1
  config.bucket_sizes = (288,)
  with pytest.raises(train.NonFiniteLossError,
                     match=r"Non-finite loss \S+ at epoch 1, step \d+\. Training stopped; "
                           r"the last good checkpoint is .*checkpoints/1\.$"):
    train.train_and_evaluate(config, str(tmp_path))
  raw, step = evaluate_run.restore_checkpoint(config, tmp_path, "latest")
  assert step == 1 and int(raw["epoch"]) == 1
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(raw["params"]))
  assert not (tmp_path / "results").exists()


def test_several_forced_cpu_devices_are_refused_at_start(tmp_path):
  """conftest forces 2 XLA:CPU host devices: a whole run pmapped over them could hang."""
  config = _one_compile_config()
  config.num_devices = 2
  with pytest.raises(ValueError, match=r"config\.num_devices=2 selects 2 XLA:CPU host devices.*"
                                       r"--config\.num_devices=1"):
    train.train_and_evaluate(config, str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()


def test_the_label_generations_hold_every_training_window():
  """Without a fixed bucket size the inference sizes are fitted to the data and the training
  ladder may reach further (tiny: 272 vs 288): the generations must hold both."""
  config = tiny.get_config()
  train_ds, test_ds = input_pipeline.load_datasets(config.data)
  whole = input_pipeline.bucket_sizes(config, train_ds, test_ds)
  crops = input_pipeline.bucket_sizes(config, train_ds, crop=True)
  length = train.label_snippets(config, train_ds, whole, crops)
  batches, _ = input_pipeline.train_batches(config, train_ds, epoch=0, bucket_sizes=crops)
  windows = [int(np.max(b["offset"])) + b["features"].shape[-2] for step in batches for b in step]
  assert max(windows) <= length and max(whole) <= length
