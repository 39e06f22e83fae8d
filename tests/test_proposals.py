"""generate_proposals (``conventions="exact"``, our variant) against a brute-force numpy oracle
of its docstring; the authors' conventions are tested in test_reference_oracle.py."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gaufuse_jax._src import proposals

generate_proposals = functools.partial(proposals.generate_proposals, conventions="exact")

THRESHOLDS = np.array([0.2, 0.45, 0.7], np.float32)


def oracle(cas, valid_length, thresholds, min_length=2, rule="gaufuse"):
  """Rows (start, end, score, inner) of every qualifying run, float64, loops only."""
  cas = np.asarray(cas, np.float64)[:valid_length]
  rows = []
  for thr in np.asarray(thresholds, np.float32):
    t = 0
    while t < len(cas):
      if cas[t] > thr:
        s = t
        while t < len(cas) and cas[t] > thr:
          t += 1
        e = t
        if e - s >= min_length:
          n = e - s
          w = math.floor(0.0785 * n**0.9) if rule == "gaufuse" else math.floor(0.25 * n)
          inner = cas[s:e].mean()
          outer_vals = np.concatenate([cas[max(s - w, 0):s], cas[e:min(e + w, len(cas))]])
          outer = outer_vals.mean() if len(outer_vals) else 0.0
          rows.append((s, e, inner - outer, inner))
      else:
        t += 1
  return np.array(rows, np.float64).reshape(-1, 4)


def as_rows(p):
  valid = np.asarray(p.valid)
  return np.stack([np.asarray(p.start)[valid], np.asarray(p.end)[valid],
                   np.asarray(p.score)[valid], np.asarray(p.inner)[valid]], axis=1)


def assert_same_set(got, want, atol=2e-6):
  """Same multiset of runs (the values depend only on [start, end))."""
  key = lambda r: np.lexsort((r[:, 1], r[:, 0]))
  assert got.shape == want.shape
  np.testing.assert_allclose(got[key(got)], want[key(want)], atol=atol, rtol=1e-5)


def random_cas(rng, t):
  # Quantized values make ties with each other and with the thresholds (strict `>`).
  if rng.random() < 0.5:
    return (rng.integers(0, 5, t) / 4 * 0.9).astype(np.float32)
  return rng.random(t).astype(np.float32)


PROPOSE = jax.jit(generate_proposals, static_argnames=("max_proposals", "min_length", "outer_rule",
                                                      "merge_duplicates"))


@pytest.mark.parametrize("rule", ["gaufuse", "wtalc"])
def test_random_cases_match_oracle(rule):
  rng = np.random.default_rng(0)
  for case in range(60):
    t = 24
    valid_length = int(rng.integers(0, t + 1))
    cas = random_cas(rng, t)
    min_length = 1 + case % 3
    p = PROPOSE(cas, valid_length, THRESHOLDS, max_proposals=40, min_length=min_length,
                outer_rule=rule)
    want = oracle(cas, valid_length, THRESHOLDS, min_length, rule)
    assert int(p.num_dropped) == 0
    assert_same_set(as_rows(p), want)
    valid = np.asarray(p.valid)
    assert valid.sum() == len(want) and not valid[len(want):].any()  # valid rows come first
    assert np.all(np.diff(np.asarray(p.score)[valid]) <= 0)  # sorted by score
    for field in (p.start, p.end, p.score, p.inner):
      assert np.all(np.asarray(field)[~valid] == 0)
    np.testing.assert_array_equal(p.count, valid.astype(np.int32))  # no merging: 1 each


def test_merge_duplicates_keeps_one_row_per_run_with_its_copies():
  rng = np.random.default_rng(5)
  # Unsorted, with a repeated value (copies from equal thresholds) and a NaN (no runs).
  thresholds = np.array([0.45, 0.2, 0.7, 0.3, 0.45, 0.05, np.nan, 0.3], np.float32)
  for case in range(60):
    t = 24
    valid_length = int(rng.integers(0, t + 1))
    cas = random_cas(rng, t)
    full = PROPOSE(cas, valid_length, thresholds, max_proposals=200, min_length=1 + case % 2)
    merged = PROPOSE(cas, valid_length, thresholds, max_proposals=200, min_length=1 + case % 2,
                     merge_duplicates=True)
    want = oracle(cas, valid_length, thresholds, 1 + case % 2)
    runs, first, copies = np.unique(want[:, :2], axis=0, return_index=True, return_counts=True)
    assert int(merged.num_dropped) == 0
    assert_same_set(as_rows(merged), want[first])
    valid = np.asarray(merged.valid)
    got = {(s, e): c for s, e, c in zip(np.asarray(merged.start)[valid],
                                        np.asarray(merged.end)[valid],
                                        np.asarray(merged.count)[valid])}
    assert got == {(s, e): c for (s, e), c in zip(runs, copies)}
    assert np.all(np.asarray(merged.count)[~valid] == 0)
    # The merged rows are the full output's rows with their copies left out, in its order.
    full_rows = [tuple(r) for r in as_rows(full)]
    merged_rows = [tuple(r) for r in as_rows(merged)]
    kept = iter(full_rows)
    assert all(row in kept for row in merged_rows)
    assert int(np.sum(merged.count)) == int(np.sum(full.valid))


def test_merge_duplicates_leaves_room_for_more_runs():
  # A plateau at 0.9 gives [2, 6) at all three thresholds: one row of count 3 with merging,
  # which leaves room for the weaker run [9, 11).
  cas = np.array([0, 0, .9, .9, .9, .9, 0, 0, 0, .6, .6, 0], np.float32)
  full = generate_proposals(cas, 12, THRESHOLDS, max_proposals=3)
  merged = generate_proposals(cas, 12, THRESHOLDS, max_proposals=3, merge_duplicates=True)
  assert as_rows(full)[:, :2].tolist() == [[2, 6]] * 3 and int(full.num_dropped) == 2
  assert as_rows(merged)[:, :2].tolist() == [[2, 6], [9, 11]] and int(merged.num_dropped) == 0
  assert merged.count.tolist() == [3, 2, 0]


def test_hand_computed():
  cas = np.array([0.1, 0.9, 0.8, 0.7, 0.6, 0.2, 0.0], np.float32)
  # One run [1, 5) of length 4, inner 0.75. W-TALC: w = 1, outer = mean(0.1, 0.2) = 0.15.
  p = generate_proposals(cas, 7, [0.5], max_proposals=3, outer_rule="wtalc")
  np.testing.assert_allclose([p.start[0], p.end[0], p.inner[0], p.score[0]],
                             [1, 5, 0.75, 0.6], atol=1e-6)
  assert p.valid.tolist() == [True, False, False]
  # "gaufuse" rule, exact variant: w = floor(0.0785 * 4**0.9) = 0 on both sides -> score = inner
  # (the authors' code: a left area of ceil(w) = 1 snippet, see test_reference_oracle.py).
  p = generate_proposals(cas, 7, [0.5], max_proposals=3)
  np.testing.assert_allclose([p.score[0], p.inner[0]], [0.75, 0.75], atol=1e-6)
  # Two thresholds: [1, 5) at 0.5 and [1, 4) at 0.65 (inner 0.8), min_length 2.
  p = generate_proposals(cas, 7, [0.5, 0.65], max_proposals=3)
  assert_same_set(as_rows(p), np.array([[1, 5, 0.75, 0.75], [1, 4, 0.8, 0.8]]))
  np.testing.assert_allclose(p.score[:2], [0.8, 0.75], atol=1e-6)


def test_tiny_lengths_and_empty():
  # T = 1: no run can have length 2; with min_length 1 there is exactly one.
  p = generate_proposals([0.9], 1, [0.5], max_proposals=2)
  assert not p.valid.any() and int(p.num_dropped) == 0
  p = generate_proposals([0.9], 1, [0.5], max_proposals=2, min_length=1)
  assert p.valid.tolist() == [True, False] and float(p.score[0]) == pytest.approx(0.9)
  # T = 2: the whole video is one run; its outer areas are clipped away.
  p = generate_proposals([0.9, 0.7], 2, [0.5], max_proposals=1, outer_rule="wtalc")
  np.testing.assert_allclose([p.start[0], p.end[0], p.score[0]], [0, 2, 0.8], atol=1e-6)
  # valid_length 0 and CAS below every threshold: nothing.
  assert not generate_proposals([0.9, 0.9], 0, [0.5], max_proposals=4).valid.any()
  assert not generate_proposals(np.zeros(9), 9, [0.5], max_proposals=4).valid.any()


def test_non_finite_cas_counts_as_zero():
  cas = np.array([0.9, np.nan, 0.8, 0.9, np.inf, -np.inf, 0.7, 0.6], np.float32)
  p = generate_proposals(cas, 8, [0.5], max_proposals=4, outer_rule="wtalc")
  clean = generate_proposals(np.nan_to_num(cas, nan=0, posinf=0, neginf=0), 8, [0.5],
                             max_proposals=4, outer_rule="wtalc")
  for x, y in zip(p, clean):
    np.testing.assert_array_equal(x, y)
  assert_same_set(as_rows(p), np.array([[2, 4, 0.85, 0.85], [6, 8, 0.65, 0.65]]))


def test_padding_changes_nothing():
  rng = np.random.default_rng(1)
  for _ in range(10):
    cas = random_cas(rng, 20)
    garbage = rng.random(13).astype(np.float32) + 1.0  # above every threshold
    a = PROPOSE(cas, 20, THRESHOLDS, max_proposals=40)
    b = PROPOSE(np.concatenate([cas, garbage]), 20, THRESHOLDS, max_proposals=40)
    for field in ("start", "end", "valid", "num_dropped"):
      np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    for field in ("score", "inner"):  # prefix sums of another length round differently
      np.testing.assert_allclose(getattr(a, field), getattr(b, field), atol=1e-6)


def test_drops_lowest_scores_and_counts_them():
  rng = np.random.default_rng(2)
  for _ in range(10):
    cas = rng.random(30).astype(np.float32)
    want = oracle(cas, 30, THRESHOLDS)
    p = PROPOSE(cas, 30, THRESHOLDS, max_proposals=5)
    assert int(p.num_dropped) == len(want) - 5
    np.testing.assert_allclose(np.asarray(p.score), np.sort(want[:, 2])[::-1][:5], atol=2e-6)


def test_long_video_precision():
  rng = np.random.default_rng(3)
  cas = np.clip(np.cumsum(rng.normal(0, 0.05, 3000)) % 1.0, 0, 1).astype(np.float32)
  thresholds = np.arange(0.001, 0.04, 0.002, dtype=np.float32) * 20
  p = generate_proposals(cas, 2900, thresholds, max_proposals=4096)
  assert_same_set(as_rows(p), oracle(cas, 2900, thresholds), atol=1e-5)


def test_jit_equals_eager_and_vmap_equals_loop():
  rng = np.random.default_rng(4)
  cas = rng.random((3, 2, 16)).astype(np.float32)
  lengths = np.array([16, 9, 0])
  thresholds = jnp.asarray(THRESHOLDS)
  run = lambda c, v, th: generate_proposals(c, v, th, max_proposals=24)
  batched = jax.jit(jax.vmap(jax.vmap(run, (0, None, None)), (0, 0, None)))(cas, lengths,
                                                                          thresholds)
  for b in range(3):
    for c in range(2):
      eager = run(cas[b, c], lengths[b], THRESHOLDS)
      jitted = jax.jit(run)(cas[b, c], lengths[b], thresholds)  # traced thresholds
      for e, j, v in zip(eager, jitted, batched):
        np.testing.assert_allclose(e, j, atol=1e-6)
        np.testing.assert_allclose(e, v[b, c], atol=1e-6)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(cas=np.zeros((2, 3))), ValueError, "cas must have shape"),
    (dict(cas=np.zeros(0)), ValueError, "cas must have shape"),
    (dict(thresholds=np.zeros((1, 2))), ValueError, "thresholds must have shape"),
    (dict(max_proposals=0), ValueError, "max_proposals must be >= 1"),
    (dict(max_proposals=2.5), TypeError, "max_proposals must be a static Python int"),
    (dict(min_length=0), ValueError, "min_length must be >= 1"),
    (dict(outer_rule="quarter"), ValueError, "outer_rule must be one of"),
])
def test_bad_input(kwargs, error, match):
  args = dict(cas=np.zeros(5), valid_length=5, thresholds=[0.5], max_proposals=4)
  args.update(kwargs)
  with pytest.raises(error, match=match):
    generate_proposals(args.pop("cas"), args.pop("valid_length"), args.pop("thresholds"), **args)
