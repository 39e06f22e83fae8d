"""From the config to datasets and post-processing settings."""

from __future__ import annotations

import numpy as np

from gaufuse_jax._src import data
from gaufuse_jax._src import localization
from gaufuse_jax._src import pseudo_labels


def _thresholds(spec) -> tuple[float, ...]:
  """``(start, stop, step)`` -> ``arange(start, stop, step)`` as a tuple of floats."""
  if len(spec) != 3:
    raise ValueError(f"thresholds must be (start, stop, step) for arange, got {tuple(spec)}")
  return tuple(float(x) for x in np.arange(*spec))


def localization_config(ev) -> localization.LocalizationConfig:
  """``config.eval`` -> the test-time ``LocalizationConfig``."""
  return localization.LocalizationConfig(
      class_threshold=ev.class_threshold, thresholds=_thresholds(ev.thresholds),
      max_proposals=ev.max_proposals, max_instances=ev.max_instances,
      outer_rule=ev.outer_rule, conventions=ev.conventions, suppression=ev.suppression,
      temperature=ev.temperature, overlap_threshold=ev.overlap_threshold, template=ev.template)


def load_datasets(dc):
  """``config.data`` -> ``(train, test)`` ``VideoDataset``s.

  Sources: ``"wtalc"`` (feature files in ``data_dir``), ``"semisynthetic"`` (generated features
  for the real annotations in ``annotation_dir``), ``"embedded"`` (generated, needs no files).

  Raises:
    ValueError: for an unknown source; the loaders raise for bad files.
  """
  if dc.source == "wtalc":
    kwargs = dict(dataset=dc.dataset, annotation_dir=dc.annotation_dir or None, fps=dc.fps,
                  frames_per_snippet=dc.frames_per_snippet, feature_dim=dc.feature_dim,
                  exclude_videos=tuple(dc.exclude_videos))
    return (data.load_wtalc(dc.data_dir, split="train", **kwargs),
            data.load_wtalc(dc.data_dir, split="test", **kwargs))
  if dc.source == "semisynthetic":
    return data.make_semisynthetic_dataset(
        dc.annotation_dir, dataset=dc.dataset, feature_dim=dc.feature_dim, seed=dc.seed,
        exclude_videos=tuple(dc.exclude_videos), **dc.generator)
  if dc.source == "embedded":
    return data.make_embedded_dataset(seed=dc.seed, feature_dim=dc.feature_dim, **dc.generator)
  raise ValueError(f"config.data.source must be 'wtalc', 'semisynthetic' or 'embedded', "
                   f"got {dc.source!r}")


def pseudo_label_config(pc) -> pseudo_labels.PseudoLabelConfig:
  """``config.pseudo`` -> ``PseudoLabelConfig`` (the fusion temperature is passed per
  generation, see ``generate_pseudo_labels``)."""
  loc = localization.LocalizationConfig(
      class_threshold=pc.class_threshold, thresholds=_thresholds(pc.thresholds),
      max_proposals=pc.max_proposals, max_instances=pc.max_instances, outer_rule=pc.outer_rule,
      conventions=pc.conventions, suppression=pc.suppression,
      overlap_threshold=pc.overlap_threshold, template=pc.template)
  return pseudo_labels.PseudoLabelConfig(localization=loc, outer_rule=pc.outer_rule,
                                         normalize=pc.normalize, solver=pc.solver)
