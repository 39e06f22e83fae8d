"""The schedule fires at the authors' epochs (their options.py and method.py)."""

import dataclasses

import pytest

from gaufuse_jax._src import schedule


@pytest.fixture
def ref():
  return schedule.reference_schedule()


def test_reference_phases(ref):
  schedule.validate_schedule(ref)
  p = lambda e: schedule.epoch_plan(ref, e)
  assert p(0).spl_weight == 1.0 and p(100).spl_weight == 1.0 and p(101).spl_weight == 0.5
  assert p(200).spl_weight == 0.5 and p(201).spl_weight == 1.0
  assert not p(100).use_memory and p(101).use_memory
  assert p(100).init_memory_after and not p(99).init_memory_after and not p(101).init_memory_after
  assert p(200).label_mode == schedule.LABEL_NONE and p(200).pseudo_weight == 0.0
  assert p(201).label_mode == schedule.LABEL_PLAIN
  assert p(201).pseudo_weight == pytest.approx(10.35)
  assert p(246).pseudo_weight < 50 and p(247).pseudo_weight == 50.0
  assert p(250).label_mode == schedule.LABEL_PLAIN and p(251).label_mode == schedule.LABEL_DELTA
  assert p(251).delta_scale == 2.0 and p(300).delta_scale == 2.0 and p(301).delta_scale == 2.15
  assert p(349).delta_scale == 2.15


def test_reference_generations_and_lr(ref):
  temps = {e: schedule.epoch_plan(ref, e).generation_temperature for e in range(350)}
  fired = {e: t for e, t in temps.items() if t is not None}
  assert fired == {200: 0.02, 230: 0.02, 245: 0.02, 260: 0.002, 275: 0.002, 300: 0.0016}
  lr = lambda e: schedule.epoch_plan(ref, e).learning_rate
  assert [lr(e) for e in (0, 79, 80, 199, 200, 244, 245, 259, 260, 349)] == [
      5e-5, 5e-5, 4e-5, 4e-5, 2.048e-5, 2.048e-5, 5.12e-7, 5.12e-7, 2.56e-7, 2.56e-7]


def test_scaled_schedule():
  s = schedule.reference_schedule(0.1)
  assert s.num_epochs == 35 and s.warmup_epochs == 10 and s.pseudo_start == 20
  assert tuple(s.generation_epochs) == (20, 23, 24, 26, 28, 30)
  schedule.validate_schedule(s)
  with pytest.raises(ValueError, match="collide"):
    schedule.reference_schedule(0.01)


def test_validate_errors(ref):
  ref.lr_values = (1e-3,)
  with pytest.raises(ValueError, match="lr_values"):
    schedule.validate_schedule(ref)


def test_plan_names_every_phase_and_warns_when_the_run_skips_the_method():
  from configs import default
  c = default.get_config()
  plan, warnings = schedule.describe_plan(c.schedule, eval_every=7, checkpoint_every=4)
  assert warnings == []
  assert "pseudo-label generations (start of epoch: fusion temperature): 16: 0.02, 18: 0.02" in plan
  assert "evaluations after 7, 14, 21, 28 epochs done" in plan
  assert "checkpoints after 4, 8, 12, 16, 20, 24, 28 epochs done" in plan
  c.schedule.num_epochs = 10  # the README's override example: ends before the first generation
  _, warnings = schedule.describe_plan(c.schedule, eval_every=7, checkpoint_every=4)
  assert warnings == [
      "pseudo-label generations at epochs [16, 18, 20, 21, 22, 24] fall outside num_epochs=10: "
      "they never run",
      "no epoch trains with pseudo labels (from epoch 17, num_epochs=10): this run is the "
      "backbone alone, not GauFuse"]
  c.schedule.num_epochs = 21
  assert schedule.describe_plan(c.schedule, eval_every=7, checkpoint_every=4)[1] == [
      "pseudo-label generations at epochs [21, 22, 24] fall outside num_epochs=21: they never "
      "run", "no epoch trains with Δ pseudo labels (from epoch 21, num_epochs=21)"]


def test_a_backbone_without_memory_never_uses_it():
  """Same labels, weights and generations; no memory branch, no memory filling, and the plan
  says so (and does not warn that the memory branch is never trained)."""
  ref = schedule.reference_schedule()
  for epoch in (0, 100, 101, 200, 260, 349):
    with_memory = schedule.epoch_plan(ref, epoch)
    without = schedule.epoch_plan(ref, epoch, memory=False)
    assert not without.use_memory and not without.init_memory_after
    assert dataclasses.replace(with_memory, use_memory=False, init_memory_after=False) == without
  assert schedule.epoch_plan(ref, 100).init_memory_after
  ref.num_epochs = 50  # ends within the warm-up
  plan, warnings = schedule.describe_plan(ref, eval_every=5, checkpoint_every=5, memory=False)
  assert "no memory bank (the backbone has none: its own losses until the pseudo labels)" in plan
  assert not any("memory" in w for w in warnings)
  assert any("memory branch is never trained" in w
             for w in schedule.describe_plan(ref, eval_every=5, checkpoint_every=5)[1])


def test_the_backbone_alone_is_planned_as_such_without_a_warning():
  """No generation configured (``configs/*.py:backbone``): the plan says so and warns of
  nothing."""
  from configs import thumos14_synth_stpn
  s = thumos14_synth_stpn.get_config("backbone").schedule
  plan, warnings = schedule.describe_plan(s, eval_every=5, checkpoint_every=5, memory=False)
  assert "no pseudo labels: no generation is configured (the backbone alone)" in plan
  assert "pseudo labels in the loss" not in plan and warnings == []
