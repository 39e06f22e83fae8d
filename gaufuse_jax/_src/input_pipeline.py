"""From the config to datasets, their padded batches and bucket sizes, and post-processing
settings."""

from __future__ import annotations

import sys

from absl import logging
import jax
import numpy as np
import tqdm

from gaufuse_jax._src import data
from gaufuse_jax._src import devices
from gaufuse_jax._src import localization
from gaufuse_jax._src import pseudo_labels
from gaufuse_jax._src.data import batching


def load_datasets(dc):
  """``config.data`` -> ``(train, test)`` ``VideoDataset``s, each checked usable
  (``VideoDataset.check_usable``) and its loading report logged.

  Sources: ``"wtalc"`` (feature files in ``data_dir``), ``"semisynthetic"`` (generated features
  for the real annotations in ``annotation_dir``), ``"embedded"`` (generated, needs no files).

  Raises:
    ValueError: an unknown source; DataError: the loaders' bad files, or an unusable split.
  """
  datasets = _load_datasets(dc)
  for ds in datasets:
    ds.check_usable()
    report = {k: v for k, v in ds.report.items() if k != "skipped_short_names"}
    logging.info("Data %s (%s): %s", ds.name, ds.split,
                 ", ".join(f"{k}={v}" for k, v in report.items()))
    repaired = {k: report.get(k, 0) for k in ("videos_without_labels", "skipped_short_videos",
                                              "clipped_segments", "dropped_segments")}
    if any(repaired.values()):
      logging.warning("Data %s (%s): %s.", ds.name, ds.split,
                      ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in repaired.items() if v))
  return datasets


def _load_datasets(dc):
  if dc.source == "wtalc":
    kwargs = dict(dataset=dc.dataset, annotation_dir=dc.annotation_dir or None, fps=dc.fps,
                  frames_per_snippet=dc.frames_per_snippet, feature_dim=dc.feature_dim,
                  exclude_videos=tuple(dc.exclude_videos), max_length_ratio=dc.max_length_ratio)
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


def localization_config(settings) -> localization.LocalizationConfig:
  """``config.eval.localization`` / ``config.pseudo.localization`` (the dataclass's own field
  names) -> ``LocalizationConfig``."""
  return localization.LocalizationConfig(
      **{k: tuple(v) if k == "thresholds" else v for k, v in settings.items()})


def pseudo_label_config(pc) -> pseudo_labels.PseudoLabelConfig:
  """``config.pseudo`` -> ``PseudoLabelConfig`` (the fusion temperature is passed per
  generation, see ``generate_pseudo_labels``)."""
  return pseudo_labels.PseudoLabelConfig(
      localization=localization_config(pc.localization), outer_rule=pc.outer_rule,
      normalize=pc.normalize, solver=pc.solver)


def batches(config, dataset, *, bucket_sizes):
  """``(iterator, count)`` of this process's padded batches of whole videos (leading local-device
  axis), in order of decreasing length so that each batch pads little: evaluation, pseudo labels
  and memory initialisation, where the order does not matter."""
  iterator = batching.iterate_batches(
      dataset, batch_size=config.batch_size, seed=config.seed, epoch=0, shuffle=False,
      sort_by_length=True, bucket_sizes=bucket_sizes,
      num_devices=len(devices.local_devices(config)),
      process_index=jax.process_index(), process_count=jax.process_count())
  count = batching.num_batches(dataset, batch_size=config.batch_size,
                               process_count=jax.process_count())
  return iterator, count


def train_batches(config, dataset, *, epoch, bucket_sizes):
  """``(iterator, count)`` of this process's optimizer steps of one epoch, each a list of
  micro-batches (``batching.iterate_micro_batches`` with ``config.micro_batch_size``; crops of
  ``config.max_snippets``)."""
  ndev = len(devices.local_devices(config))
  iterator = batching.iterate_micro_batches(
      dataset, batch_size=config.batch_size, seed=config.seed, epoch=epoch,
      micro_batch_size=config.micro_batch_size or config.batch_size // ndev,
      bucket_sizes=bucket_sizes, max_snippets=config.max_snippets or None, num_devices=ndev,
      process_index=jax.process_index(), process_count=jax.process_count())
  count = batching.num_batches(dataset, batch_size=config.batch_size,
                               process_count=jax.process_count())
  return iterator, count


def bucket_sizes(config, *datasets, crop=False) -> tuple[int, ...]:
  """``config.bucket_sizes`` when set; else, for whole videos (evaluation, pseudo labels, memory
  initialisation: the batches of ``batches``, fixed in advance), the
  ``config.inference_buckets`` sizes that pad the batches of all ``datasets`` least
  (``batching.fitted_bucket_sizes``); with ``crop`` (training, one video per micro-batch, crops
  of ``config.max_snippets``), the used rungs of the ladder of ``config.bucket_growth``
  (``batching.default_bucket_sizes``)."""
  if config.bucket_sizes:
    return tuple(config.bucket_sizes)
  if crop:
    return batching.default_bucket_sizes(
        np.concatenate([d.lengths for d in datasets]), growth=config.bucket_growth,
        max_snippets=config.max_snippets or None)
  per_batch = config.batch_size * jax.process_count()  # a global batch of ``batches``
  longest = [d.lengths[batching.epoch_order(len(d), seed=0, epoch=0, shuffle=False,
                                            lengths=d.lengths)][::per_batch] for d in datasets]
  return batching.fitted_bucket_sizes(np.concatenate(longest),
                                      num_buckets=config.inference_buckets)


def progress(iterable, total, desc):
  """A tqdm bar with ETA on process 0 when stderr is a terminal; silent elsewhere and in log
  files (the epoch log lines, each with the run's ETA, are the progress there)."""
  return tqdm.tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True,
                   disable=jax.process_index() != 0 or not sys.stderr.isatty())
