"""A resume cannot silently retrain a run directory's checkpoints under another config or data,
and a refused resume leaves the directory byte-identical."""

import json
import pathlib
import shutil

import pytest

from configs import tiny
from gaufuse_jax import train
from gaufuse_jax._src import run_directory
from gaufuse_jax._src.data import embedded


def _snapshot(directory: pathlib.Path) -> dict:
  return {str(p.relative_to(directory)): p.read_bytes()
          for p in sorted(directory.rglob("*")) if p.is_file()}


def test_mismatched_resume_of_a_real_run_is_refused_and_changes_nothing(run, tmp_path):
  workdir = tmp_path / "run"
  shutil.copytree(run.workdir, workdir)
  before = _snapshot(workdir)
  config = run.config.copy_and_resolve_references()
  config.seed += 1
  config.data.feature_dim = 48
  with pytest.raises(run_directory.ResumeMismatchError,
                     match=r"(?s)holds checkpoints trained with another config.*"
                           r"data\.feature_dim: 32 -> 48.*seed: \d+ -> \d+.*Nothing was written"
                           r".*--config\.resume_override=True"):
    train.train_and_evaluate(config, str(workdir))
  assert _snapshot(workdir) == before


def _fake_run(tmp_path, config, train_ds):
  (tmp_path / "checkpoints" / "4").mkdir(parents=True)
  run_directory.record(tmp_path, config, train_ds)


@pytest.fixture(scope="module")
def train_ds():
  return embedded.make_embedded_dataset(seed=0, feature_dim=8, num_train=4, num_test=4)[0]


def test_harmless_changes_resume(tmp_path, train_ds, caplog):
  config = tiny.get_config()
  _fake_run(tmp_path, config, train_ds)
  config.eval.every_epochs = 3
  config.checkpoint_every_epochs = 7
  config.data.data_dir = "/elsewhere"  # where the same data lives
  caplog.set_level("INFO")
  run_directory.check_config(tmp_path, config)
  run_directory.record(tmp_path, config, train_ds)
  assert any("eval.every_epochs: 4 -> 3" in r.getMessage() for r in caplog.records)
  assert json.loads((tmp_path / "config.json").read_text())["checkpoint_every_epochs"] == 7


def test_another_dataset_is_refused(tmp_path, train_ds):
  config = tiny.get_config()
  _fake_run(tmp_path, config, train_ds)
  other = embedded.make_embedded_dataset(seed=0, feature_dim=16, num_train=4, num_test=4)[0]
  before = _snapshot(tmp_path)
  with pytest.raises(run_directory.ResumeMismatchError,
                     match=r"(?s)trained with another dataset.*feature_dim: 8 -> 16"):
    run_directory.record(tmp_path, config, other)
  assert _snapshot(tmp_path) == before


def test_override_resumes_and_records_the_change(tmp_path, train_ds):
  config = tiny.get_config()
  _fake_run(tmp_path, config, train_ds)
  config.model.dropout_rate = 0.5
  config.resume_override = True
  run_directory.check_config(tmp_path, config)
  run_directory.record(tmp_path, config, train_ds)
  record = json.loads((tmp_path / run_directory.OVERRIDES_FILE).read_text())
  assert record["what"] == "config" and record["changes"] == [["model.dropout_rate", 0.6, 0.5]]
  assert json.loads((tmp_path / "config.json").read_text())["model"]["dropout_rate"] == 0.5


def test_a_fresh_directory_is_not_a_resume(tmp_path, train_ds):
  config = tiny.get_config()
  (tmp_path / "config.json").write_text(json.dumps({"seed": 12345}))  # a run that never saved
  run_directory.check_config(tmp_path, config)
  run_directory.record(tmp_path, config, train_ds)
  assert json.loads((tmp_path / "config.json").read_text())["seed"] == config.seed


def test_a_run_recorded_before_backbones_were_selectable_resumes_as_rskp(tmp_path, train_ds):
  """Its config.json has no model.backbone: it trained RSKP, so only another backbone differs."""
  config = tiny.get_config()
  _fake_run(tmp_path, config, train_ds)
  stored = json.loads((tmp_path / "config.json").read_text())
  del stored["model"]["backbone"]
  (tmp_path / "config.json").write_text(json.dumps(stored))
  run_directory.check_config(tmp_path, config)  # rskp: the same model
  config.model.backbone = "stpn"
  with pytest.raises(run_directory.ResumeMismatchError, match="model.backbone: 'rskp' -> 'stpn'"):
    run_directory.check_config(tmp_path, config)
