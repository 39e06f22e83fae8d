"""The GauFuse training schedule, in epochs, read from the config (the authors' ``method.py``).

Epochs are 0-based, as in the authors' code. With the reference settings:

| epochs    | pseudo label in the loss      | self-label (SPL) weight | memory |
|-----------|-------------------------------|-------------------------|--------|
| 0-100     | none                          | 1.0                     | off    |
| 101-200   | none                          | 0.5                     | on (from epoch 100) |
| 201-250   | latest generation             | 1.0                     | on     |
| 251-300   | 2 * (latest - previous)       | 1.0                     | on     |
| 301-349   | 2.15 * (latest - previous)    | 1.0                     | on     |

Generations run at the *start* of epochs 200, 230, 245, 260, 275, 300 with fusion temperatures
0.02, 0.02, 0.02, 0.002, 0.002, 0.0016; the pseudo-label loss weight is
``min(10 * 1.035**(epoch - 200), 50)``; the learning rate steps at epochs 80, 200, 245, 260.
Everything here is host-side Python on the epoch number; the per-epoch values enter the jitted
train step as traced scalars, so a new phase never recompiles.
"""

from __future__ import annotations

import bisect
import dataclasses

import ml_collections
import numpy as np

LABEL_NONE, LABEL_PLAIN, LABEL_DELTA = 0, 1, 2


@dataclasses.dataclass(frozen=True)
class EpochPlan:
  """What one epoch does.

  Attributes:
    learning_rate: Adam step size for this epoch.
    spl_weight: weight of the self-label loss.
    pseudo_weight: weight of the pseudo-label loss (0 when no label is used).
    label_mode: LABEL_NONE, LABEL_PLAIN (latest generation) or LABEL_DELTA.
    delta_scale: the Δ multiplier (paper eq. 8), 0 unless label_mode is LABEL_DELTA.
    use_memory: whether the memory branch is on.
    generation_temperature: fusion temperature of the pseudo-label generation that runs at the
      start of this epoch, or None when no generation runs.
    init_memory_after: whether the memory bank is filled from all training videos at the end
      of this epoch.
  """
  learning_rate: float
  spl_weight: float
  pseudo_weight: float
  label_mode: int
  delta_scale: float
  use_memory: bool
  generation_temperature: float | None
  init_memory_after: bool

  def step_hparams(self) -> dict:
    """The traced scalars ``steps.train_step`` takes as ``hparams`` (float32; int32 mode)."""
    return {"learning_rate": np.float32(self.learning_rate),
            "spl_weight": np.float32(self.spl_weight),
            "pseudo_weight": np.float32(self.pseudo_weight),
            "label_mode": np.int32(self.label_mode), "delta_scale": np.float32(self.delta_scale)}


def reference_schedule(scale: float = 1.0) -> ml_collections.ConfigDict:
  """The authors' schedule (``options.py``, ``method.py``), every epoch multiplied by ``scale``.

  Args:
    scale: factor on every epoch boundary (e.g. 0.1 turns 350 epochs into 35). Boundaries are
      rounded to whole epochs and kept strictly increasing where the reference has them so.

  Returns:
    A ConfigDict for ``config.schedule``.

  Raises:
    ValueError: if ``scale`` is not positive or is so small that two generations collide.
  """
  if scale <= 0:
    raise ValueError(f"reference_schedule: scale must be > 0, got {scale}")
  ep = lambda e: int(round(e * scale))
  generations = tuple(ep(e) for e in (200, 230, 245, 260, 275, 300))
  if len(set(generations)) != len(generations):
    raise ValueError(
        f"reference_schedule: scale={scale} makes pseudo-label generations collide: {generations}")
  s = ml_collections.ConfigDict()
  s.num_epochs = ep(350)
  s.warmup_epochs = ep(100)          # memory initialised at the end of this epoch
  s.spl_weights = (1.0, 0.5, 1.0)    # until warm-up, until pseudo_start, after
  s.pseudo_start = ep(200)           # labels used from epoch pseudo_start + 1 on
  s.generation_epochs = generations
  s.generation_temperatures = (0.02, 0.02, 0.02, 0.002, 0.002, 0.0016)
  s.delta_start = ep(250)            # Δ labels from epoch delta_start + 1 on
  s.delta_scale_epochs = (ep(250), ep(300))  # Δ scale i applies after epoch delta_scale_epochs[i]
  s.delta_scales = (2.0, 2.15)
  s.pseudo_weight_base = 10.0
  s.pseudo_weight_growth = 1.035
  s.pseudo_weight_max = 50.0
  s.lr_boundaries = (ep(80), ep(200), ep(245), ep(260))
  s.lr_values = (5e-5, 4e-5, 2.048e-5, 5.12e-7, 2.56e-7)
  return s


def validate_schedule(s: ml_collections.ConfigDict) -> None:
  """Checks a ``config.schedule``; raises ValueError naming the field that is wrong."""
  def increasing(name, values):
    if any(b <= a for a, b in zip(values, values[1:])):
      raise ValueError(f"config.schedule.{name} must be strictly increasing, got {tuple(values)}")
  increasing("generation_epochs", s.generation_epochs)
  increasing("lr_boundaries", s.lr_boundaries)
  increasing("delta_scale_epochs", s.delta_scale_epochs)
  if len(s.generation_temperatures) != len(s.generation_epochs):
    raise ValueError(
        "config.schedule.generation_temperatures must have one entry per generation epoch: "
        f"{len(s.generation_temperatures)} vs {len(s.generation_epochs)}")
  if len(s.lr_values) != len(s.lr_boundaries) + 1:
    raise ValueError(
        "config.schedule.lr_values must have one more entry than lr_boundaries: "
        f"{len(s.lr_values)} vs {len(s.lr_boundaries)}")
  if len(s.delta_scales) != len(s.delta_scale_epochs):
    raise ValueError("config.schedule.delta_scales and delta_scale_epochs differ in length")
  if len(s.spl_weights) != 3:
    raise ValueError(f"config.schedule.spl_weights needs 3 values, got {tuple(s.spl_weights)}")
  if s.generation_epochs and s.generation_epochs[0] > s.pseudo_start:
    raise ValueError(
        f"config.schedule.pseudo_start={s.pseudo_start} is before the first generation "
        f"({s.generation_epochs[0]}): there would be no pseudo label to use")
  if s.delta_start < s.pseudo_start:
    raise ValueError("config.schedule.delta_start must be >= pseudo_start")


