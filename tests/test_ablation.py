"""The ablation's variants and tables (gaufuse_jax.ablation); the training itself is tested in
test_train.py, and launch.ablate was run end to end for README's table."""

import dataclasses

import pytest

from configs import thumos14_synth
from configs import tiny
from gaufuse_jax import ablation
from gaufuse_jax._src import schedule as schedule_lib


def _plans(config):
  s = config.schedule
  return [schedule_lib.epoch_plan(s, e) for e in range(s.num_epochs)]


@pytest.mark.parametrize("get_config", [tiny.get_config, thumos14_synth.get_config])
def test_variants_share_the_warm_up_and_differ_after_it(get_config):
  config = get_config()
  start = config.schedule.pseudo_start
  warm = ablation.variant_config(config, "warmup", 7)
  assert warm.schedule.num_epochs == start and warm.seed == 7
  plans = {v: _plans(ablation.variant_config(config, v, 7)) for v in ablation.TRAINING_VARIANTS}
  for v, p in plans.items():
    # The warm-up checkpoint is a valid start for every variant: same plan before pseudo_start.
    assert p[:start] == _plans(warm), v
    assert len(p) == config.schedule.num_epochs
  assert plans["delta"] == _plans(config)
  assert all(p.pseudo_weight == 0 and p.generation_temperature is None
             for p in plans["backbone"])
  for v in ("linpro_nms", "linpro_fusion"):
    assert all(p.label_mode != schedule_lib.LABEL_DELTA for p in plans[v])
    assert any(p.label_mode == schedule_lib.LABEL_PLAIN for p in plans[v])
    # Only the Δ phase differs from the full method.
    assert [dataclasses.replace(p, label_mode=0, delta_scale=0) for p in plans[v]] == [
        dataclasses.replace(p, label_mode=0, delta_scale=0) for p in plans["delta"]]
  assert any(p.label_mode == schedule_lib.LABEL_DELTA for p in plans["delta"])
  for variant, suppression in (("linpro_nms", "nms"), ("linpro_fusion", "fusion")):
    c = ablation.variant_config(config, variant, 0)
    assert c.pseudo.localization.suppression == suppression
  assert config.seed == get_config().seed  # not mutated


def test_unknown_variant_and_setting_are_named():
  with pytest.raises(ValueError, match="'nope'"):
    ablation.variant_config(tiny.get_config(), "nope", 0)
  with pytest.raises(ValueError, match="'nope'"):
    ablation.test_config(tiny.get_config(), "nope")


def test_test_config_sets_the_eval_fields():
  c = ablation.test_config(tiny.get_config(), "fusion_laplace")
  assert (c.eval.localization.suppression, c.eval.localization.template) == ("fusion", "laplace")
  c = ablation.test_config(tiny.get_config(), "soft_nms")
  assert c.eval.localization.suppression == "soft_nms"


def test_format_tables_mean_and_std_over_seeds():
  results = {"delta": {"nms": {"0": {"a": 10.0}, "1": {"a": 20.0}, "2": {"a": 36.0}}}}
  rows = {"T": (("full", "delta", "nms"), ("missing", "backbone", "nms"))}
  text = ablation.format_tables(results, rows_by_title=rows, metrics=("a",))
  assert "| full | 22.00 ± 10.71 | 3 |" in text  # numpy std (ddof=0) of 10, 20, 36
  assert "| missing | n/a | 0 |" in text
  kept = ablation.format_tables(results, rows_by_title=rows, metrics=("a",),
                                keep=[("full", "delta", "nms")])
  assert "| full |" in kept and "missing" not in kept


def test_format_paired_differences_per_seed():
  results = {"delta": {"fusion": {"0": {"a": 30.0}, "1": {"a": 25.0}, "2": {"a": 40.0}}},
             "backbone": {"nms": {"0": {"a": 20.0}, "2": {"a": 41.0}}}}
  text = ablation.format_paired(results, metrics=("a",))
  assert "| 0 | 20.00 -> 30.00 (+10.00) |" in text and "| 2 | 41.00 -> 40.00 (-1.00) |" in text
  assert "| 1 |" not in text  # seed 1 has no baseline
  assert "| mean ± std | +4.50 ± 5.50 |" in text
  assert ablation.format_paired({"delta": results["delta"]}, metrics=("a",)) == ""


def test_select_rows():
  rows = ablation.select_rows(ablation.TABLE4 + ablation.TABLE3, variants=["backbone", "delta"],
                              settings=["nms", "fusion"])
  assert {(v, t) for _, v, t in rows} == {
      ("untrained", "fusion"), ("warmup", "fusion"), ("backbone", "nms"),
      ("backbone", "fusion"), ("delta", "nms"), ("delta", "fusion")}
  assert ablation.select_rows(ablation.TABLE4) == ablation.TABLE4
  with pytest.raises(ValueError, match="unknown variant"):
    ablation.select_rows(ablation.TABLE4, variants=["linpro"])
  with pytest.raises(ValueError, match="unknown test setting"):
    ablation.select_rows(ablation.TABLE4, settings=["nmss"])
