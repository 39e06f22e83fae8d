"""``checkpointing.Checkpointer``: which steps are kept, corrupt and unfinished steps, restore
errors."""

import pathlib
import shutil

import jax.numpy as jnp
import numpy as np
import pytest

from conftest import NUM_EPOCHS
from gaufuse_jax import evaluate_run
from gaufuse_jax._src import checkpointing
from gaufuse_jax._src import memory as memory_lib



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
                             r".*step 2 in .*step 1 in .*restore it with that config"):
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


def test_corrupt_latest_of_the_run_falls_back(run, tmp_path, caplog):
  """A real run's latest step with garbled array files: 'latest' restores the step before."""
  shutil.copytree(run.workdir / "checkpoints", tmp_path / "checkpoints")
  _garble(tmp_path / "checkpoints" / str(NUM_EPOCHS) / "default", everything=True)
  raw, step = evaluate_run.restore_checkpoint(run.config, tmp_path, "latest")
  assert step == NUM_EPOCHS - 1 and int(raw["epoch"]) == NUM_EPOCHS - 1
  assert any(r.levelname == "WARNING" and f"step {NUM_EPOCHS}" in r.getMessage()
             for r in caplog.records)
