"""Orbax checkpoints of the whole train state: keep the latest and the best, resume, fall back.

A checkpoint step is the number of epochs completed. A step that cannot be restored (a corrupt
or partial directory) is skipped with a warning and the previous one is tried, so a crash in the
middle of a save never loses the run.
"""

from __future__ import annotations

import json
import pathlib

from absl import logging
import jax
from jax.experimental import multihost_utils
import orbax.checkpoint as ocp


def _sync(name: str) -> None:
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(name)


class CheckpointError(RuntimeError):
  """No checkpoint of a run directory could be restored."""


def _set_aside_unreadable_metrics(directory: pathlib.Path) -> None:
  """Renames each step's ``metrics/metrics`` file that is not valid JSON to
  ``metrics.unreadable``, with a warning. Orbax parses the metrics of every step when it opens
  a directory and would raise a bare JSONDecodeError; without metrics the step is still tried
  (and skipped if its arrays are damaged too), it only no longer ranks as 'best'."""
  for path in sorted(directory.glob("*/metrics/metrics")):
    try:
      json.loads(path.read_text())
    except (OSError, ValueError) as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
      logging.warning("Checkpoint step %s: unreadable metrics file %s (%s: %s); set aside as "
                      "metrics.unreadable.", path.parent.parent.name, path, type(e).__name__,
                      str(e)[:200])
      path.rename(path.with_name("metrics.unreadable"))


