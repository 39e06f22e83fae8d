"""Padded, bucketed, sharded batches of variable-length videos.

Per epoch, the videos are put in one global order (a permutation drawn from
``np.random.default_rng((seed, epoch))``, or annotation order without ``shuffle``), padded with
empty slots to a whole number of *global* batches of ``process_count * batch_size`` videos.
Global batch ``i`` is cut into ``process_count`` contiguous per-process batches, and each of
those into ``num_devices`` per-device rows. So, per epoch, every video appears exactly once
over all processes (none dropped unless ``drop_remainder``), the shards are disjoint, and every
process yields the same number of batches.

Shapes: the snippet axis is padded to ``T_pad``, the smallest bucket size that holds the
longest (possibly cropped) video of the *global* batch, so all processes and devices see the
same shape at every step (multi-host pmap needs this) and jit compiles at most
``len(bucket_sizes)`` shapes. With ``max_snippets``, a longer video is cut to a random window of
``max_snippets`` snippets (start drawn from ``default_rng((seed, epoch, video))``, reported in
``offset``); without it, a video longer than the largest bucket is an error.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np

from gaufuse_jax.data import wtalc


def default_bucket_sizes(lengths, *, num_buckets: int = 4, multiple: int = 32,
                         max_snippets: int | None = None) -> tuple[int, ...]:
  """Bucket sizes at the ``k / num_buckets`` quantiles (k = 1..num_buckets) of the video lengths
  (after cropping to ``max_snippets``), rounded up to a multiple of ``multiple``, deduplicated.
  The largest equals the longest (cropped) video rounded up, so every video fits.

  Args:
    lengths: int ``[V]`` snippets per video (``VideoDataset.lengths``), V >= 1.
    num_buckets: at most this many sizes (>= 1).
    multiple: sizes are multiples of this (>= 1).
    max_snippets: optional crop length.

  Returns:
    Increasing tuple of ints.

  Raises:
    ValueError: empty or non-positive ``lengths``, ``num_buckets`` or ``multiple`` < 1.
  """
  lengths = np.asarray(lengths, np.int64).reshape(-1)
  if lengths.size == 0 or lengths.min() < 1 or num_buckets < 1 or multiple < 1:
    raise ValueError(f"default_bucket_sizes: expected lengths >= 1 (found {lengths.size} values, "
                     f"min {lengths.min() if lengths.size else None}), num_buckets >= 1 "
                     f"({num_buckets}), multiple >= 1 ({multiple})")
  if max_snippets is not None:
    lengths = np.minimum(lengths, max_snippets)
  levels = np.arange(1, num_buckets + 1) / num_buckets
  sizes = np.ceil(np.quantile(lengths, levels, method="higher") / multiple) * multiple
  return tuple(int(s) for s in np.unique(sizes.astype(np.int64)))


def num_batches(num_videos, *, batch_size: int, process_count: int = 1,
                drop_remainder: bool = False) -> int:
  """Batches per process per epoch: ``ceil`` (or ``floor`` with ``drop_remainder``) of
  ``num_videos / (process_count * batch_size)``. ``num_videos`` may be a dataset."""
  count = num_videos if isinstance(num_videos, (int, np.integer)) else len(num_videos)
  if batch_size < 1 or process_count < 1:
    raise ValueError(f"batch_size and process_count must be >= 1, got {batch_size}, "
                     f"{process_count}")
  per_step = batch_size * process_count
  return count // per_step if drop_remainder else -(-count // per_step)


def epoch_order(num_videos: int, *, seed: int, epoch: int, shuffle: bool = True) -> np.ndarray:
  """The global video order of one epoch: a permutation from ``default_rng((seed, epoch))``."""
  if not shuffle:
    return np.arange(num_videos)
  return np.random.default_rng((seed, epoch)).permutation(num_videos)


def crop_offsets(lengths, *, max_snippets: int | None, seed: int, epoch: int) -> np.ndarray:
  """int64 ``[V]`` start of the crop window of each video: uniform in
  ``[0, T_i - max_snippets]`` from ``default_rng((seed, epoch, i))`` when ``T_i > max_snippets``,
  else 0."""
  lengths = np.asarray(lengths, np.int64)
  offsets = np.zeros(len(lengths), np.int64)
  if max_snippets is not None:
    for i in np.flatnonzero(lengths > max_snippets):
      rng = np.random.default_rng((seed, epoch, int(i)))
      offsets[i] = rng.integers(0, lengths[i] - max_snippets + 1)
  return offsets


def iterate_batches(dataset: wtalc.VideoDataset, *, batch_size: int, seed: int, epoch: int,
                    shuffle: bool = True, bucket_sizes: Sequence[int] | None = None,
                    max_snippets: int | None = None, num_devices: int = 1,
                    process_index: int = 0, process_count: int = 1,
                    drop_remainder: bool = False) -> Iterator[dict[str, np.ndarray]]:
  """Yields the padded batches of one epoch for one process (see the module docstring).

  Args:
    dataset: `VideoDataset` (V videos, C classes, dim D).
    batch_size: videos per batch of this process (the global batch per process); divisible by
      ``num_devices``.
    seed, epoch: the order and the crops depend on these only.
    shuffle: False keeps annotation order (evaluation).
    bucket_sizes: allowed ``T_pad`` values; None uses `default_bucket_sizes` of the dataset.
    max_snippets: crop videos longer than this to a seeded random window.
    num_devices: leading device axis (``jax.local_device_count()`` for pmap).
    process_index, process_count: this host and the number of hosts
      (``jax.process_index()``, ``jax.process_count()``).
    drop_remainder: drop the last, incomplete global batch instead of padding it.

  Yields:
    ``num_batches(...)`` dicts of numpy arrays, with ``b = batch_size // num_devices``:
    ``features`` float32 ``[num_devices, b, T_pad, D]`` (zeros past each video),
    ``valid_length`` int32 ``[num_devices, b]`` (0 for empty slots: divide by
    ``max(valid_length, 1)``), ``labels`` float32 ``[num_devices, b, C]``, ``video_index`` int32
    ``[num_devices, b]`` (index into ``dataset``, -1 for empty slots), ``video_mask`` bool
    ``[num_devices, b]``, ``offset`` int32 ``[num_devices, b]`` (first snippet of the crop, 0
    when uncropped). A process may get a batch of only empty slots at the end of an epoch.

  Raises:
    ValueError: ``batch_size`` not a positive multiple of ``num_devices``; ``process_index``
      outside ``[0, process_count)``; ``max_snippets`` < 1; non-positive bucket sizes; a video
      longer (after cropping) than the largest bucket.
  """
  if num_devices < 1 or batch_size < 1 or batch_size % num_devices:
    raise ValueError(f"iterate_batches: batch_size must be a positive multiple of num_devices, "
                     f"got batch_size={batch_size}, num_devices={num_devices}")
  if not 0 <= process_index < process_count:
    raise ValueError(f"iterate_batches: expected 0 <= process_index < process_count, got "
                     f"{process_index} and {process_count}")
  if max_snippets is not None and max_snippets < 1:
    raise ValueError(f"iterate_batches: max_snippets must be >= 1 or None, got {max_snippets}")
  lengths = dataset.lengths
  if bucket_sizes is None:
    bucket_sizes = default_bucket_sizes(lengths, max_snippets=max_snippets)
  buckets = np.sort(np.asarray(bucket_sizes, np.int64).reshape(-1))
  if buckets.size == 0 or buckets[0] < 1:
    raise ValueError(f"iterate_batches: bucket_sizes must be positive ints, got {bucket_sizes}")
  cropped = lengths if max_snippets is None else np.minimum(lengths, max_snippets)
  if cropped.max() > buckets[-1]:
    v = int(np.argmax(cropped))
    raise ValueError(f"iterate_batches: video {dataset.video_names[v]} has {cropped[v]} snippets, "
                     f"more than the largest bucket ({buckets[-1]}); pass max_snippets <= "
                     f"{buckets[-1]} to crop, or larger bucket_sizes")

  steps = num_batches(len(dataset), batch_size=batch_size, process_count=process_count,
                      drop_remainder=drop_remainder)
  per_step = batch_size * process_count
  slots = np.full(steps * per_step, -1, np.int64)
  order = epoch_order(len(dataset), seed=seed, epoch=epoch, shuffle=shuffle)[:slots.size]
  slots[:order.size] = order
  offsets = crop_offsets(lengths, max_snippets=max_snippets, seed=seed, epoch=epoch)
  b, dim = batch_size // num_devices, dataset.feature_dim
  for step in range(steps):
    global_batch = slots[step * per_step:(step + 1) * per_step]
    longest = cropped[global_batch[global_batch >= 0]].max()
    t_pad = int(buckets[np.searchsorted(buckets, longest)])
    local = global_batch[process_index * batch_size:(process_index + 1) * batch_size]
    batch = {"features": np.zeros((batch_size, t_pad, dim), np.float32),
             "valid_length": np.zeros(batch_size, np.int32),
             "labels": np.zeros((batch_size, dataset.num_classes), np.float32),
             "video_index": local.astype(np.int32),
             "video_mask": local >= 0,
             "offset": np.zeros(batch_size, np.int32)}
    for slot, v in enumerate(local):
      if v < 0:
        continue
      start, length = offsets[v], cropped[v]
      batch["features"][slot, :length] = dataset.features[v][start:start + length]
      batch["valid_length"][slot] = length
      batch["labels"][slot] = dataset.labels[v]
      batch["offset"][slot] = start
    yield {k: x.reshape((num_devices, b) + x.shape[1:]) for k, x in batch.items()}
