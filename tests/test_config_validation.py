"""``validate_config``: every bad field of a run config is named before any data or compilation,
and every shipped config passes."""

import importlib
import inspect
import pathlib

import pytest

from configs import base
from configs import thumos14
from configs import tiny
from gaufuse_jax import train
from gaufuse_jax._src import compilation
from gaufuse_jax._src import config_validation

SHIPPED = sorted(p.stem for p in (pathlib.Path(__file__).parents[1] / "configs").glob("*.py")
                 if p.stem not in ("__init__", "base"))


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_configs_pass(name):
  """Every ``configs/*.py``, with each method its argument takes (``:backbone``)."""
  get_config = importlib.import_module(f"configs.{name}").get_config
  methods = base.METHODS if inspect.signature(get_config).parameters else (None,)
  for method in methods:
    config = get_config() if method is None else get_config(method)
    if config.data.source == "wtalc":
      config.data.data_dir = "/path/to/features"
    config_validation.validate_config(config)
  assert len(SHIPPED) >= 11


# (field path, bad value, what the message must say after "config.<field>: ").
BAD = [
    ("schedule.generation_temperatures", (0.0, 0.02, 0.02, 0.002, 0.002, 0.0016),
     r"schedule\.generation_temperatures\[0\]: expected a finite number > 0, found 0\.0"),
    ("schedule.generation_temperatures", (0.02, float("nan"), 0.02, 0.002, 0.002, 0.0016),
     r"schedule\.generation_temperatures\[1\]: expected a finite number > 0, found nan"),
    ("schedule.num_epochs", 0, r"schedule\.num_epochs: expected an integer >= 1, found 0"),
    ("schedule.lr_values", (5e-5, -1.0, 2e-5, 5e-7, 2e-7),
     r"schedule\.lr_values\[1\]: expected a finite number >= 0, found -1\.0"),
    ("checkpoint_every_epochs", 0, r"checkpoint_every_epochs: expected an integer >= 1, found 0"),
    ("best_metric", "wtalc/mAP@0.1:0.8", r"best_metric: expected a test metric, one of \("),
    ("micro_batch_size", -1, r"micro_batch_size: expected an integer >= 0, found -1"),
    ("bucket_sizes", (256, 128), r"bucket_sizes: expected strictly increasing sizes"),
    ("data.source", "hdf5", r"data\.source: expected one of \('wtalc', 'semisynthetic', "),
    ("data.fps", -25.0, r"data\.fps: expected a finite number > 0, found -25\.0"),
    ("data.max_length_ratio", 0.5, r"data\.max_length_ratio: expected 0 \(off\) or a finite"),
    ("model.dropout_rate", 1.0, r"model\.dropout_rate: expected < 1"),
    ("optimizer.eps", 0.0, r"optimizer\.eps: expected a finite number > 0, found 0\.0"),
    ("eval.localization.temperature", 0.0,
     r"eval\.localization\.temperature must be a finite number > 0"),
    ("eval.localization.template", "cauchy", r"eval\.localization\.template must be one of"),
    ("eval.localization.thresholds", (), r"eval\.localization\.thresholds must be a non-empty"),
    ("pseudo.localization.suppression", "wbf", r"pseudo\.localization\.suppression must be"),
    ("pseudo.normalize", "median", r"pseudo\.normalize: expected one of \('sum', 'mean'\)"),
    ("pseudo.solver", "highs", r"pseudo\.solver: expected one of \('ipm', 'qpax'"),
    ("pseudo.frame_coef", 1.5, r"pseudo\.frame_coef: expected a finite number >= 0 and <= 1"),
    ("eval.every_epochs", -1, r"eval\.every_epochs: expected an integer >= 0, found -1"),
]


def _set(config, field, value):
  *parents, leaf = field.split(".")
  node = config
  for p in parents:
    node = node[p]
  node[leaf] = value


@pytest.mark.parametrize("field, value, message", BAD, ids=[b[0] for b in BAD])
def test_bad_field_is_named(field, value, message):
  config = tiny.get_config()
  _set(config, field, value)
  with pytest.raises(config_validation.ConfigError, match=r"1 bad config field\(s\):\n  config\."
                     + message):
    config_validation.validate_config(config)


def test_every_problem_is_listed_at_once():
  config = tiny.get_config()
  config.batch_size = 0
  config.data.fps = 0.0
  config.eval.localization.template = "cauchy"
  with pytest.raises(config_validation.ConfigError, match=r"(?s)3 bad config field\(s\):.*"
                     r"config\.batch_size.*config\.data\.fps.*config\.eval\.localization\.template"):
    config_validation.validate_config(config)


def test_unknown_fields_are_named():
  config = tiny.get_config()
  config.model.num_heads = 4
  config.eval.localization.nms_sigma = 0.5
  config.data.generator.num_videoz = 3
  with pytest.raises(config_validation.ConfigError, match=r"(?s)3 bad config field\(s\):"
                     r".*config\.data\.generator\.num_videoz: expected an argument of "
                     r"make_embedded_dataset.*config\.model\.num_heads: expected a field of the "
                     r"RSKP backbone.*config\.eval\.localization\.nms_sigma: expected a field of "
                     r"LocalizationConfig"):
    config_validation.validate_config(config)


def test_missing_wtalc_data_dir_is_named():
  with pytest.raises(config_validation.ConfigError, match=r"config\.data\.data_dir: expected the "
                     r"folder of the W-TALC feature file"):
    config_validation.validate_config(thumos14.get_config())
  config_validation.validate_config(thumos14.get_config(), data=False)  # launch.localize


def test_a_zero_temperature_run_fails_at_start_before_any_work(tmp_path):
  """The zero-temperature run used to train to the end with every pseudo label 0."""
  config = tiny.get_config()
  config.schedule.generation_temperatures = (0.0,) + tuple(
      config.schedule.generation_temperatures[1:])
  counter = compilation.CompilationCounter()
  with pytest.raises(config_validation.ConfigError,
                     match=r"schedule\.generation_temperatures\[0\]"):
    train.train_and_evaluate(config, str(tmp_path / "run"))
  assert counter.peek()[0] == 0  # nothing compiled
  assert not (tmp_path / "run").exists()  # nothing written
