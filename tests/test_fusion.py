"""gaussian_weighted_fusion (``conventions="exact"``: half-open overlaps) against a brute-force
numpy oracle of its docstring; the authors' conventions are tested in test_reference_oracle.py."""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gaufuse_jax._src import fusion
from test_suppression import N
from test_suppression import overlap_np
from test_suppression import random_case

gaussian_weighted_fusion = functools.partial(fusion.gaussian_weighted_fusion, conventions="exact")


TEMPLATES = ["gaussian", "laplace", "uniform", "student_t"]


def estimate(x, w, template, dof=3.0):
  """The documented location estimators, by brute force in float64 (w > 0, sums to 1)."""
  if template == "gaussian":
    return np.sum(w * x)
  if template == "laplace":  # smallest x_j with sum_{x_i <= x_j} w_i >= 1/2
    return min(v for v in x if w[x <= v].sum() >= 0.5 * w.sum())
  if template == "uniform":  # argmin_mu max_i w_i |x_i - mu|: best meeting point of any pair
    cands = [(w[i] * x[i] + w[j] * x[j]) / (w[i] + w[j])
             for i, j in itertools.product(range(len(x)), repeat=2)]
    return min(cands, key=lambda mu: np.max(w * np.abs(x - mu)))
  mu = np.sum(w * x)  # student_t: EM with frequency weights, 20 steps, variance floor 1e-12
  var = np.sum(w * (x - mu)**2) / w.sum()
  for _ in range(20):
    var = max(var, 1e-12)
    u = w * (dof + 1) / (dof + (x - mu)**2 / var)
    mu = np.sum(u * x) / u.sum()
    var = np.sum(u * (x - mu)**2) / w.sum()
  return mu


def fusion_oracle(segs, scores, valid, logits, thr, temperature, kind, template, dof=3.0):
  segs, scores = np.asarray(segs, np.float64), np.asarray(scores, np.float64)
  logits = np.asarray(logits, np.float64)
  remaining = list(np.flatnonzero(valid))
  seeds, fused = [], []
  while remaining:
    seed = max(remaining, key=lambda i: (scores[i], -i))
    ov = overlap_np(segs[seed], segs, kind)
    cluster = np.array([i for i in remaining if i == seed or ov[i] > thr])
    z = logits[cluster] / temperature
    w = np.exp(z - z.max())
    keep = w >= np.finfo(np.float32).tiny  # weights that underflow float32 take no part
    w /= w.sum()
    fused.append([estimate(v[keep], w[keep], template, dof)
                  for v in (segs[cluster, 0], segs[cluster, 1], scores[cluster])])
    seeds.append(seed)
    remaining = [i for i in remaining if i not in cluster]
  return seeds, np.array(fused).reshape(-1, 3)


def check(det, seeds, fused, atol=1e-4):
  k = len(seeds)
  assert int(det.count) == k
  np.testing.assert_array_equal(det.index[:k], seeds)
  np.testing.assert_array_equal(det.valid, np.arange(len(det.valid)) < k)
  got = np.concatenate([det.segments, det.scores[:, None]], axis=1)
  np.testing.assert_allclose(got[:k], fused, atol=atol, rtol=1e-5)
  assert not np.any(got[k:]) and np.all(np.asarray(det.index[k:]) == -1)
  assert np.all(np.isfinite(got))


FUSE = jax.jit(gaussian_weighted_fusion, static_argnames=("overlap", "template"))


@pytest.mark.parametrize("template", TEMPLATES)
@pytest.mark.parametrize("kind", ["candidate", "iou"])
def test_matches_oracle(template, kind):
  rng = np.random.default_rng(0)
  for case in range(25):
    segs, scores, valid = random_case(rng)
    logits = (rng.integers(0, 3, N) / 2).astype(np.float32) if case % 2 else rng.random(N)
    logits = logits.astype(np.float32)
    thr, temperature = [(0.25, 0.2), (0.0, 1.0), (0.5, 0.05), (0.25, 5.0)][case % 4]
    seeds, fused = fusion_oracle(segs, scores, valid, logits, thr, temperature, kind, template)
    det = FUSE(segs, scores, valid, logits=logits, overlap_threshold=thr,
               temperature=temperature, overlap=kind, template=template)
    check(det, seeds, fused)