def epoch_plan(s: ml_collections.ConfigDict, epoch: int, *, memory: bool = True) -> EpochPlan:
  """The plan of 0-based ``epoch`` under schedule ``s`` (see the module docstring); with
  ``memory=False`` (a backbone without a memory bank) the memory is never on."""
  if epoch <= s.warmup_epochs:
    spl = s.spl_weights[0]
  elif epoch <= s.pseudo_start:
    spl = s.spl_weights[1]
  else:
    spl = s.spl_weights[2]
  if epoch <= s.pseudo_start or not s.generation_epochs:
    mode, pseudo_weight = LABEL_NONE, 0.0
  else:
    mode = LABEL_DELTA if epoch > s.delta_start else LABEL_PLAIN
    pseudo_weight = min(s.pseudo_weight_base * s.pseudo_weight_growth**(epoch - s.pseudo_start),
                        s.pseudo_weight_max)
  delta_scale = 0.0
  if mode == LABEL_DELTA:
    i = bisect.bisect_left(s.delta_scale_epochs, epoch) - 1  # last boundary strictly below epoch
    delta_scale = s.delta_scales[max(i, 0)]
  temperature = None
  if epoch in tuple(s.generation_epochs):
    temperature = s.generation_temperatures[tuple(s.generation_epochs).index(epoch)]
  return EpochPlan(
      learning_rate=s.lr_values[bisect.bisect_right(s.lr_boundaries, epoch)],
      spl_weight=float(spl),
      pseudo_weight=float(pseudo_weight),
      label_mode=mode,
      delta_scale=float(delta_scale),
      use_memory=memory and epoch > s.warmup_epochs,
      generation_temperature=temperature,
      init_memory_after=memory and epoch == s.warmup_epochs,
  )


def _epochs(values) -> str:
  values = list(values)
  return ", ".join(map(str, values[:12])) + (f", ... ({len(values)} in all)"
                                              if len(values) > 12 else "") if values else "none"


def describe_plan(s: ml_collections.ConfigDict, *, eval_every: int, checkpoint_every: int,
                  memory: bool = True) -> tuple[str, list[str]]:
  """The run's plan in one block of text, and a warning for each phase of the method that
  ``s.num_epochs`` leaves out (epochs 0-based, as in the authors' code; evaluations and
  checkpoints after the epoch named); ``memory=False``: a backbone without a memory bank."""
  n = s.num_epochs
  last = n - 1
  generations = [(e, t) for e, t in zip(s.generation_epochs, s.generation_temperatures)]
  evaluations = [k for k in range(1, n + 1) if k == n or (eval_every and k % eval_every == 0)]
  checkpoints = [k for k in range(1, n + 1) if k == n or k % checkpoint_every == 0]
  lines = [
      f"Plan of {n} epochs (indices 0-{last}, as in the authors' code; the log's 'epoch k/{n}', "
      "checkpoints/<k> and metrics steps count the epochs done):",
      f"  warm-up: epochs 0-{min(s.warmup_epochs, last)}; " + (
          f"memory bank filled after epoch {s.warmup_epochs}, memory branch from epoch "
          f"{s.warmup_epochs + 1}" if memory else "no memory bank (the backbone has none: its own "
          "losses until the pseudo labels)"),
      "  pseudo-label generations (start of epoch: fusion temperature): "
      + (", ".join(f"{e}: {t:g}" for e, t in generations if e < n) or "none"),
      (f"  pseudo labels in the loss from epoch {s.pseudo_start + 1}, Δ labels from epoch "
       f"{s.delta_start + 1}" if generations else
       "  no pseudo labels: no generation is configured (the backbone alone)"),
      f"  learning rate {s.lr_values[0]:g}, steps at epochs "
      f"{_epochs(e for e in s.lr_boundaries if e < n)}",
      f"  evaluations after {_epochs(evaluations)} epochs done",
      f"  checkpoints after {_epochs(checkpoints)} epochs done (and every evaluation that is "
      "the best so far)",
  ]
  warnings = []
  if memory and s.warmup_epochs >= last:
    warnings.append(f"the warm-up (epochs 0-{s.warmup_epochs}) fills the run: the memory branch "
                    "is never trained")
  outside = [e for e, _ in generations if e >= n]
  if outside:
    warnings.append(f"pseudo-label generations at epochs {outside} fall outside "
                    f"num_epochs={n}: they never run")
  if generations and (s.pseudo_start >= last or generations[0][0] >= n):
    warnings.append(f"no epoch trains with pseudo labels (from epoch {s.pseudo_start + 1}, "
                    f"num_epochs={n}): this run is the backbone alone, not GauFuse")
  elif generations and s.delta_start >= last:
    warnings.append(f"no epoch trains with Δ pseudo labels (from epoch {s.delta_start + 1}, "
                    f"num_epochs={n})")
  return "\n".join(lines), warnings
