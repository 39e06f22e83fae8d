"""The training job end to end (issue 6; issue 7 §3 faults), on ONE shared tiny run.

The session-scoped ``run`` fixture of conftest.py (test_notebooks.py uses it too) trains
``configs/tiny.py`` in-process, shortened to 4 epochs that still fire every phase of the schedule
(`test_shared_schedule_fires_every_phase`), with one bucket size so that each step function
compiles once. The other tests read its workdir, restore its checkpoints, resume it, evaluate it
and localize with it. Training always uses ``num_devices=1`` here: the 2 forced host devices of
conftest are used only by the one-step pmap check at the bottom (a whole run pmapped over 2 fake
CPU devices can starve XLA:CPU).
The SIGKILL/resume check is in ``test_resume_kill.py`` (slow).
"""

import faulthandler
import functools
import json
import pathlib
import shutil
import subprocess
import sys

from flax import jax_utils
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import tiny
from conftest import NUM_EPOCHS
from conftest import shared_config
from gaufuse_jax._src import checkpointing
from gaufuse_jax import evaluate_run
from gaufuse_jax._src import evaluation
from gaufuse_jax._src import programs
from gaufuse_jax._src import memory as memory_lib
from gaufuse_jax._src import schedule as schedule_lib
from gaufuse_jax._src import steps
from gaufuse_jax import train
from gaufuse_jax._src import train_state as train_state_lib
from gaufuse_jax._src.data import batching
from gaufuse_jax._src.data import embedded

REPO = pathlib.Path(__file__).resolve().parents[1]
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
                  "frames_per_snippet": run.train_ds.frames_per_snippet}


def test_results_json_and_table(run):
  results = json.loads((run.workdir / "results" / "test.json").read_text())
  results.validate_results_json(results, class_names=run.test_ds.class_names)
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
  detections = results.detections_from_results_json(
      results, run.test_ds.video_names, run.test_ds.class_names, fps=run.test_ds.fps,
      frames_per_snippet=run.test_ds.frames_per_snippet)
  again = evaluation.detection_map(
      detections, run.test_ds.ground_truth(), num_classes=run.test_ds.num_classes,
      protocol="activitynet", fps=run.test_ds.fps,
      frames_per_snippet=run.test_ds.frames_per_snippet)
  key = "activitynet/mAP@0.5:0.05:0.95"
  np.testing.assert_allclose(again[key], run.metrics[key], atol=1e-9)
  table = (run.workdir / "results" / "test.md").read_text()
  assert "`wtalc`" in table and "`activitynet`" in table and "embedded (test, 8 videos)" in table
  assert f"{run.metrics['cmAP']:.2f}" in table
  assert f"{run.metrics['wtalc/mAP@0.1:0.7']:.2f}" in table


def test_checkpoints_keep_latest_and_best(run):
  evaluated = {r["step"]: r["test/" + run.config.best_metric]
               for r in run.log() if "test/cmAP" in r}
  best = max(evaluated, key=evaluated.get)
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


def test_diverging_run_stops_and_keeps_the_last_good_checkpoint(tmp_path):
  """The NaN/inf guard (issue 6 §3): an infinite learning rate from epoch 1 on makes the
  parameters, then the loss, non-finite; training stops with a message naming the last good
  checkpoint, which restores. (A merely huge rate, 1e30, does not: the cosine classifiers
  normalise the parameters away.)"""
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


def test_restore_checkpoint_errors(run, tmp_path):
  with pytest.raises(ValueError, match=r"--checkpoint=99: no such step .*steps: \[.*3, 4\]"):
    evaluate_run.restore_checkpoint(run.config, run.workdir, "99")
  with pytest.raises(ValueError, match=r"'best', 'latest' or an epoch number, got 'last'"):
    evaluate_run.restore_checkpoint(run.config, run.workdir, "last")
  with pytest.raises(FileNotFoundError, match="No checkpoint in .*train first"):
    evaluate_run.restore_checkpoint(run.config, tmp_path, "latest")