@pytest.mark.parametrize("template", TEMPLATES)
def test_counts_equal_repeating_the_rows(template):
  rng = np.random.default_rng(5)
  for case in range(10):
    segs, scores, valid = random_case(rng)
    logits = rng.random(N).astype(np.float32)
    counts = rng.integers(0, 4, N)  # 0: the row takes no part
    # Copies of an empty segment do not overlap their seed: they are never merged.
    counts = np.where(segs[:, 1] > segs[:, 0], counts, np.minimum(counts, 1))
    rows = np.repeat(np.arange(N), counts)  # copies next to each other: the first one seeds
    seeds, fused = fusion_oracle(segs[rows], scores[rows], valid[rows], logits[rows], 0.25, 0.2,
                                 "candidate", template)
    det = FUSE(segs, scores, valid, logits=logits, counts=counts.astype(np.float32),
               temperature=0.2, template=template)
    check(det, rows[seeds], fused)


def test_hand_computed():
  segs = np.array([[0, 10], [2, 12], [30, 40]], np.float32)
  scores = np.array([0.9, 0.5, 0.4], np.float32)
  det = gaussian_weighted_fusion(segs, scores, np.ones(3, bool), logits=[1.0, 2.0, 0.5],
                                 temperature=1.0)
  # Seed 0; [2, 12) lies 8/10 inside it (> 0.25), [30, 40) not at all.
  # Weights softmax([1, 2]) = (1, e) / (1 + e).
  a, b = 1 / (1 + np.e), np.e / (1 + np.e)
  check(det, [0, 2], [[2 * b, 10 * a + 12 * b, 0.9 * a + 0.5 * b], [30, 40, 0.4]])
  # With the default logits (= scores) the weights are softmax([0.9, 0.5] / 0.2).
  det = gaussian_weighted_fusion(segs, scores, np.ones(3, bool), temperature=0.2)
  a = 1 / (1 + np.exp(-2.0))
  check(det, [0, 2], [[2 * (1 - a), 10 * a + 12 * (1 - a), 0.9 * a + 0.5 * (1 - a)],
                      [30, 40, 0.4]])


def test_equal_weights_give_textbook_estimators():
  segs = np.array([[0, 10], [1, 11], [2, 12], [6, 16]], np.float32)
  kwargs = dict(logits=np.zeros(4), temperature=1.0, overlap_threshold=0.0)
  starts = {"gaussian": 2.25, "laplace": 1.0, "uniform": 3.0}  # mean, lower median, midrange
  for template, want in starts.items():
    det = gaussian_weighted_fusion(segs, np.array([4, 3, 2, 1.0]), np.ones(4, bool),
                                   template=template, **kwargs)
    assert int(det.count) == 1 and float(det.segments[0, 0]) == pytest.approx(want)
  # Student-t down-weights the outlying start 6 relative to the mean 2.25.
  det = gaussian_weighted_fusion(segs, np.array([4, 3, 2, 1.0]), np.ones(4, bool),
                                 template="student_t", dof=1.0, **kwargs)
  assert 1.0 < float(det.segments[0, 0]) < 2.25


@pytest.mark.parametrize("template", TEMPLATES)
def test_small_temperature_is_stable(template):
  rng = np.random.default_rng(1)
  segs, scores, _ = random_case(rng)
  valid = np.ones(N, bool)
  for logits in (rng.random(N), 50.0 + rng.random(N), -50.0 + rng.random(N)):
    logits = logits.astype(np.float32)
    det = FUSE(segs, scores, valid, logits=logits, temperature=1e-3, template=template)
    seeds, fused = fusion_oracle(segs, scores, valid, logits, 0.25, 1e-3, "candidate", template)
    check(det, seeds, fused)
  # At T -> 0 every estimator returns the values of the largest-logit member of the cluster.
  segs = np.array([[0, 10], [1, 11], [2, 12]], np.float32)
  det = gaussian_weighted_fusion(segs, [0.9, 0.8, 0.7], np.ones(3, bool), logits=[0.3, 0.9, 0.5],
                                 temperature=1e-3, template=template)
  check(det, [0], [[1, 11, 0.8]], atol=1e-6)


def test_all_invalid_and_empty_give_no_nan():
  segs = np.array([[0, 4], [1, 5]], np.float32)
  for template in TEMPLATES:
    det = gaussian_weighted_fusion(segs, [1.0, 2.0], [False, False], temperature=1e-3,
                                   template=template)
    check(det, [], np.zeros((0, 3)))
    det = gaussian_weighted_fusion(np.zeros((0, 2)), np.zeros(0), np.zeros(0, bool),
                                   temperature=0.2, template=template)
    assert int(det.count) == 0 and det.segments.shape == (0, 2)
  # A NaN logit makes its instance invalid instead of poisoning the cluster.
  det = gaussian_weighted_fusion(segs, [1.0, 2.0], [True, True], logits=[np.nan, 0.0],
                                 temperature=0.2)
  check(det, [1], [[1, 5, 2.0]])


