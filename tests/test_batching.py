"""Padded, bucketed, sharded batches."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gaufuse_jax._src.data import batching
from gaufuse_jax._src.data.video_dataset import VideoDataset

BUCKETS = (16, 32, 64)


def _dataset(num_videos=23, dim=3, num_classes=4, seed=0, max_length=60):
  rng = np.random.default_rng(seed)
  lengths = rng.integers(2, max_length + 1, num_videos)
  lengths[0] = max_length
  labels = (rng.random((num_videos, num_classes)) < 0.4).astype(np.float32)
  return VideoDataset(
      name="toy", split="train", class_names=tuple(f"c{i}" for i in range(num_classes)),
      video_names=tuple(f"v{i}" for i in range(num_videos)),
      features=[rng.random((int(t), dim), dtype=np.float32) + 0.1 for t in lengths],
      labels=labels, segments=[np.zeros((0, 2))] * num_videos,
      segment_labels=[np.zeros(0, np.int32)] * num_videos,
      durations=lengths * 0.64, ambiguous={})


def _epoch(ds, process_count, **kw):
  return [list(batching.iterate_batches(ds, process_index=p, process_count=process_count, **kw))
          for p in range(process_count)]


@pytest.mark.parametrize("batch_size,num_devices,process_count",
                         [(1, 1, 1), (4, 2, 1), (6, 3, 2), (2, 1, 3), (8, 2, 2), (40, 1, 1)])
def test_every_video_once_per_epoch_shapes_and_masks(batch_size, num_devices, process_count):
  ds = _dataset()
  per_process = _epoch(ds, process_count, batch_size=batch_size, seed=0, epoch=1,
                       bucket_sizes=BUCKETS, num_devices=num_devices)
  steps = batching.num_batches(ds, batch_size=batch_size, process_count=process_count)
  assert steps == -(-len(ds) // (batch_size * process_count))
  assert all(len(batches) == steps for batches in per_process)
  seen = []
  b = batch_size // num_devices
  for step in range(steps):
    t_pads = {batches[step]["features"].shape[2] for batches in per_process}
    assert len(t_pads) == 1  # every process sees the same shape at every step
    t_pad = t_pads.pop()
    ids = np.concatenate([batches[step]["video_index"].ravel() for batches in per_process])
    longest = ds.lengths[ids[ids >= 0]].max()
    assert t_pad == min(s for s in BUCKETS if s >= longest)
    for batches in per_process:
      batch = batches[step]
      assert batch["features"].shape == (num_devices, b, t_pad, 3)
      assert batch["features"].dtype == np.float32
      assert batch["labels"].shape == (num_devices, b, 4)
      for key, dtype in (("valid_length", np.int32), ("video_index", np.int32),
                         ("video_mask", np.bool_), ("offset", np.int32)):
        assert batch[key].shape == (num_devices, b) and batch[key].dtype == dtype
      np.testing.assert_array_equal(batch["video_mask"], batch["video_index"] >= 0)
      for d, j in itertools.product(range(num_devices), range(b)):
        v = batch["video_index"][d, j]
        row = batch["features"][d, j]
        if v < 0:
          assert batch["valid_length"][d, j] == 0 and not row.any()
          assert not batch["labels"][d, j].any()
          continue
        seen.append(v)
        n = ds.lengths[v]
        assert batch["valid_length"][d, j] == n and batch["offset"][d, j] == 0
        np.testing.assert_array_equal(row[:n], ds.features[v])
        assert not row[n:].any()
        np.testing.assert_array_equal(batch["labels"][d, j], ds.labels[v])
  assert sorted(seen) == list(range(len(ds)))


def test_processes_take_disjoint_shards():
  ds = _dataset(num_videos=30)
  per_process = _epoch(ds, 3, batch_size=4, seed=2, epoch=0, bucket_sizes=BUCKETS)
  shards = [{int(v) for batch in batches for v in batch["video_index"].ravel() if v >= 0}
            for batches in per_process]
  assert sum(len(s) for s in shards) == 30 and set.union(*shards) == set(range(30))


def test_shuffle_depends_on_seed_and_epoch_only():
  ds = _dataset()

  def order(**kw):
    return np.concatenate([b["video_index"].ravel() for b in batching.iterate_batches(
        ds, batch_size=5, bucket_sizes=BUCKETS, **kw)])

  a = order(seed=0, epoch=0)
  np.testing.assert_array_equal(a, order(seed=0, epoch=0))
  assert not np.array_equal(a, order(seed=0, epoch=1))
  assert not np.array_equal(a, order(seed=1, epoch=0))
  expected = np.concatenate([np.random.default_rng((0, 0)).permutation(23), [-1, -1]])
  np.testing.assert_array_equal(a, expected)
  np.testing.assert_array_equal(order(seed=0, epoch=3, shuffle=False), list(range(23)) + [-1, -1])


def test_drop_remainder():
  ds = _dataset()
  batches = list(batching.iterate_batches(ds, batch_size=5, seed=0, epoch=0, bucket_sizes=BUCKETS,
                                          drop_remainder=True))
  assert len(batches) == 4 == batching.num_batches(23, batch_size=5, drop_remainder=True)
  ids = np.concatenate([b["video_index"].ravel() for b in batches])
  assert np.all(ids >= 0) and len(set(ids.tolist())) == 20
  assert batching.num_batches(3, batch_size=2, process_count=2, drop_remainder=True) == 0


def test_random_crop_to_max_snippets():
  ds = _dataset(max_length=60)
  kw = dict(batch_size=4, seed=7, epoch=2, bucket_sizes=(8, 16, 24), max_snippets=20)
  batches = list(batching.iterate_batches(ds, **kw))
  offsets = batching.crop_offsets(ds.lengths, max_snippets=20, seed=7, epoch=2)
  assert np.any(offsets > 0)
  for batch in batches:
    assert batch["features"].shape[2] in (8, 16, 24)
    for j, v in enumerate(batch["video_index"][0]):
      if v < 0:
        continue
      n = min(ds.lengths[v], 20)
      start = batch["offset"][0, j]
      assert start == offsets[v] and 0 <= start <= ds.lengths[v] - n
      assert batch["valid_length"][0, j] == n
      np.testing.assert_array_equal(batch["features"][0, j, :n], ds.features[v][start:start + n])
  again = list(batching.iterate_batches(ds, **kw))
  assert all(np.array_equal(a["features"], b["features"]) for a, b in zip(batches, again))


def test_default_bucket_sizes():
  # Ladder with multiple 8, growth 1.25: 8, 16, 24, 32, 40, 56 (50 -> 56), 72 (70 -> 72),
  # 96 (90 -> 96), 120; each length takes the smallest rung that holds it.
  sizes = batching.default_bucket_sizes([10, 20, 30, 40, 100], growth=1.25, multiple=8)
  assert sizes == (16, 24, 32, 40, 120)
  assert batching.default_bucket_sizes([5, 5, 5], multiple=32) == (32,)
  # growth 2 with multiple 32: 32, 64, ..., 512, 1024; 900 cropped to 750 takes 1024.
  assert batching.default_bucket_sizes([10, 20, 900], growth=2.0, multiple=32,
                                       max_snippets=750) == (32, 1024)
  ds = _dataset()
  buckets = batching.default_bucket_sizes(ds.lengths)
  batches = list(batching.iterate_batches(ds, batch_size=3, seed=0, epoch=0))
  assert {b["features"].shape[2] for b in batches} <= set(buckets)
  with pytest.raises(ValueError, match=r"default_bucket_sizes: expected lengths >= 1"):
    batching.default_bucket_sizes([])
  with pytest.raises(ValueError, match=r"growth > 1 \(1.0\)"):
    batching.default_bucket_sizes([3], growth=1.0)


def test_fitted_bucket_sizes_against_brute_force():
  """The fitted sizes pad the batches as little as the best of every set of at most
  ``num_buckets`` rounded batch lengths (brute force); hand case: 3 sizes for 5 batches."""
  # (12, 30, 100): 12 + 12 + 30 + 100 + 100 = 254; next best (10, 30, 100): 270.
  assert batching.fitted_bucket_sizes([10, 12, 30, 100, 90], num_buckets=3, multiple=1) == (
      12, 30, 100)
  assert batching.fitted_bucket_sizes([10, 12, 30, 100, 90], num_buckets=9, multiple=1) == (
      10, 12, 30, 90, 100)
  rng = np.random.default_rng(0)
  for _ in range(200):
    lengths = rng.integers(1, 400, rng.integers(1, 12))
    k = int(rng.integers(1, 6))
    sizes = batching.fitted_bucket_sizes(lengths, num_buckets=k)
    assert len(sizes) <= k and sizes[-1] >= lengths.max() and all(s % 16 == 0 for s in sizes)
    cost = lambda bs: np.asarray(bs)[np.searchsorted(bs, lengths)].sum()
    candidates = np.unique(-(-lengths // 16) * 16)
    best = min(cost(sorted(c) + [candidates[-1]]) for r in range(k)
               for c in itertools.combinations(candidates[:-1], r))
    assert cost(sizes) == best, (lengths, k, sizes)
  with pytest.raises(ValueError, match=r"num_buckets >= 1 \(0\)"):
    batching.fitted_bucket_sizes([3], num_buckets=0)


def test_padding_overhead_on_thumos14_training_lengths(shared_data):
  """Real THUMOS14 training lengths (14-2,615 snippets): with the default buckets, one video per
  micro-batch pads by at most 1.3x overall (1.10x); batches of 10 videos sorted by length (the
  inference passes, coarser buckets of growth 1.5: fewer programs) by at most 1.5x (1.44x). The
  previous padded batches of 10 random videos are far above that."""
  from gaufuse_jax._src.data import synthetic  # pylint: disable=import-outside-toplevel
  train, _ = synthetic.make_semisynthetic_dataset(
      shared_data / "thumos14" / "Thumos14reduced-Annotations", feature_dim=1)
  assert len(train) == 200 and train.lengths.max() > 2000
  buckets = batching.default_bucket_sizes(train.lengths)
  real = train.lengths.sum()
  micro = [b for step in batching.iterate_micro_batches(train, batch_size=10, seed=0, epoch=0,
                                                        bucket_sizes=buckets) for b in step]
  assert sum(int(b["video_mask"].sum()) for b in micro) == 200
  assert batching.padding_overhead([b["features"].shape[2] for b in micro], real) <= 1.3
  evaluation = list(batching.iterate_batches(
      train, batch_size=10, seed=0, epoch=0, shuffle=False, sort_by_length=True,
      bucket_sizes=batching.default_bucket_sizes(train.lengths, growth=1.5)))
  assert batching.padding_overhead([b["features"].shape[2] * 10 for b in evaluation],
                                   real) <= 1.5
  plain = list(batching.iterate_batches(train, batch_size=10, seed=0, epoch=0,
                                        bucket_sizes=buckets))
  assert batching.padding_overhead([b["features"].shape[2] * 10 for b in plain], real) > 3


@pytest.mark.parametrize("num_devices,process_count,micro", [(1, 1, 1), (2, 1, 1), (1, 2, 2),
                                                             (2, 2, 1), (1, 1, 5)])
def test_micro_batches_hold_the_steps_videos(num_devices, process_count, micro):
  """Each step's micro-batches hold exactly the videos of the same iterate_batches step (same
  features, labels, crops), each micro-batch padded to the bucket of its longest video over all
  processes (the same shape on every process), longest videos first."""
  ds = _dataset()
  kw = dict(batch_size=10, seed=4, epoch=3, bucket_sizes=BUCKETS, max_snippets=50,
            num_devices=num_devices, process_count=process_count)
  for p in range(process_count):
    steps = list(batching.iterate_micro_batches(ds, process_index=p, micro_batch_size=micro,
                                                **kw))
    plain = list(batching.iterate_batches(ds, process_index=p, **kw))
    assert len(steps) == len(plain)
    for step, batch in zip(steps, plain):
      want = {int(v): j for j, v in enumerate(batch["video_index"].reshape(-1)) if v >= 0}
      got = {}
      for mb in step:
        assert mb["features"].shape[:2] == (num_devices, micro)
        for j, v in enumerate(mb["video_index"].reshape(-1)):
          if v >= 0:
            got[int(v)] = (mb, j)
      assert set(got) == set(want)
      for v, (mb, j) in got.items():
        flat = {k: x.reshape((-1,) + x.shape[2:]) for k, x in mb.items()}
        ref = {k: x.reshape((-1,) + x.shape[2:]) for k, x in batch.items()}
        n = flat["valid_length"][j]
        assert n == ref["valid_length"][want[v]] and flat["offset"][j] == ref["offset"][want[v]]
        np.testing.assert_array_equal(flat["features"][j, :n], ref["features"][want[v], :n])
        np.testing.assert_array_equal(flat["features"][j, n:], 0.0)
        np.testing.assert_array_equal(flat["labels"][j], ref["labels"][want[v]])
    # Same shapes on every process: recompute the shapes of process 0.
    shapes = [[mb["features"].shape for mb in step] for step in steps]
    if p == 0:
      first = shapes
    assert shapes == first
  # Each micro-batch is padded to the smallest bucket holding its longest video (one process).
  if process_count == 1:
    for step in batching.iterate_micro_batches(ds, micro_batch_size=micro, **kw):
      longest = [int(mb["valid_length"].max()) for mb in step]
      assert longest == sorted(longest, reverse=True)
      for mb, n in zip(step, longest):
        assert mb["features"].shape[2] == min(b for b in BUCKETS if b >= n)


def test_sort_by_length_orders_evaluation_batches():
  ds = _dataset()
  batches = list(batching.iterate_batches(ds, batch_size=4, seed=0, epoch=0, shuffle=False,
                                          sort_by_length=True, bucket_sizes=BUCKETS))
  index = np.concatenate([b["video_index"].reshape(-1) for b in batches])
  index = index[index >= 0]
  assert sorted(index.tolist()) == list(range(len(ds)))
  np.testing.assert_array_equal(ds.lengths[index], np.sort(ds.lengths)[::-1])


def test_errors():
  ds = _dataset()
  with pytest.raises(ValueError, match=r"batch_size must be a positive multiple of num_devices, "
                                       r"got batch_size=3, num_devices=2"):
    next(batching.iterate_batches(ds, batch_size=3, seed=0, epoch=0, num_devices=2))
  with pytest.raises(ValueError, match=r"expected 0 <= process_index < process_count, got 2 and 2"):
    next(batching.iterate_batches(ds, batch_size=2, seed=0, epoch=0, process_index=2,
                                  process_count=2))
  with pytest.raises(ValueError, match=r"video v0 has 60 snippets, more than the largest bucket "
                                       r"\(32\); pass max_snippets <= 32"):
    next(batching.iterate_batches(ds, batch_size=2, seed=0, epoch=0, bucket_sizes=(16, 32)))
  with pytest.raises(ValueError, match=r"max_snippets must be >= 1"):
    next(batching.iterate_batches(ds, batch_size=2, seed=0, epoch=0, max_snippets=0))


def test_pmap_over_device_axis():
  """The leading axis feeds pmap: a masked per-video mean computed on 2 devices equals numpy."""
  if jax.local_device_count() < 2:
    pytest.skip("needs 2 devices (conftest forces 2 host devices)")
  ds = _dataset()

  def masked_mean(batch):
    t = jnp.arange(batch["features"].shape[1])
    valid = (t[None, :] < batch["valid_length"][:, None]).astype(jnp.float32)
    total = jnp.einsum("bt,btd->bd", valid, batch["features"])
    return total / jnp.maximum(batch["valid_length"], 1)[:, None]

  step = jax.pmap(masked_mean)
  for batch in batching.iterate_batches(ds, batch_size=4, seed=0, epoch=0, num_devices=2,
                                        bucket_sizes=BUCKETS):
    got = np.asarray(step({k: batch[k] for k in ("features", "valid_length")}))
    for d, j in itertools.product(range(2), range(2)):
      v = batch["video_index"][d, j]
      want = ds.features[v].mean(0) if v >= 0 else np.zeros(3)
      np.testing.assert_allclose(got[d, j], want, rtol=1e-5, atol=1e-6)
