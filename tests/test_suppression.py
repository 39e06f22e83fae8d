"""nms and soft_nms (``conventions="exact"``: half-open overlaps) against brute-force numpy
oracles of their docstrings; the authors' conventions are tested in test_reference_oracle.py."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gaufuse_jax._src import suppression

nms = functools.partial(suppression.nms, conventions="exact")
soft_nms = functools.partial(suppression.soft_nms, conventions="exact")

N = 16  # every random case is padded to N rows: one compilation, and padding is exercised


def overlap_np(seed, segs, kind):
  """segments.overlap (exact), in float64: candidate = inter / len(candidate)."""
  inter = np.maximum(np.minimum(seed[1], segs[:, 1]) - np.maximum(seed[0], segs[:, 0]), 0.0)
  cand = segs[:, 1] - segs[:, 0]
  denom = cand if kind == "candidate" else cand + (seed[1] - seed[0]) - inter
  with np.errstate(divide="ignore", invalid="ignore"):
    return np.where(denom > 0, inter / denom, 0.0)


def nms_oracle(segs, scores, valid, thr, kind):
  segs, scores = np.asarray(segs, np.float64), np.asarray(scores, np.float64)
  remaining = list(np.flatnonzero(valid))
  kept = []
  while remaining:
    seed = max(remaining, key=lambda i: (scores[i], -i))  # highest score, then lowest index
    kept.append(seed)
    ov = overlap_np(segs[seed], segs, kind)
    remaining = [i for i in remaining if i != seed and not ov[i] > thr]
  return kept


def soft_nms_oracle(segs, scores, valid, sigma, score_threshold, kind):
  segs, cur = np.asarray(segs, np.float64), np.asarray(scores, np.float64).copy()
  remaining = [i for i in np.flatnonzero(valid) if cur[i] >= score_threshold]
  out = []
  while remaining:
    seed = max(remaining, key=lambda i: (cur[i], -i))
    out.append((seed, cur[seed]))
    ov = overlap_np(segs[seed], segs, kind)
    remaining = [i for i in remaining if i != seed]
    for i in remaining:
      cur[i] *= np.exp(-ov[i]**2 / sigma)
    remaining = [i for i in remaining if cur[i] >= score_threshold]
  return out


def random_case(rng, n=N):
  """Integer segments (ties in overlap, touching and zero-length ones), tied scores."""
  start = rng.integers(0, 30, n).astype(np.float32)
  length = rng.integers(0, 10, n).astype(np.float32)
  segs = np.stack([start, start + length], axis=1)
  if rng.random() < 0.5:
    scores = (rng.integers(0, 4, n) / 4).astype(np.float32)  # many ties
  else:
    scores = rng.random(n).astype(np.float32)
  valid = rng.random(n) < rng.choice([0.0, 0.3, 0.8, 1.0])
  return segs, scores, valid


NMS = jax.jit(nms, static_argnames="overlap")
SOFT = jax.jit(soft_nms, static_argnames="overlap")


def check_padded(det, want_index, want_segments, want_scores):
  k = len(want_index)
  assert int(det.count) == k
  np.testing.assert_array_equal(det.index[:k], want_index)
  np.testing.assert_array_equal(det.valid, np.arange(len(det.valid)) < k)
  np.testing.assert_allclose(det.segments[:k], np.reshape(want_segments, (k, 2)), atol=1e-6)
  np.testing.assert_allclose(det.scores[:k], want_scores, rtol=1e-5, atol=1e-6)
  assert np.all(np.asarray(det.index[k:]) == -1)
  assert not np.any(det.segments[k:]) and not np.any(det.scores[k:])


@pytest.mark.parametrize("kind", ["iou", "candidate"])
def test_nms_matches_oracle(kind):
  rng = np.random.default_rng(0)
  for case in range(60):
    segs, scores, valid = random_case(rng)
    thr = [0.0, 0.25, 0.5, 0.7][case % 4]
    want = nms_oracle(segs, scores, valid, thr, kind)
    det = NMS(segs, scores, valid, overlap_threshold=thr, overlap=kind)
    check_padded(det, want, segs[want], scores[want])


@pytest.mark.parametrize("kind", ["iou", "candidate"])
def test_soft_nms_matches_oracle(kind):
  rng = np.random.default_rng(1)
  for case in range(40):
    segs, _, valid = random_case(rng)
    scores = rng.random(N).astype(np.float32)  # distinct: decayed scores are never near-tied
    sigma, score_threshold = [(0.5, 1e-3), (0.1, 0.2), (2.0, -np.inf)][case % 3]
    want = soft_nms_oracle(segs, scores, valid, sigma, score_threshold, kind)
    det = SOFT(segs, scores, valid, sigma=sigma, score_threshold=score_threshold, overlap=kind)
    idx = [i for i, _ in want]
    check_padded(det, idx, segs[idx], [s for _, s in want])


def test_hand_computed():
  segs = np.array([[0, 10], [1, 9], [20, 30], [8, 22]], np.float32)
  scores = np.array([0.9, 0.8, 0.7, 0.6], np.float32)
  det = nms(segs, scores, np.ones(4, bool), overlap_threshold=0.5)
  # [1, 9) has IoU 0.8 with the seed [0, 10); [8, 22) has IoU 2/22 and 2/22 with both seeds.
  check_padded(det, [0, 2, 3], segs[[0, 2, 3]], [0.9, 0.7, 0.6])
  det = soft_nms(segs[[0, 1]] * [[1, 1], [5, 5 / 3]], [1.0, 0.8], np.ones(2, bool), sigma=0.5)
  # [0, 10) and [5, 15): IoU 1/3, decay exp(-(1/9) / 0.5).
  check_padded(det, [0, 1], [[0, 10], [5, 15]], [1.0, 0.8 * np.exp(-2 / 9)])


def test_touching_segments_and_all_invalid():
  segs = np.array([[0, 2], [2, 4], [4, 6]], np.float32)
  det = nms(segs, [0.5, 0.9, 0.5], np.ones(3, bool), overlap_threshold=0.0)
  check_padded(det, [1, 0, 2], segs[[1, 0, 2]], [0.9, 0.5, 0.5])  # ties: lowest index first
  for fn, kwargs in ((nms, dict(overlap_threshold=0.5)), (soft_nms, {})):
    det = fn(segs, [1.0, 2.0, np.nan], np.zeros(3, bool), **kwargs)
    check_padded(det, [], np.zeros((0, 2)), [])
  # NaN scores and inverted segments are treated as invalid.
  det = nms([[0, 1], [3, 2], [5, 6]], [np.nan, 1.0, 0.5], np.ones(3, bool), overlap_threshold=0.5)
  check_padded(det, [2], [[5, 6]], [0.5])


def test_single_and_empty():
  det = nms([[1, 3]], [0.2], [True], overlap_threshold=0.5)
  check_padded(det, [0], [[1, 3]], [0.2])
  det = soft_nms(np.zeros((0, 2)), np.zeros(0), np.zeros(0, bool))
  assert det.segments.shape == (0, 2) and int(det.count) == 0


def test_padding_changes_nothing():
  rng = np.random.default_rng(2)
  for _ in range(10):
    segs, scores, valid = random_case(rng, 10)
    segs[~valid] = rng.random((int((~valid).sum()), 2))  # garbage in invalid rows
    extra = rng.random((6, 2)).astype(np.float32) * 30
    padded = (np.concatenate([segs, extra]), np.concatenate([scores, np.full(6, 9.0)]),
              np.concatenate([valid, np.zeros(6, bool)]))
    for fn, kwargs in ((NMS, dict(overlap_threshold=0.3)), (SOFT, dict(sigma=0.5))):
      a, b = fn(segs, scores, valid, **kwargs), fn(*padded, **kwargs)
      for x, y in zip(a, b):
        x, y = np.asarray(x), np.asarray(y)
        np.testing.assert_array_equal(x, y[:len(x)] if x.ndim else y)


def test_jit_equals_eager_and_vmap_equals_loop():
  rng = np.random.default_rng(3)
  cases = [random_case(rng) for _ in range(6)]
  batch = [np.stack(x) for x in zip(*cases)]
  thr = jnp.float32(0.3)
  for fn, kwargs in ((nms, dict(overlap_threshold=thr)), (soft_nms, dict(sigma=thr))):
    batched = jax.jit(jax.vmap(lambda s, c, v: fn(s, c, v, **kwargs)))(*batch)
    for b, case in enumerate(cases):
      eager = fn(*case, **kwargs)
      for e, v in zip(eager, batched):
        np.testing.assert_allclose(e, v[b], rtol=1e-6)


@pytest.mark.parametrize("call, match", [
    (lambda: nms(np.zeros((3, 3)), np.zeros(3), np.ones(3, bool), overlap_threshold=0.5),
     "segments must have shape"),
    (lambda: nms(np.zeros((3, 2)), np.zeros(2), np.ones(3, bool), overlap_threshold=0.5),
     "scores must have shape"),
    (lambda: nms(np.zeros((3, 2)), np.zeros(3), np.ones(4, bool), overlap_threshold=0.5),
     "valid must have shape"),
    (lambda: nms(np.zeros((3, 2)), np.zeros(3), np.ones(3, bool), overlap_threshold=0.5,
                 overlap="giou"), "overlap must be one of"),
    (lambda: nms(np.zeros((3, 2)), np.zeros(3), np.ones(3, bool), overlap_threshold=np.nan),
     "overlap_threshold must be a number"),
    (lambda: soft_nms(np.zeros((3, 2)), np.zeros(3), np.ones(3, bool), sigma=0.0),
     "sigma must be > 0"),
])
def test_bad_input(call, match):
  with pytest.raises(ValueError, match=match):
    call()