def test_touching_segments_stay_apart():
  segs = np.array([[0, 2], [2, 4]], np.float32)
  det = gaussian_weighted_fusion(segs, [0.5, 0.9], [True, True], overlap_threshold=0.0,
                                 temperature=0.2)
  check(det, [1, 0], [[2, 4, 0.9], [0, 2, 0.5]])


def test_padding_changes_nothing():
  rng = np.random.default_rng(2)
  for template in TEMPLATES:
    segs, scores, valid = random_case(rng, 10)
    logits = rng.random(10).astype(np.float32)
    extra = rng.random((6, 2)).astype(np.float32) * 30
    padded = (np.concatenate([segs, extra]), np.concatenate([scores, np.full(6, 9.0)]),
              np.concatenate([valid, np.zeros(6, bool)]))
    a = FUSE(segs, scores, valid, logits=logits, temperature=0.2, template=template)
    b = FUSE(*padded, logits=np.concatenate([logits, np.full(6, 9.0)]), temperature=0.2,
             template=template)
    for x, y in zip(a, b):
      x, y = np.asarray(x), np.asarray(y)
      np.testing.assert_allclose(x, y[:len(x)] if x.ndim else y, atol=1e-6)


def test_jit_equals_eager_and_vmap_equals_loop():
  rng = np.random.default_rng(3)
  cases = [random_case(rng) + (rng.random(N).astype(np.float32),) for _ in range(5)]
  batch = [np.stack(x) for x in zip(*cases)]
  for template in ("gaussian", "laplace"):
    run = lambda s, c, v, l, t: gaussian_weighted_fusion(s, c, v, logits=l, temperature=t,
                                                         template=template)
    batched = jax.jit(jax.vmap(run, (0, 0, 0, 0, None)))(*batch, jnp.float32(0.2))
    for b, case in enumerate(cases):
      for e, v in zip(run(*case, 0.2), batched):
        np.testing.assert_allclose(e, v[b], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kwargs, match", [
    (dict(template="cauchy"), "template must be one of"),
    (dict(temperature=0.0), "temperature must be > 0"),
    (dict(temperature=-1.0), "temperature must be > 0"),
    (dict(dof=0.0, template="student_t"), "dof must be > 0"),
    (dict(logits=np.zeros(2)), "logits must have shape"),
    (dict(counts=np.ones(4)), "counts must have shape"),
    (dict(overlap="giou"), "overlap must be one of"),
])
def test_bad_input(kwargs, match):
  args = dict(temperature=0.2)
  args.update(kwargs)
  with pytest.raises(ValueError, match=match):
    gaussian_weighted_fusion(np.zeros((3, 2)), np.zeros(3), np.ones(3, bool), **args)


def test_weighted_mean_stays_inside_the_cluster():
  # Many members ending at the same snippet: float32 sums must not put the fused end past it.
  rng = np.random.default_rng(6)
  n = 64
  end = np.float32(52.0)
  segs = np.stack([end - rng.integers(2, 9, n), np.full(n, end)], axis=1).astype(np.float32)
  scores = rng.random(n).astype(np.float32)
  for temperature in (0.2, 0.02, 5.0):
    det = FUSE(segs, scores, np.ones(n, bool), logits=rng.random(n).astype(np.float32),
               counts=rng.integers(1, 20, n), temperature=temperature)  # int counts
    k = int(det.count)
    assert k >= 1 and np.all(np.asarray(det.segments)[:k, 1] == end)


@pytest.mark.parametrize("temperature", [0.0, -1.0, float("nan")])
def test_a_bad_temperature_raises_eagerly_and_gives_nan_under_jit(temperature):
  """Never a valid-looking result: a concrete bad temperature raises, a traced one (which
  cannot raise) makes every fused score NaN."""
  segs = jnp.array([[2.0, 5.0], [2.0, 6.0]])
  scores, valid = jnp.array([0.9, 0.8]), jnp.array([True, True])
  with pytest.raises(ValueError, match="temperature must be > 0"):
    fusion.gaussian_weighted_fusion(segs, scores, valid, temperature=temperature)
  out = jax.jit(lambda t: fusion.gaussian_weighted_fusion(segs, scores, valid, temperature=t))(
      temperature)
  assert bool(out.valid[0]) and np.isnan(np.asarray(out.scores)[0])
