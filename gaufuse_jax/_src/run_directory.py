"""A run directory's record of how its checkpoints were trained (``config.json``,
``dataset.json``) and the check that a resume keeps it true.

A resume whose config or data would train another model than the one in the checkpoints (model,
data, seed, schedule, optimizer, pseudo labels, batch) is refused before anything in the
directory is written, with the differing fields listed; ``config.resume_override=True`` resumes
anyway and appends the change to ``resume_overrides.jsonl``. Other fields (evaluation,
checkpoint intervals, devices, buckets) may change on a resume; the changes are logged.
"""

from __future__ import annotations

import json
import pathlib
import time

from absl import logging

from gaufuse_jax._src import results

# Top-level config fields whose change makes the checkpoints another model's.
TRAINING_FIELDS = ("seed", "batch_size", "micro_batch_size", "max_snippets", "memory_slots",
                   "grow_caps", "data", "model", "optimizer", "schedule", "pseudo")
# Fields under TRAINING_FIELDS that only say where the same data is.
LOCATION_FIELDS = ("data.data_dir", "data.annotation_dir")
OVERRIDES_FILE = "resume_overrides.jsonl"


class ResumeMismatchError(ValueError):
  """A resume would train the checkpoints of a run directory under another config or data."""


def _flatten(tree, prefix=""):
  if isinstance(tree, dict):
    out = {}
    for key, value in tree.items():
      out.update(_flatten(value, f"{prefix}{key}."))
    return out
  return {prefix[:-1]: tree}


def differences(stored: dict, new: dict) -> list[tuple[str, object, object]]:
  """``(field, stored value, new value)`` of every leaf that differs (or exists in one only),
  dotted field names, sorted."""
  a, b = _flatten(stored), _flatten(new)
  missing = "<absent>"
  return [(k, a.get(k, missing), b.get(k, missing)) for k in sorted(set(a) | set(b))
          if a.get(k, missing) != b.get(k, missing)]


def is_resume(workdir) -> bool:
  """Whether ``workdir`` holds checkpoint steps (``checkpoints/<epoch>``)."""
  directory = pathlib.Path(workdir) / "checkpoints"
  return directory.is_dir() and any(p.name.isdigit() for p in directory.iterdir())


def _config_dict(config) -> dict:
  return json.loads(config.to_json_best_effort())


def _refuse_or_record(workdir, config, what, changed):
  listing = "\n  ".join(f"{field}: {old!r} -> {new!r}" for field, old, new in changed)
  if not config.resume_override:
    raise ResumeMismatchError(
        f"{workdir} holds checkpoints trained with another {what}; resuming would continue "
        f"them under these changes:\n  {listing}\nNothing was written. Start the new run in "
        f"another --workdir, restore the old values (the run's config.json / dataset.json), or "
        f"pass --config.resume_override=True to resume anyway (the change is recorded in "
        f"{OVERRIDES_FILE}).")
  logging.warning("Resuming %s with another %s (config.resume_override=True):\n  %s", workdir,
                  what, listing)
  with open(pathlib.Path(workdir) / OVERRIDES_FILE, "a") as f:
    f.write(json.dumps({"time": time.strftime("%Y-%m-%d %H:%M:%S"), "what": what,
                        "changes": [[k, a, b] for k, a, b in changed]}, default=str) + "\n")


def check_config(workdir, config) -> None:
  """Compares ``config`` with ``workdir/config.json`` when ``workdir`` holds checkpoints.

  Raises:
    ResumeMismatchError: a training field differs (see the module docstring) and
      ``config.resume_override`` is off; nothing is written then.
  """
  path = pathlib.Path(workdir) / "config.json"
  if not (is_resume(workdir) and path.is_file()):
    return
  stored = json.loads(path.read_text())
  # Runs recorded before backbones were selectable trained RSKP.
  stored.get("model", {}).setdefault("backbone", "rskp")
  changed = differences(stored, _config_dict(config))
  changed = [c for c in changed if c[0] != "resume_override"]
  training = [c for c in changed if c[0].split(".")[0] in TRAINING_FIELDS
              and c[0] not in LOCATION_FIELDS]
  if training:
    _refuse_or_record(workdir, config, "config", training)
  harmless = [c for c in changed if c not in training]
  if harmless:
    logging.info("Resuming with changed settings: %s",
                 "; ".join(f"{k}: {a!r} -> {b!r}" for k, a, b in harmless))


def record(workdir, config, train_ds) -> None:
  """Checks ``train_ds`` against ``workdir/dataset.json`` on a resume (as ``check_config``),
  then writes ``config.json`` and ``dataset.json``."""
  workdir = pathlib.Path(workdir)
  info = results.run_info(train_ds)
  path = workdir / "dataset.json"
  if is_resume(workdir) and path.is_file():
    changed = differences(json.loads(path.read_text()), info)
    if changed:
      _refuse_or_record(workdir, config, "dataset", changed)
  workdir.mkdir(parents=True, exist_ok=True)
  (workdir / "config.json").write_text(config.to_json_best_effort(indent=2))
  path.write_text(json.dumps(info, indent=2))