def test_corrupt_latest_of_the_run_falls_back(run, tmp_path, caplog):
  """A real run's latest step with garbled array files: 'latest' restores the step before."""
  shutil.copytree(run.workdir / "checkpoints", tmp_path / "checkpoints")
  _garble(tmp_path / "checkpoints" / str(NUM_EPOCHS) / "default", everything=True)
  raw, step = evaluate_run.restore_checkpoint(run.config, tmp_path, "latest")
  assert step == NUM_EPOCHS - 1 and int(raw["epoch"]) == NUM_EPOCHS - 1
  assert any(r.levelname == "WARNING" and f"step {NUM_EPOCHS}" in r.getMessage()
             for r in caplog.records)


def test_evaluate_checkpoint_writes_tables_and_plots(run):
  metrics = evaluate_run.evaluate_checkpoint(run.config, run.workdir, checkpoint="latest",
                                             num_plots=1, split="train")
  for key in MAIN_METRICS:
    assert np.isfinite(metrics[key])
  out = run.workdir / f"eval_{NUM_EPOCHS}"
  results = json.loads((out / "results" / "train.json").read_text())
  results.validate_results_json(results, class_names=run.train_ds.class_names)
  assert set(results["results"]) == set(run.train_ds.video_names)
  assert f"{metrics['cmAP']:.2f}" in (out / "results" / "train.md").read_text()
  first = next(n for n, s in zip(run.train_ds.video_names, run.train_ds.segments) if len(s))
  pngs = sorted(p.name for p in (out / "plots").glob("*.png"))
  assert pngs == sorted([f"{first}.png", "map_vs_tiou.png"])
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
  results.validate_results_json(results, class_names=run.test_ds.class_names)
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


@pytest.mark.parametrize("bad, match", [
    (np.zeros((20, 16), np.float32),
     r"bad\.npy: expected features \[T >= 2, D = 32\], found \(20, 16\)"),
    (np.zeros((20,), np.float32), r"bad\.npy: expected features \[T >= 2, D = 32\], found \(20,\)"),
    (np.full((20, 32), np.nan, np.float32), r"bad\.npy: 20 snippets hold NaN/inf"),
], ids=["wrong_dim", "one_dim", "nan"])
def test_localize_bad_feature_file_names_it(run, tmp_path, bad, match):
  good = run.test_ds.features[0]
  _write_features(tmp_path / "features", ["good", "bad"], [good, bad])
  with pytest.raises(ValueError, match=match):
    evaluate_run.localize_features(run.config, run.workdir, tmp_path / "features",
                                   tmp_path / "out.json")
  assert not (tmp_path / "out.json").exists()


def test_localize_missing_inputs(run, tmp_path):
  (tmp_path / "empty").mkdir()
  with pytest.raises(FileNotFoundError, match="folder holds no .npy file"):
    evaluate_run.localize_features(run.config, run.workdir, tmp_path / "empty", tmp_path / "o.json")
  with pytest.raises(FileNotFoundError, match="dataset.json not found"):
    evaluate_run.localize_features(run.config, tmp_path, tmp_path / "empty", tmp_path / "o.json")


# ------------------------------------------------------------------ command line overrides

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

def _small_state(value: float):
  return {"w": jnp.full((3, 2), value, jnp.float32), "step": jnp.int32(int(value)),
          "memory": memory_lib.init_memory(2, 2, 4)}


def _saved_steps(directory, steps=(1, 2, 3)):
  ckpt = checkpointing.Checkpointer(directory, best_metric="m")
  for s in steps:
    ckpt.save(s, _small_state(s), {"m": float(s)})
  ckpt.close()


def test_checkpointer_keeps_the_multiples_of_keep_every(tmp_path):
  """Latest 2, the best, and every multiple of ``keep_every``; nothing else."""
  ckpt = checkpointing.Checkpointer(tmp_path, best_metric="m", keep_every=4)
  for s in range(1, 11):
    ckpt.save(s, _small_state(s), {"m": 5.0 if s == 3 else 0.0} if s % 2 else None)
  assert ckpt.steps() == [3, 4, 8, 9, 10]
  ckpt.close()


