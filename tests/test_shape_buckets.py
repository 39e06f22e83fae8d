"""Public functions called eagerly on many sizes compile a bounded number of programs
(``shape_buckets``), and their bucket padding changes nothing."""

import jax
import numpy as np
import pytest

import gaufuse_jax as gj
from gaufuse_jax._src import compilation
from gaufuse_jax._src import shape_buckets

CFG = gj.LocalizationConfig(thresholds=(0.01, 0.02, 0.03), max_proposals=16, max_instances=8)
VIDEO_SCORES = np.array([[0.9, 0.5, 0.1]], np.float32)


def test_bucket_ladder():
  sizes = [shape_buckets.bucket(n) for n in range(1, 4097)]
  assert all(s >= n for n, s in enumerate(sizes, 1))
  assert all(s <= 1.5 * n for n, s in enumerate(sizes, 1) if n >= shape_buckets.MINIMUM)
  assert sizes == sorted(sizes) and len(set(sizes)) == 19
  assert [shape_buckets.bucket(n) for n in (1, 8, 9, 12, 13, 17, 25, 2615)] == [
      8, 8, 12, 12, 16, 24, 32, 3072]


def _localize_and_label(cas, length):
  found, stats = gj.localize(cas, VIDEO_SCORES, np.array([length]), CFG, temperature=0.02)
  labels, info = gj.linpro_labels(found.segments, found.scores, found.valid, np.array([length]),
                                  num_snippets=cas.shape[1])
  return found, stats, labels, info


def _cas(length, seed):
  return np.random.default_rng(seed).uniform(0, 0.05, (1, length, 3)).astype(np.float32)


def test_lengths_of_one_bucket_compile_nothing_new_and_padding_changes_nothing():
  _localize_and_label(_cas(17, 0), 17)  # compiles the programs of bucket 24
  counter = compilation.CompilationCounter()
  results = {t: _localize_and_label(_cas(t, t), t) for t in range(18, 25)}
  assert counter.peek()[0] == 0
  # The traced path (inside jit: no padding) gives the same detections and labels.
  traced = jax.jit(_localize_and_label, static_argnums=1)
  for got, want in zip(jax.tree.leaves(results[18]), jax.tree.leaves(traced(_cas(18, 18), 18))):
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-6)
  assert results[18][2].shape == (1, 3, 18)


@pytest.mark.slow
def test_300_problems_of_distinct_lengths_compile_a_bounded_number_of_programs():
  lengths = range(16, 316)
  counter = compilation.CompilationCounter()
  for t in lengths:
    _localize_and_label(_cas(t, t), t)
  buckets = {shape_buckets.bucket(t) for t in lengths}
  # localize and linpro_labels: one program each per bucket, plus a few small ones.
  assert counter.peek()[0] <= 2 * len(buckets) + 4, (counter.peek(), len(buckets))
