"""One check of a whole run config before any data is loaded or anything compiled.

``validate_config`` checks every field's type, range and allowed values and the rules between
fields, and raises one ``ConfigError`` that lists every problem, each naming the full field
(``config.schedule.generation_temperatures[0]``), what was expected and what was found. A run
that passes it fails later only on its data or its files, not on its config.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import numbers

from gaufuse_jax._src import evaluation
from gaufuse_jax._src import localization
from gaufuse_jax._src import matching
from gaufuse_jax._src import schedule as schedule_lib
from gaufuse_jax._src.data import embedded
from gaufuse_jax._src.data import synthetic
from gaufuse_jax._src.linpro import constraints as linpro_constraints
from gaufuse_jax._src.linpro import solvers as linpro_solvers
from gaufuse_jax._src.models import backbone
from gaufuse_jax._src.models import registry

DATA_SOURCES = ("wtalc", "semisynthetic", "embedded")


class ConfigError(ValueError):
  """A run config has fields of the wrong type, range or value (all of them listed)."""


def metric_names() -> tuple[str, ...]:
  """The scalar test metrics a run reports (``evaluation_loop.evaluate``): the candidates of
  ``config.best_metric``."""
  names = ["cmAP"]
  for protocol, thresholds in matching.DEFAULT_TIOU_THRESHOLDS.items():
    names += [f"{protocol}/mAP@{t:g}" for t in thresholds]
    names += [f"{protocol}/mAP@{name}" for name, needed in evaluation.AVERAGE_RANGES.items()
              if all(any(math.isclose(n, t) for t in thresholds) for n in needed)]
  return tuple(names)


class _Checker:
  """Collects the problems of one config, each as ``config.<field>: expected ..., found ...``."""

  def __init__(self, config):
    self.config = config
    self.problems = []

  def get(self, field):
    value = self.config
    for part in field.split("."):
      value = value[part]
    return value

  def add(self, field, expected, found):
    self.problems.append(f"config.{field}: expected {expected}, found {found!r}")

  def integer(self, field, minimum, value=None):
    value = self.get(field) if value is None else value
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < minimum:
      self.add(field, f"an integer >= {minimum}", value)

  def number(self, field, *, low=-math.inf, high=math.inf, low_open=False, value=None):
    value = self.get(field) if value is None else value
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > low if low_open else value >= low) and value <= high
    if not ok:
      bounds = ("> " if low_open else ">= ") + f"{low:g}" if low > -math.inf else ""
      bounds += (" and " if bounds else "") + f"<= {high:g}" if high < math.inf else ""
      self.add(field, "a finite number" + (f" {bounds}" if bounds else ""), value)

  def boolean(self, field):
    if not isinstance(self.get(field), bool):
      self.add(field, "True or False", self.get(field))

  def choice(self, field, allowed):
    if self.get(field) not in allowed:
      self.add(field, f"one of {tuple(allowed)}", self.get(field))

  def sequence(self, field, item_check, *, min_length=0):
    values = self.get(field)
    if not isinstance(values, (tuple, list)) or len(values) < min_length:
      self.add(field, f"a tuple of at least {min_length} values", values)
      return
    for i, v in enumerate(values):
      item_check(f"{field}[{i}]", v)

  def keywords(self, field, fn, *, fixed=()):
    """The entries of ``field`` are keyword arguments of ``fn`` (not ``fixed`` ones)."""
    params = inspect.signature(fn).parameters
    for key in self.get(field):
      if key not in params or key in fixed:
        allowed = sorted(k for k, p in params.items()
                         if k not in fixed and p.kind == p.KEYWORD_ONLY)
        self.add(f"{field}.{key}", f"an argument of {fn.__name__} (one of {allowed})",
                 self.get(field)[key])


def _top_level(c: _Checker) -> None:
  c.integer("seed", 0)
  c.boolean("distributed")
  c.integer("num_devices", 0)
  c.integer("batch_size", 1)
  c.integer("micro_batch_size", 0)
  c.integer("max_snippets", 0)
  c.sequence("bucket_sizes", lambda f, v: c.integer(f, 1, value=v))
  sizes = c.get("bucket_sizes")
  if isinstance(sizes, (tuple, list)) and any(b <= a for a, b in zip(sizes, sizes[1:])):
    c.add("bucket_sizes", "strictly increasing sizes", tuple(sizes))
  c.number("bucket_growth", low=1.0, low_open=True)
  c.integer("inference_buckets", 1)
  c.integer("memory_slots", 1)
  c.integer("checkpoint_every_epochs", 1)
  c.integer("keep_checkpoint_every_epochs", 0)
  c.boolean("grow_caps")
  if c.get("best_metric") not in metric_names():
    c.add("best_metric", f"a test metric, one of {metric_names()}", c.get("best_metric"))


def _data(c: _Checker) -> None:
  c.choice("data.source", DATA_SOURCES)
  source = c.get("data.source")
  for field in ("dataset", "data_dir", "annotation_dir"):
    if not isinstance(c.get(f"data.{field}"), str):
      c.add(f"data.{field}", "a string", c.get(f"data.{field}"))
  if source == "wtalc" and not c.get("data.data_dir"):
    c.add("data.data_dir", "the folder of the W-TALC feature file (--config.data.data_dir)", "")
  if source == "semisynthetic" and not c.get("data.annotation_dir"):
    c.add("data.annotation_dir", "the W-TALC annotation folder of the real videos", "")
  c.number("data.fps", low=0.0, low_open=True)
  c.number("data.frames_per_snippet", low=0.0, low_open=True)
  c.integer("data.feature_dim", 1)
  ratio = c.get("data.max_length_ratio")
  if not (isinstance(ratio, (int, float)) and not isinstance(ratio, bool)
          and (ratio == 0 or 1 <= ratio < math.inf)):
    c.add("data.max_length_ratio", "0 (off) or a finite number >= 1", ratio)
  c.integer("data.seed", 0)
  c.sequence("data.exclude_videos",
             lambda f, v: None if isinstance(v, str) else c.add(f, "a video name", v))
  generator = {"semisynthetic": synthetic.make_semisynthetic_dataset,
               "embedded": embedded.make_embedded_dataset}.get(source)
  if generator is not None:
    c.keywords("data.generator", generator,
               fixed=("seed", "feature_dim", "dataset", "exclude_videos", "annotation_dir"))
  elif source == "wtalc" and len(c.get("data.generator")):
    c.add("data.generator", "empty: only generated data (semisynthetic, embedded) uses it",
          dict(c.get("data.generator")))


def _model_and_optimizer(c: _Checker) -> None:
  model = c.get("model")
  name = model.get("backbone", "rskp")
  try:
    cls = registry.get_backbone(name)
  except ValueError as e:
    c.add("model.backbone", f"a registered name {registry.registered_names()} or an importable "
          f"'package.module:Class' subclass of gaufuse_jax.Backbone ({e})", name)
    cls = None
  if cls is not None:
    fields = set(registry.backbone_fields(cls)) - {"walk"}
    for key in model:
      if key != "backbone" and key not in fields:
        c.add(f"model.{key}", f"a field of the {cls.__name__} backbone (one of {sorted(fields)}; "
              f"configs/base.py:use_backbone gives a config the fields of its backbone)",
              model[key])
  for field in ("num_tokens", "em_iterations", "attention_dim", "filter_dim"):
    if field in model:
      c.integer(f"model.{field}", 1)
  if "dropout_rate" in model:
    c.number("model.dropout_rate", low=0.0, high=1.0)
    if c.get("model.dropout_rate") == 1.0:
      c.add("model.dropout_rate", "< 1 (1 drops every feature)", 1.0)
  if "walk_weight" in model:
    c.number("model.walk_weight", low=0.0, high=1.0)
  for field in ("logit_scale", "token_scale"):
    if field in model:
      c.number(f"model.{field}", low=0.0, low_open=True)
  for field in ("sparsity_weight", "norm_weight"):
    if field in model:
      c.number(f"model.{field}", low=0.0)
  if cls is not None and not any(p.startswith("config.model.") for p in c.problems):
    _check_backbone(c, cls)


def _check_backbone(c: _Checker, cls) -> None:
  """The backbone itself (``backbone.check_backbone`` on abstract values, 2 classes), before any
  data is loaded or any file written: a user's module that does not give what the library
  reads is named here."""
  feature_dim = c.get("data.feature_dim") if "feature_dim" in c.get("data") else 8
  if not isinstance(feature_dim, int) or feature_dim < 1:
    return  # reported with config.data
  fields = {k: v for k, v in c.get("model").items() if k != "backbone"}
  try:
    backbone.check_backbone(cls(num_classes=2, feature_dim=feature_dim, **fields), feature_dim)
  except (TypeError, ValueError) as e:
    c.add("model.backbone", f"a backbone that gives what the library reads ({e})",
          c.get("model").get("backbone", "rskp"))
  c.number("optimizer.b1", low=0.0, high=1.0)
  c.number("optimizer.b2", low=0.0, high=1.0)
  c.number("optimizer.eps", low=0.0, low_open=True)
  c.number("optimizer.weight_decay", low=0.0)


def _schedule(c: _Checker) -> None:
  c.integer("schedule.num_epochs", 1)
  for field in ("warmup_epochs", "pseudo_start", "delta_start"):
    c.integer(f"schedule.{field}", 0)
  for field in ("generation_epochs", "lr_boundaries", "delta_scale_epochs"):
    c.sequence(f"schedule.{field}", lambda f, v: c.integer(f, 0, value=v))
  c.sequence("schedule.generation_temperatures",
             lambda f, v: c.number(f, low=0.0, low_open=True, value=v))
  c.sequence("schedule.lr_values", lambda f, v: c.number(f, low=0.0, value=v), min_length=1)
  c.sequence("schedule.delta_scales", lambda f, v: c.number(f, value=v))
  c.sequence("schedule.spl_weights", lambda f, v: c.number(f, low=0.0, value=v))
  for field in ("pseudo_weight_base", "pseudo_weight_growth", "pseudo_weight_max"):
    c.number(f"schedule.{field}", low=0.0)
  if not c.problems:  # the cross-field rules need well-typed fields
    try:
      schedule_lib.validate_schedule(c.get("schedule"))
    except ValueError as e:
      c.problems.append(str(e))


def _localization(c: _Checker, section: str, *, omit=()) -> None:
  settings = dict(c.get(f"{section}.localization"))
  fields = {f.name for f in dataclasses.fields(localization.LocalizationConfig)} - set(omit)
  for key in set(settings) - fields:
    c.add(f"{section}.localization.{key}",
          f"a field of LocalizationConfig (one of {sorted(fields)})", settings.pop(key))
  if isinstance(settings.get("thresholds"), list):
    settings["thresholds"] = tuple(settings["thresholds"])
  try:
    localization.LocalizationConfig(**settings)
  except ValueError as e:
    c.problems.append(str(e).replace("LocalizationConfig.", f"config.{section}.localization.",
                                     1))


def _post_processing(c: _Checker) -> None:
  for section in ("pseudo", "eval"):
    c.number(f"{section}.frame_coef", low=0.0, high=1.0)
    c.number(f"{section}.video_coef", low=0.0, high=1.0)
  c.boolean("pseudo.teacher_dropout")
  c.choice("pseudo.outer_rule", ("gaufuse", "wtalc"))
  c.choice("pseudo.normalize", linpro_constraints.NORMALIZATIONS)
  c.choice("pseudo.solver", linpro_solvers.SOLVERS)
  _localization(c, "pseudo", omit=("temperature",))  # per generation: schedule temperatures
  c.integer("eval.every_epochs", 0)
  c.boolean("eval.ambiguous_filter")
  _localization(c, "eval")


def validate_config(config, *, data: bool = True) -> None:
  """Checks a whole run config (``configs/base.py``'s fields); ``data=False`` skips
  ``config.data`` (``launch.localize`` reads the run's ``dataset.json`` instead).

  Raises:
    ConfigError: listing every field with a bad type, range or value, or a missing or unknown
      one, each named in full (``config.eval.localization.temperature``), with what was
      expected and what was found.
  """
  c = _Checker(config)
  checks = (_top_level, _data, _model_and_optimizer, _schedule, _post_processing)
  for check in checks if data else tuple(c for c in checks if c is not _data):
    try:
      check(c)
    except (KeyError, AttributeError) as e:  # a field the checks need is missing
      c.problems.append(f"config: missing field {e} (compare with configs/base.py)")
  if c.problems:
    raise ConfigError(f"{len(c.problems)} bad config field(s):\n  " + "\n  ".join(c.problems))