def _garble(path: pathlib.Path, *, everything: bool):
  """Overwrites the array data files under ``path`` (every file with ``everything``)."""
  files = [f for f in path.rglob("*") if f.is_file()]
  if not everything:
    files = [f for f in files if "/d/" in f.as_posix()]
  assert files
  for f in files:
    f.write_bytes(b"\x00garbage\xff" * 3)


def _truncate(path: pathlib.Path):
  for f in path.rglob("*"):
    if f.is_file():
      f.write_bytes(f.read_bytes()[:f.stat().st_size // 2])


CORRUPTIONS = {
    "garbled_arrays": lambda d: _garble(d / "default", everything=False),
    "garbled_everything": lambda d: _garble(d, everything=True),
    "truncated_files": _truncate,
    "garbled_metrics": lambda d: (d / "metrics" / "metrics").write_text("{not json"),
    "no_item_metadata": lambda d: (d / "default" / "_METADATA").unlink(),
    "item_deleted": lambda d: shutil.rmtree(d / "default"),
    "emptied": lambda d: (shutil.rmtree(d), d.mkdir()),
}


@pytest.mark.parametrize("corrupt", sorted(CORRUPTIONS))
def test_corrupt_latest_step_falls_back_with_warning(tmp_path, caplog, corrupt):
  _saved_steps(tmp_path)
  CORRUPTIONS[corrupt](tmp_path / "3")
  # Metrics only rank steps: with its arrays intact, step 3 is still the one to resume from.
  expected = 3 if corrupt == "garbled_metrics" else 2
  ckpt = checkpointing.Checkpointer(tmp_path, best_metric="m")
  try:
    for abstract in (None, _small_state(0.0)):  # raw (launch.evaluate) and typed (resume)
      state, step = ckpt.restore(abstract)
      assert step == expected
      np.testing.assert_array_equal(state["w"], np.full((3, 2), float(expected)))
  finally:
    ckpt.close()
  assert any(r.levelname == "WARNING" and "step 3" in r.getMessage() for r in caplog.records), (
      caplog.text)


def test_resumed_run_saves_over_the_unreadable_step(tmp_path):
  """After falling back from a damaged step 3 to 2, the resumed run reaches step 3 again and
  must be able to save it (orbax refuses to save a step that exists)."""
  _saved_steps(tmp_path)
  _garble(tmp_path / "3" / "default", everything=True)
  ckpt = checkpointing.Checkpointer(tmp_path, best_metric="m")
  try:
    assert ckpt.restore(_small_state(0.0))[1] == 2
    ckpt.save(3, _small_state(33.0), {"m": 3.0})
    state, step = ckpt.restore(_small_state(0.0))
    assert step == 3
    np.testing.assert_array_equal(state["w"], np.full((3, 2), 33.0))
  finally:
    ckpt.close()


def test_unfinished_save_is_ignored(tmp_path):
  """A save killed half-way leaves orbax's temporary folder: it is not a step."""
  _saved_steps(tmp_path)
  partial = tmp_path / "4.orbax-checkpoint-tmp-1234567"
  shutil.copytree(tmp_path / "3", partial)
  for f in partial.rglob("*"):
    if f.is_file() and f.name in ("commit_success.txt", "_CHECKPOINT_METADATA", "_METADATA"):
      f.unlink()
  ckpt = checkpointing.Checkpointer(tmp_path, best_metric="m")
  try:
    assert ckpt.steps() == [2, 3]  # keeps the latest 2 (3 is also the best)
    assert ckpt.restore(_small_state(0.0))[1] == 3
  finally:
    ckpt.close()


def test_no_restorable_step_raises_checkpoint_error(tmp_path):
  _saved_steps(tmp_path, steps=(1, 2))
  for s in (1, 2):
    _garble(tmp_path / str(s) / "default", everything=True)
  ckpt = checkpointing.Checkpointer(tmp_path, best_metric="m")
  try:
    with pytest.raises(checkpointing.CheckpointError,
                       match=r"(?s)No checkpoint in .* could be restored \(tried \[2, 1\]\):"
                             r".*step 2 in .*step 1 in .*Move the directory away"):
      ckpt.restore(_small_state(0.0))
  finally:
    ckpt.close()


def test_checkpointer_keeps_latest_two_and_best(tmp_path):
  ckpt = checkpointing.Checkpointer(tmp_path, best_metric="m")
  try:
    assert ckpt.restore(_small_state(0.0)) == (None, None)  # an empty directory: a fresh run
    for s, m in ((1, {"m": 5.0}), (2, None), (3, {"m": 9.0}), (4, {"m": 1.0}), (5, None)):
      ckpt.save(s, _small_state(s), m)
    assert ckpt.steps() == [3, 4, 5] and ckpt.best_step() == 3
    state, step = ckpt.restore(_small_state(0.0))
    assert step == 5 and int(state["step"]) == 5
    assert isinstance(state["memory"], memory_lib.MemoryBank)
    state, step = ckpt.restore(_small_state(0.0), step=3)
    np.testing.assert_array_equal(state["w"], np.full((3, 2), 3.0))
  finally:
    ckpt.close()


# ------------------------------------------------------------------ data parallelism

def _four_video_step(*, seed, layout, memory_sign):
  """4 embedded videos (3 classes, D=8, at most 32 snippets), the tiny model, and a state with a
  filled 3 x 2 memory bank (tokens ``memory_sign(normal)``) and two random label generations;
  hyper-parameters of a Δ-label step with memory."""
  config = tiny.get_config()
  ds, _ = embedded.make_embedded_dataset(seed=seed, num_train=4, num_test=1, num_classes=3,
                                         feature_dim=8, layout=layout)
  model = programs.build_model(config, ds)
  tx = train_state_lib.make_optimizer(config)
  state = train_state_lib.create_train_state(
      model, tx, jax.random.PRNGKey(0), num_videos=4, max_snippets=32, feature_dim=8,
      num_classes=3, memory_slots=2)
  rng = np.random.default_rng(0)
  state = state.replace(
      memory=memory_lib.MemoryBank(
          tokens=jnp.asarray(memory_sign(rng.normal(size=(3, 2, 8))), jnp.float32),
          scores=jnp.asarray(rng.uniform(size=(3, 2)), jnp.float32)),
      generations=jnp.asarray(rng.uniform(size=(2, 4, 32, 4)), jnp.float32))
  hparams = {"learning_rate": np.float32(1e-3), "spl_weight": np.float32(1.0),
             "pseudo_weight": np.float32(10.0), "label_mode": np.int32(schedule_lib.LABEL_DELTA),
             "delta_scale": np.float32(2.0)}
  return ds, model, tx, state, hparams


def test_train_step_two_devices_equals_one():
  """One pmapped train step over 2 devices (2 videos each) equals 1 device with the same 4
  videos: gradients, metrics and the memory update are summed/gathered over devices. Dropout
  on (one key per video, whatever device holds it), memory on, Δ pseudo labels on."""
  if jax.local_device_count() < 2:
    pytest.skip("needs 2 local devices (conftest forces 2 host devices)")
  # A deadlocked XLA:CPU collective must fail the run, not hang it.
  faulthandler.dump_traceback_later(300, exit=True)
  try:
    ds, model, tx, state, hparams = _four_video_step(
        seed=0, layout=embedded.EmbeddedLayout(median_length=20, min_length=8, max_length=32),
        memory_sign=lambda x: x)
    results = {}
    for n in (1, 2):
      devices = jax.local_devices()[:n]
      batch = next(batching.iterate_batches(ds, batch_size=4, seed=0, epoch=0, shuffle=False,
                                            bucket_sizes=(32,), num_devices=n))
      step = jax.pmap(functools.partial(steps.train_step, model=model, tx=tx, use_memory=True,
                                        pseudo_frame_coef=0.8),
                      axis_name=steps.AXIS, devices=devices)
      results[n] = jax.device_get(jax.block_until_ready(
          step(jax_utils.replicate(state, devices), batch, jax_utils.replicate(hparams, devices))))
  finally:
    faulthandler.cancel_dump_traceback_later()
  (one, m1), (two, m2) = results[1], results[2]
  # Replicas stay identical, and the update is not a no-op.
  jax.tree.map(lambda x: np.testing.assert_array_equal(x[0], x[1]), (two.params, two.memory))
  moved = jax.tree.map(lambda new, old: np.max(np.abs(new[0] - old)), one.params, state.params)
  assert max(jax.tree.leaves(moved)) > 1e-4
  assert float(m1["pseudo"][0]) > 0 and float(m1["num_videos"][0]) == 4
  close = functools.partial(np.testing.assert_allclose, rtol=1e-5, atol=1e-6)
  jax.tree.map(lambda a, b: close(a[0], b[0]), (one.params, one.memory, one.opt_state),
               (two.params, two.memory, two.opt_state))
  jax.tree.map(lambda a, b: close(a[0], b[0]), m1, m2)
  assert int(one.step[0]) == int(two.step[0]) == 1


def test_micro_batches_equal_the_plain_padded_batch():
  """An optimizer step over 4 videos of different lengths: each video padded to its own bucket
  with its gradient accumulated (``iterate_micro_batches``, memory read compacted to the videos'
  labelled classes) gives the parameters, memory, optimizer state and metrics of the plain
  padded batch (the 4 videos padded together to 32, all 3 x 2 memory slots). Dropout on (one
  key per video), memory branch on, Δ pseudo labels on."""
  ds, model, tx, state, hparams = _four_video_step(
      seed=1, layout=embedded.EmbeddedLayout(median_length=14, min_length=5, max_length=32),
      memory_sign=np.abs)
  assert ds.lengths.max() <= 32 and len(set(ds.lengths.tolist())) > 1
  put = lambda tree: jax_utils.replicate(tree, jax.local_devices()[:1])
  pmap = lambda fn, **kw: jax.pmap(fn, axis_name=steps.AXIS, devices=jax.local_devices()[:1], **kw)
  kw = dict(model=model, use_memory=True, pseudo_frame_coef=0.8)
  order = dict(batch_size=4, seed=3, epoch=5)

  padded = next(batching.iterate_batches(ds, bucket_sizes=(32,), **order))
  plain = jax.device_get(pmap(functools.partial(steps.train_step, tx=tx, **kw))(
      put(state), padded, put(hparams)))

  micro = next(batching.iterate_micro_batches(ds, bucket_sizes=(8, 16, 24, 32),
                                              micro_batch_size=1, **order))
  assert len(micro) == 4
  assert sorted(b["features"].shape[2] for b in micro) != [32] * 4  # they did pad less
  accumulate = pmap(functools.partial(steps.accumulate_step, max_labels=1, **kw))
  rstate, acc = put(state), pmap(steps.init_accumulator)(put(state))
  for batch in micro:
    acc = accumulate(rstate, acc, batch, put(hparams))
  split = jax.device_get(pmap(functools.partial(steps.apply_step, tx=tx))(rstate, acc,
                                                                         put(hparams)))
  assert ds.labels.sum(1).max() == 1  # max_labels=1 holds every video's memory slots
  moved = jax.tree.map(lambda new, old: np.max(np.abs(new[0] - old)), plain[0].params,
                       state.params)
  assert max(jax.tree.leaves(moved)) > 1e-4
  # float32 sums in another order: Adam's second moments (squared gradients) differ by ~1e-5.
  close = functools.partial(np.testing.assert_allclose, rtol=5e-5, atol=1e-6)
  jax.tree.map(close, (plain[0].params, plain[0].memory, plain[0].opt_state, plain[1]),
               (split[0].params, split[0].memory, split[0].opt_state, split[1]))
