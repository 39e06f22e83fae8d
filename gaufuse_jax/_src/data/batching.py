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
``len(bucket_sizes)`` shapes. Two ways keep padding small on real length distributions (THUMOS14:
14-2,615 snippets): `iterate_batches` with ``sort_by_length`` (evaluation, pseudo labels: the order
does not matter, so each batch holds videos of similar length), and `iterate_micro_batches`
(training: the step's videos, drawn as above, each padded to its own bucket and summed by
gradient accumulation). With ``max_snippets``, a longer video is cut to a random window of
``max_snippets`` snippets (start drawn from ``default_rng((seed, epoch, video))``, reported in
``offset``); without it, a video longer than the largest bucket is an error.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np

from gaufuse_jax._src.data.video_dataset import VideoDataset


def default_bucket_sizes(lengths, *, growth: float = 1.25, multiple: int = 16,
                         max_snippets: int | None = None) -> tuple[int, ...]:
  """The rungs of a geometric ladder of padded lengths that the videos use.

  The ladder starts at ``multiple`` and grows by ``growth`` (rounded up to a multiple of
  ``multiple``, at least one ``multiple`` per rung); each video (cropped to ``max_snippets``) uses
  the smallest rung that holds it, so a video alone is padded by less than ``growth`` (plus the
  rounding). Only the used rungs are returned: one compiled program per rung and step kind.

  Args:
    lengths: int ``[V]`` snippets per video (``VideoDataset.lengths``), V >= 1.
    growth: ratio of consecutive rungs (> 1).
    multiple: sizes are multiples of this (>= 1).
    max_snippets: optional crop length.

  Returns:
    Increasing tuple of ints; the largest holds the longest (cropped) video.

  Raises:
    ValueError: empty or non-positive ``lengths``, ``growth`` <= 1 or ``multiple`` < 1.
  """
  lengths = np.asarray(lengths, np.int64).reshape(-1)
  if lengths.size == 0 or lengths.min() < 1 or not growth > 1 or multiple < 1:
    raise ValueError(f"default_bucket_sizes: expected lengths >= 1 (found {lengths.size} values, "
                     f"min {lengths.min() if lengths.size else None}), growth > 1 ({growth}), "
                     f"multiple >= 1 ({multiple})")
  if max_snippets is not None:
    lengths = np.minimum(lengths, max_snippets)
  rungs = [multiple]
  while rungs[-1] < lengths.max():
    rungs.append(max(rungs[-1] + multiple, -(-int(np.ceil(rungs[-1] * growth)) // multiple) *
                     multiple))
  rungs = np.asarray(rungs)
  return tuple(int(s) for s in np.unique(rungs[np.searchsorted(rungs, lengths)]))


def fitted_bucket_sizes(batch_lengths, *, num_buckets: int, multiple: int = 16
                        ) -> tuple[int, ...]:
  """The ``num_buckets`` padded lengths that pad a known set of batches least.

  When the batches are fixed in advance (evaluation, pseudo labels, memory initialisation:
  videos sorted by length, see `iterate_batches`), each batch is padded to the smallest size that
  holds its longest video; this picks the sizes (multiples of ``multiple``) that minimise the
  total padded length of all batches, exactly (dynamic programming over the batches' longest
  videos; an optimal size is always the rounded length of some batch). One compiled program per
  size and step kind.

  Args:
    batch_lengths: int ``[N]``, the longest video (snippets) of each batch, N >= 1.
    num_buckets: at most this many sizes (>= 1).
    multiple: sizes are multiples of this (>= 1).

  Returns:
    Increasing tuple of at most ``num_buckets`` ints; the largest holds the longest batch.

  Raises:
    ValueError: empty or non-positive ``batch_lengths``, ``num_buckets`` < 1 or ``multiple`` < 1.
  """
  lengths = np.asarray(batch_lengths, np.int64).reshape(-1)
  if lengths.size == 0 or lengths.min() < 1 or num_buckets < 1 or multiple < 1:
    raise ValueError(
        f"fitted_bucket_sizes: expected batch_lengths >= 1 (found {lengths.size} values, min "
        f"{lengths.min() if lengths.size else None}), num_buckets >= 1 ({num_buckets}), "
        f"multiple >= 1 ({multiple})")
  sizes, counts = np.unique(-(-lengths // multiple) * multiple, return_counts=True)
  n = sizes.size
  below = np.concatenate([[0], np.cumsum(counts)])  # below[i]: batches of sizes[:i]
  # cost[i]: least padded length of the batches of sizes[:i + 1] with sizes[i] the largest
  # bucket; one more bucket may send the batches of sizes (p, i] to sizes[i] and the rest to the
  # best buckets of sizes[:p + 1] (link p), or change nothing (link -1).
  cost, links = sizes * below[1:], []
  extra = sizes[:, None] * (below[1:, None] - below[None, 1:])  # [i, p]
  earlier = np.tril(np.ones((n, n), bool), -1)  # p < i
  for _ in range(min(num_buckets, n) - 1):
    total = np.where(earlier, cost[None, :] + extra, np.iinfo(np.int64).max)
    best = np.argmin(total, axis=1)
    better = total[np.arange(n), best] < cost
    cost = np.where(better, total[np.arange(n), best], cost)
    links.append(np.where(better, best, -1))
  chosen, i = [int(sizes[-1])], n - 1
  for link in reversed(links):
    if link[i] >= 0:
      i = int(link[i])
      chosen.append(int(sizes[i]))
  return tuple(sorted(chosen))


def padding_overhead(padded_lengths, lengths) -> float:
  """Padded snippets over real snippets (>= 1; 1 = no padding)."""
  return float(np.sum(padded_lengths) / max(np.sum(lengths), 1))


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


def epoch_order(num_videos: int, *, seed: int, epoch: int, shuffle: bool = True,
                lengths=None) -> np.ndarray:
  """The global video order of one epoch: a permutation from ``default_rng((seed, epoch))``;
  without ``shuffle``, annotation order, or the stable order of decreasing ``lengths`` when given
  (so that the last, incomplete batch holds the shortest videos)."""
  if shuffle:
    return np.random.default_rng((seed, epoch)).permutation(num_videos)
  if lengths is not None:
    return np.argsort(-np.asarray(lengths), kind="stable")
  return np.arange(num_videos)


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


def _check_args(dataset, batch_size, num_devices, process_index, process_count, max_snippets,
                bucket_sizes, fn):
  """Validates the batching arguments; returns ``(buckets, cropped lengths)``."""
  if num_devices < 1 or batch_size < 1 or batch_size % num_devices:
    raise ValueError(f"{fn}: batch_size must be a positive multiple of num_devices, "
                     f"got batch_size={batch_size}, num_devices={num_devices}")
  if not 0 <= process_index < process_count:
    raise ValueError(f"{fn}: expected 0 <= process_index < process_count, got "
                     f"{process_index} and {process_count}")
  if max_snippets is not None and max_snippets < 1:
    raise ValueError(f"{fn}: max_snippets must be >= 1 or None, got {max_snippets}")
  lengths = dataset.lengths
  if bucket_sizes is None:
    bucket_sizes = default_bucket_sizes(lengths, max_snippets=max_snippets)
  buckets = np.sort(np.asarray(bucket_sizes, np.int64).reshape(-1))
  if buckets.size == 0 or buckets[0] < 1:
    raise ValueError(f"{fn}: bucket_sizes must be positive ints, got {bucket_sizes}")
  cropped = lengths if max_snippets is None else np.minimum(lengths, max_snippets)
  if cropped.max() > buckets[-1]:
    v = int(np.argmax(cropped))
    raise ValueError(f"{fn}: video {dataset.video_names[v]} has {cropped[v]} snippets, "
                     f"more than the largest bucket ({buckets[-1]}); pass max_snippets <= "
                     f"{buckets[-1]} to crop, or larger bucket_sizes")
  return buckets, cropped


def _global_batches(dataset, *, batch_size, process_count, drop_remainder, seed, epoch, shuffle,
                    lengths):
  """``[steps, process_count * batch_size]`` video indices of the epoch's global batches (-1 for
  empty slots)."""
  steps = num_batches(len(dataset), batch_size=batch_size, process_count=process_count,
                      drop_remainder=drop_remainder)
  per_step = batch_size * process_count
  slots = np.full(steps * per_step, -1, np.int64)
  order = epoch_order(len(dataset), seed=seed, epoch=epoch, shuffle=shuffle,
                      lengths=lengths)[:slots.size]
  slots[:order.size] = order
  return slots.reshape(steps, per_step)


def _bucket_of(buckets, cropped, videos) -> int:
  """The smallest bucket that holds the longest of ``videos`` (-1 entries ignored)."""
  return int(buckets[np.searchsorted(buckets, cropped[videos[videos >= 0]].max())])


def _fill(dataset, videos, t_pad, *, cropped, offsets, num_devices):
  """The padded batch of ``videos`` (-1 = empty slot) with a leading device axis."""
  n, dim = len(videos), dataset.feature_dim
  batch = {"features": np.zeros((n, t_pad, dim), np.float32),
           "valid_length": np.zeros(n, np.int32),
           "labels": np.zeros((n, dataset.num_classes), np.float32),
           "video_index": videos.astype(np.int32),
           "video_mask": videos >= 0,
           "offset": np.zeros(n, np.int32)}
  for slot, v in enumerate(videos):
    if v < 0:
      continue
    start, length = offsets[v], cropped[v]
    batch["features"][slot, :length] = dataset.features[v][start:start + length]
    batch["valid_length"][slot] = length
    batch["labels"][slot] = dataset.labels[v]
    batch["offset"][slot] = start
  return {k: x.reshape((num_devices, n // num_devices) + x.shape[1:]) for k, x in batch.items()}


def iterate_batches(dataset: VideoDataset, *, batch_size: int, seed: int, epoch: int,
                    shuffle: bool = True, sort_by_length: bool = False,
                    bucket_sizes: Sequence[int] | None = None,
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
    sort_by_length: without ``shuffle``, take the videos in order of decreasing length, so that
      a batch pads little (evaluation, pseudo labels, memory initialisation: the order does not
      matter there).
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
  buckets, cropped = _check_args(dataset, batch_size, num_devices, process_index, process_count,
                                 max_snippets, bucket_sizes, "iterate_batches")
  offsets = crop_offsets(dataset.lengths, max_snippets=max_snippets, seed=seed, epoch=epoch)
  for global_batch in _global_batches(
      dataset, batch_size=batch_size, process_count=process_count, drop_remainder=drop_remainder,
      seed=seed, epoch=epoch, shuffle=shuffle, lengths=cropped if sort_by_length else None):
    local = global_batch[process_index * batch_size:(process_index + 1) * batch_size]
    yield _fill(dataset, local, _bucket_of(buckets, cropped, global_batch), cropped=cropped,
                offsets=offsets, num_devices=num_devices)


def iterate_micro_batches(dataset: VideoDataset, *, batch_size: int, seed: int, epoch: int,
                          micro_batch_size: int = 1, shuffle: bool = True,
                          bucket_sizes: Sequence[int] | None = None,
                          max_snippets: int | None = None, num_devices: int = 1,
                          process_index: int = 0, process_count: int = 1,
                          drop_remainder: bool = False) -> Iterator[list[dict[str, np.ndarray]]]:
  """Yields, per optimizer step, the step's videos as micro-batches that each pad to their own
  length (training by gradient accumulation; ``steps.accumulate_step``).

  A step holds exactly the videos of the corresponding `iterate_batches` batch (same seed, epoch,
  order and crops). Each process sorts its videos of the step by decreasing length and deals them
  out ``num_devices * micro_batch_size`` at a time; micro-batch ``j`` is padded to the bucket of
  its longest video over all processes (the same shape everywhere), and a micro-batch with no
  video on any process is skipped. With ``micro_batch_size = batch_size / num_devices`` a step is
  one micro-batch: the plain padded batch.

  Args:
    micro_batch_size: videos per device in a micro-batch (>= 1; 1 pads only to the bucket of each
      video); the other arguments as in `iterate_batches`.

  Yields:
    ``num_batches(...)`` lists of batch dicts as `iterate_batches` yields, with
    ``b = micro_batch_size``.

  Raises:
    ValueError: as `iterate_batches`; ``micro_batch_size`` < 1.
  """
  buckets, cropped = _check_args(dataset, batch_size, num_devices, process_index, process_count,
                                 max_snippets, bucket_sizes, "iterate_micro_batches")
  if micro_batch_size < 1:
    raise ValueError(f"iterate_micro_batches: micro_batch_size must be >= 1, got "
                     f"{micro_batch_size}")
  offsets = crop_offsets(dataset.lengths, max_snippets=max_snippets, seed=seed, epoch=epoch)
  per_micro = num_devices * micro_batch_size
  num_micro = -(-batch_size // per_micro)
  for global_batch in _global_batches(
      dataset, batch_size=batch_size, process_count=process_count, drop_remainder=drop_remainder,
      seed=seed, epoch=epoch, shuffle=shuffle, lengths=None):
    rows = np.full((process_count, num_micro * per_micro), -1, np.int64)
    for p, local in enumerate(global_batch.reshape(process_count, batch_size)):
      real = local[local >= 0]
      rows[p, :real.size] = real[np.argsort(-cropped[real], kind="stable")]
    step = []
    for j in range(num_micro):
      group = rows[:, j * per_micro:(j + 1) * per_micro]
      if np.any(group >= 0):
        step.append(_fill(dataset, group[process_index], _bucket_of(buckets, cropped, group),
                          cropped=cropped, offsets=offsets, num_devices=num_devices))
    yield step