class Checkpointer:
  """Keeps the ``keep_latest`` newest steps, the one with the best ``best_metric`` and, when
  ``keep_every > 0``, every step that is a multiple of ``keep_every``.

  Args:
    directory: where the steps live (created if missing).
    best_metric: key of the metrics dict passed to ``save`` that ranks steps (higher is better).
    keep_latest: how many of the newest steps to keep.
    keep_every: also keep the steps that are multiples of it (0: none).
  """

  def __init__(self, directory, *, best_metric: str, keep_latest: int = 2, keep_every: int = 0):
    self.directory = pathlib.Path(directory).absolute()
    self.best_metric = best_metric
    self._keep_latest, self._keep_every = keep_latest, keep_every
    if jax.process_index() == 0:
      _set_aside_unreadable_metrics(self.directory)
    if jax.process_count() > 1:  # no process opens the steps before process 0 set files aside
      multihost_utils.sync_global_devices("gaufuse_checkpointer_init")
    policies = [
        ocp.checkpoint_managers.LatestN(n=keep_latest),
        ocp.checkpoint_managers.BestN(
            get_metric_fn=lambda metrics: metrics[best_metric], reverse=False, n=1,
            keep_checkpoints_without_metrics=False),
    ]
    if keep_every:
      policies.append(ocp.checkpoint_managers.EveryNSteps(interval_steps=keep_every))
    policy = ocp.checkpoint_managers.AnyPreservationPolicy(policies)
    self._manager = ocp.CheckpointManager(
        self.directory,
        # One unnamed item, fixed here. Left to orbax, the layout is inferred from the first step
        # restored and then locked in, so a step whose item folder is gone would make every
        # older step fail too ("Must provide `args` of type `Composite`").
        item_handlers=ocp.StandardCheckpointHandler(),
        options=ocp.CheckpointManagerOptions(
            preservation_policy=policy, best_fn=lambda metrics: metrics[best_metric],
            best_mode="max", create=True, enable_async_checkpointing=False))
    self._best = self._read_best()

  def save(self, step: int, state, metrics: dict | None = None) -> None:
    """Saves ``state`` (an unreplicated pytree) as ``step``; ``metrics[best_metric]`` (when
    given) ranks it for 'best'."""
    # A step without an evaluation ranks below every evaluated one (mAP >= 0).
    value = -1.0 if not metrics or self.best_metric not in metrics else metrics[self.best_metric]
    metrics = {self.best_metric: float(value)}
    if step in self._manager.all_steps():
      # Only a step that `restore` skipped as unreadable can be in the way of a resumed run.
      logging.warning("Replacing checkpoint step %d in %s (it could not be restored).", step,
                      self.directory)
      self._manager.delete(step)
    self._manager.save(step, args=ocp.args.StandardSave(state), metrics=metrics, force=True)
    self._manager.wait_until_finished()

  def record_metrics(self, step: int, metrics: dict) -> None:
    """Ranks the saved ``step`` by ``metrics[best_metric]``, after the save: a run saves an
    epoch first and evaluates it after, so a crash in the evaluation never loses the epoch."""
    value = float(metrics[self.best_metric])
    if jax.process_index() == 0:
      path = self.directory / str(step) / "metrics" / "metrics"
      path.parent.mkdir(parents=True, exist_ok=True)
      tmp = path.with_name("metrics.tmp")
      tmp.write_text(json.dumps({self.best_metric: value}))
      tmp.replace(path)  # atomic: never a half-written metrics file
    _sync("gaufuse_metrics_written")
    self._manager.reload()
    _sync("gaufuse_metrics_reloaded")  # no process deletes a step another one is reading
    # The policy is applied at the next save; apply it now, or a step that just lost 'best'
    # would outlive the run.
    steps = sorted(self._manager.all_steps())
    keep = set(steps[-self._keep_latest:]) | {self._manager.best_step()}
    keep |= {s for s in steps if self._keep_every and s % self._keep_every == 0}
    for s in steps:
      if s not in keep:
        self._manager.delete(s)
    _sync("gaufuse_steps_pruned")
    self._best = value if self._best is None else max(self._best, value)

  def best_value(self) -> float | None:
    """``best_metric`` of the best ranked step (None before any evaluated step)."""
    return self._best

  def _read_best(self) -> float | None:
    step = self._manager.best_step()
    if step is None:
      return None
    try:
      value = json.loads((self.directory / str(step) / "metrics" / "metrics").read_text())
      value = float(value[self.best_metric])
    except (OSError, ValueError, KeyError, TypeError):
      return None
    return None if value < 0 else value  # -1: saved without an evaluation

  def steps(self) -> list[int]:
    self._manager.reload()
    return sorted(self._manager.all_steps())

  def best_step(self) -> int | None:
    return self._manager.best_step()

  def restore(self, abstract_state=None, step: int | None = None):
    """Restores ``step`` (default: the newest that restores) into the structure of
    ``abstract_state`` (None: as saved, nested dicts of arrays; enough for ``["params"]``).

    Returns:
      ``(state, step)``, or ``(None, None)`` when the directory holds no step.

    Raises:
      CheckpointError: when steps exist but none can be restored (each failure is listed).
    """
    args = ocp.args.StandardRestore(
        None if abstract_state is None else
        jax.tree.map(ocp.utils.to_shape_dtype_struct, abstract_state))
    candidates = [step] if step is not None else sorted(self.steps(), reverse=True)
    if not candidates:
      return None, None
    failures = []
    for s in candidates:
      try:
        state = self._manager.restore(s, args=args)
        if failures:
          logging.warning("Restored checkpoint step %d after skipping unreadable steps: %s", s,
                          "; ".join(failures))
        return state, s
      except Exception as e:  # orbax raises many types for a damaged directory
        msg = f"step {s} in {self.directory}: {type(e).__name__}: {str(e)[:200]}"
        logging.warning("Cannot restore checkpoint %s; trying the previous step.", msg)
        failures.append(msg)
    raise CheckpointError(
        f"No checkpoint in {self.directory} could be restored (tried {candidates}):\n  "
        + "\n  ".join(failures)
        + "\nIf the run was trained with another config (its config.json), restore it with that "
        "config: the steps may be intact. Only if they are damaged, start afresh in another "
        "--workdir.")

  def close(self) -> None:
    self._manager.close()
