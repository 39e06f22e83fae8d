"""The model of the config and its compiled (pmapped) steps: training (accumulated micro-batches,
one update), memory initialisation, and the localization steps of evaluation and pseudo labels,
whose proposal / instance caps grow instead of dropping."""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable, NamedTuple

from absl import logging
import jax
from jax.experimental import multihost_utils
import numpy as np

from gaufuse_jax._src import devices
from gaufuse_jax._src import input_pipeline
from gaufuse_jax._src import localization
from gaufuse_jax._src import pseudo_labels as pl_lib
from gaufuse_jax._src import steps
from gaufuse_jax._src.models import backbone as backbone_lib
from gaufuse_jax._src.models import registry


def build_model(config, dataset) -> backbone_lib.Backbone:
  """The backbone ``config.model.backbone`` (``registry.get_backbone``) for ``dataset``'s classes
  and feature size, with the other ``config.model`` fields, checked
  (``backbone.check_backbone``: a ValueError names what a user's backbone got wrong)."""
  fields = dict(config.model)
  cls = registry.get_backbone(fields.pop("backbone", "rskp"))
  model = cls(num_classes=dataset.num_classes, feature_dim=dataset.feature_dim, **fields)
  backbone_lib.check_backbone(model, dataset.feature_dim)
  return model


class TrainSteps(NamedTuple):
  """The pmapped training steps (``steps.py``). An optimizer step is ``init_accumulator``, then
  ``accumulate[use_memory]`` on each micro-batch (each padded to its own length), then ``apply``."""
  init_accumulator: Callable
  accumulate: dict  # {use_memory (bool): step}; only False for a model without memory
  apply: Callable
  memory_init: Callable


def make_train_steps(config, model, tx, train_ds) -> TrainSteps:
  """The ``TrainSteps`` of ``config`` for ``model``, the optimizer ``tx`` and ``train_ds`` (its
  largest number of classes per video bounds the memory-bank reads)."""
  memory_states = (False, True) if model.uses_memory else (False,)
  accumulate = {
      use_memory: devices.pmap(
          functools.partial(steps.accumulate_step, model=model, use_memory=use_memory,
                            pseudo_frame_coef=config.pseudo.frame_coef,
                            max_labels=max(int(train_ds.labels.sum(1).max()), 1)),
          config, donate_argnums=(1,))
      for use_memory in memory_states}
  return TrainSteps(
      init_accumulator=devices.pmap(
          functools.partial(steps.init_accumulator, model=model), config), accumulate=accumulate,
      apply=devices.pmap(functools.partial(steps.apply_step, tx=tx), config, donate_argnums=(0,)),
      memory_init=devices.pmap(functools.partial(steps.memory_init_step, model=model), config))


class GrowingStep:
  """A pmapped localization step whose proposal / instance caps grow instead of dropping.

  ``make(loc_config)`` returns the pmapped step for those static caps; the last element of its
  output is a dict with per-(video, class) ``proposals_dropped`` and ``instances_dropped``
  arrays. A call returns the output on the host. With ``grow``, a batch that would drop
  anything (on any process: they decide together, so every process runs the same program) is
  run again with caps that hold it (``localization.grow_caps``; a recompilation) and the larger
  caps are kept for later calls, so nothing is ever dropped; without it, the drops are counted
  in ``dropped``.

  Attributes:
    loc_config: the caps in use.
    dropped: ``{"proposals": int, "instances": int}`` dropped since the last ``take_dropped``.
  """

  def __init__(self, make: Callable, loc_config: localization.LocalizationConfig, *,
               grow: bool, name: str):
    self.loc_config, self._make, self._grow, self._name = loc_config, make, grow, name
    self._fn = make(loc_config)
    self.dropped = {"proposals": 0, "instances": 0}

  def __call__(self, *args):
    while True:
      out = jax.device_get(self._fn(*args))
      stats = (out[-1]["proposals_dropped"], out[-1]["instances_dropped"])
      drops = np.array([np.sum(x) for x in stats] + [np.max(x, initial=0) for x in stats],
                       np.int64)
      if jax.process_count() > 1:
        gathered = multihost_utils.process_allgather(drops)
        drops = np.concatenate([gathered[:, :2].sum(0), gathered[:, 2:].max(0)])
      if not (self._grow and drops[:2].any()):
        self.dropped["proposals"] += int(drops[0])
        self.dropped["instances"] += int(drops[1])
        return out
      self.loc_config = localization.grow_caps(
          self.loc_config, proposals_dropped=int(drops[2]), instances_dropped=int(drops[3]))
      logging.info("%s: a batch would drop %d proposals and %d instances; running it again "
                   "with max_proposals=%d, max_instances=%d.", self._name, drops[0], drops[1],
                   self.loc_config.max_proposals, self.loc_config.max_instances)
      self._fn = self._make(self.loc_config)

  def take_dropped(self) -> dict:
    """The drop counts and caps since the last call (``proposals_dropped``,
    ``instances_dropped``, ``max_proposals``, ``max_instances``); resets the counts."""
    out = {"proposals_dropped": self.dropped["proposals"],
           "instances_dropped": self.dropped["instances"],
           "max_proposals": self.loc_config.max_proposals,
           "max_instances": self.loc_config.max_instances}
    self.dropped = {"proposals": 0, "instances": 0}
    return out


def make_eval_step(config, model) -> GrowingStep:
  """The pmapped test-time step of ``config.eval`` (see ``steps.eval_step``), growing its caps
  when ``config.grow_caps``."""
  def make(loc_config):
    return devices.pmap(functools.partial(
        steps.eval_step, model=model, loc_config=loc_config, frame_coef=config.eval.frame_coef,
        video_coef=config.eval.video_coef), config)
  return GrowingStep(make, input_pipeline.localization_config(config.eval.localization),
                     grow=config.grow_caps, name="localization")


def make_pseudo_label_step(config, model) -> GrowingStep:
  """The pseudo-label step of ``config.pseudo``, growing its caps when ``config.grow_caps``:
  ``step(params, batch, temperatures, rngs) -> (labels [n, B, T, C+1], diagnostics)`` on the
  host (see ``pseudo_labels.generate_pseudo_labels``). Three pmapped programs: the teacher's
  instances (``steps.pseudo_label_instances``, one per length bucket), their LPs
  (``pseudo_labels.solve_pseudo_labels``: its shapes do not depend on the length, so it compiles
  once per caps, not per bucket) and the labels (``assemble_pseudo_labels``, small)."""
  pl_config = input_pipeline.pseudo_label_config(config.pseudo)
  assemble = devices.pmap(lambda solution, lengths, num_snippets: pl_lib.assemble_pseudo_labels(
      solution, lengths, num_snippets=num_snippets), config, static_broadcasted_argnums=(2,))

  def make(loc_config):
    instances = devices.pmap(functools.partial(
        steps.pseudo_label_instances, model=model, loc_config=loc_config,
        frame_coef=config.pseudo.frame_coef, video_coef=config.pseudo.video_coef), config)
    solve = devices.pmap(functools.partial(pl_lib.solve_pseudo_labels,
                                   cfg=dataclasses.replace(pl_config, localization=loc_config)),
                 config)

    def step(params, batch, temperatures, rngs):
      found, stats = instances(params, batch, temperatures, rngs)
      solution, diagnostics = solve(found, batch["valid_length"])
      labels = assemble(solution, batch["valid_length"], batch["features"].shape[-2])
      drops = {k: stats[k] for k in ("proposals_dropped", "instances_dropped")}
      return labels, {**diagnostics, **drops}
    return step
  return GrowingStep(make, pl_config.localization, grow=config.grow_caps, name="pseudo labels")
