import functools
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import optimize

from gaufuse_jax._src import linpro
from gaufuse_jax._src.linpro import blocks
from gaufuse_jax._src.linpro import tiers


def _highs(a, b):
  """Full T-variable LP (paper eq. 6) by scipy HiGHS: (status, objective, x)."""
  res = optimize.linprog(np.ones(a.shape[1]), A_eq=a, b_eq=b, bounds=(0.0, 1.0), method="highs")
  return res.status, res.fun, res.x


def _random_problems(seed, num, num_rows, num_snippets, max_len=30, sparse=False):
  """Random padded problems with overlapping instances, clipping at both ends and padding."""
  rng = np.random.default_rng(seed)
  segments = np.zeros((num, num_rows, 2))
  scores = rng.uniform(-0.1, 0.6, (num, num_rows))
  valid = rng.uniform(size=(num, num_rows)) < 0.8
  length = rng.integers(num_snippets // 2, num_snippets + 1, num)
  for i in range(num):
    if sparse:  # pairs of overlapping short instances, pairs far apart: components <= 2 rows
      spacing = num_snippets // -(-num_rows // 2)
      starts = np.arange(num_rows) // 2 * spacing + 2 + rng.uniform(0, 2, num_rows)
      lens = rng.uniform(2.0, min(8.0, spacing - 8.0), num_rows)
    else:
      starts = rng.uniform(-3, length[i] - 1, num_rows)
      lens = rng.uniform(1.0, max_len, num_rows)
    segments[i, :, 0], segments[i, :, 1] = starts, starts + lens
  return segments, scores, valid, length


def _check_against_highs(segments, scores, valid, length, labels, info, *, num_snippets,
                         outer_rule, normalize, rtol, max_failed=0):
  labels = np.asarray(labels, np.float64)
  assert np.all(np.isfinite(labels)) and labels.min() >= 0 and labels.max() <= 1 + 1e-6
  counts = {"feasible": 0, "infeasible": 0, "failed": 0}
  for i in range(len(scores)):
    assert np.all(labels[i][length[i]:] == 0)
    if int(info["status"][i]) == linpro.STATUS_FAILED:
      counts["failed"] += 1
      assert np.all(labels[i] == 0)
      continue
    a, b = linpro.linpro_constraints(segments[i], scores[i], valid[i], length[i],
                                     num_snippets=num_snippets, outer_rule=outer_rule,
                                     normalize=normalize)
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    status, objective, _ = _highs(a, b)
    if status == 0:
      counts["feasible"] += 1
      assert int(info["status"][i]) == linpro.STATUS_SOLVED, i
      assert abs(float(info["objective"][i]) - objective) <= rtol * max(1.0, abs(objective)), i
      assert np.max(np.abs(a @ labels[i] - b)) <= rtol * max(1.0, np.max(np.abs(b))), i
      # Equivalent snippets (identical columns of A) get equal labels.
      _, cls = np.unique(a.T, axis=0, return_inverse=True)
      for c in np.unique(cls):
        assert np.ptp(labels[i][cls.ravel() == c]) <= 10 * rtol, (i, c)
    else:
      assert status == 2, status
      counts["infeasible"] += 1
      assert int(info["status"][i]) == linpro.STATUS_RELAXED, i
      assert int(info["num_violated_rows"][i]) >= 1
  assert counts["failed"] <= max_failed, counts
  return counts


def test_constraints_hand_example():
  # T=20, L=18; W-TALC rule (outer width floor(len/4)) so that short instances have outer areas.
  segments = np.array([[1.5, 6.2], [4.0, 9.9], [15.3, 30.0], [0.5, 4.5], [2.0, 8.0]])
  scores = np.array([0.3, 0.2, 0.4, 0.1, 9.0])
  valid = np.array([True, True, True, True, False])
  a, b = linpro.linpro_constraints(segments, scores, valid, 18, num_snippets=20,
                                   outer_rule="wtalc", conventions="exact", normalize="sum")
  expected = np.zeros((5, 20))
  expected[0, 0], expected[0, 1:6], expected[0, 6] = -1, 1, -1  # [1,6), width 1
  expected[1, 3], expected[1, 4:9], expected[1, 9] = -1, 1, -1  # [4,9) overlaps row 0
  expected[2, 12:15], expected[2, 15:18] = -1, 1  # [15,30) clipped at L=18, width 3
  expected[3, 0:4], expected[3, 4] = 1, -1  # [0,4), left outer clipped away
  np.testing.assert_array_equal(np.asarray(a), expected)
  np.testing.assert_allclose(np.asarray(b), [0.3, 0.2, 0.4, 0.1, 0.0], rtol=1e-6)

  a_mean, _ = linpro.linpro_constraints(segments, scores, valid, 18, num_snippets=20,
                                        outer_rule="wtalc", conventions="exact",
                                        normalize="mean")
  np.testing.assert_allclose(np.asarray(a_mean)[0, [0, 1, 6]], [-1 / 2, 1 / 5, -1 / 2], rtol=1e-6)
  np.testing.assert_allclose(np.asarray(a_mean)[2, [12, 15]], [-1 / 3, 1 / 3], rtol=1e-6)
  np.testing.assert_allclose(np.asarray(a_mean)[3, [0, 4]], [1 / 4, -1], rtol=1e-6)


def test_constraints_gaufuse_rule():
  segments = np.array([[10.0, 110.0], [150.0, 163.0], [190.7, 199.9]])
  # Exact: floor(0.0785 * 100**0.9) = 4 snippets per side; length 13 has no outer area.
  a, _ = linpro.linpro_constraints(segments[:2], np.ones(2), np.ones(2, bool), 200,
                                   num_snippets=200, conventions="exact")
  a = np.asarray(a)
  np.testing.assert_array_equal(np.flatnonzero(a[0] < 0), [6, 7, 8, 9, 110, 111, 112, 113])
  assert a[0, 10:110].min() == 1 and np.count_nonzero(a[1] < 0) == 0
  # Reference (compute_score_matrix): left int(s - w) -> ceil(4.95) = 5 snippets, right up to
  # int(e + w + 1) = e + 5; length 13 (w = 0.79): one snippet on each side; [190, 199) with
  # L = 200: the right area would start at 199 = L - 1, which is never outer.
  a, _ = linpro.linpro_constraints(segments, np.ones(3), np.ones(3, bool), 200, num_snippets=200)
  a = np.asarray(a)
  np.testing.assert_array_equal(np.flatnonzero(a[0] < 0), [5, 6, 7, 8, 9, 110, 111, 112, 113, 114])
  np.testing.assert_array_equal(np.flatnonzero(a[1] < 0), [149, 163])
  np.testing.assert_array_equal(np.flatnonzero(a[1] > 0), np.arange(150, 163))
  np.testing.assert_array_equal(np.flatnonzero(a[2] < 0), [189])
  np.testing.assert_array_equal(np.flatnonzero(a[2] > 0), np.arange(190, 199))


@pytest.mark.parametrize("normalize,rule,block_rows,num", [
    ("sum", "gaufuse", 8, 160), pytest.param("mean", "wtalc", 8, 60, marks=pytest.mark.slow)])
def test_reduced_lp_equals_full_lp_highs(normalize, rule, block_rows, num):
  num_snippets = 48
  segments, scores, valid, length = _random_problems(0, num, 6, num_snippets)
  with jax.enable_x64(True):
    labels, info = linpro.linpro_labels(segments, scores, valid, length,
                                        num_snippets=num_snippets, outer_rule=rule,
                                        normalize=normalize, block_rows=block_rows)
    counts = _check_against_highs(segments, scores, valid, length, labels, info,
                                  num_snippets=num_snippets, outer_rule=rule,
                                  normalize=normalize, rtol=1e-5)
  assert counts["feasible"] >= num // 3 and counts["infeasible"] >= 5, counts


@pytest.mark.slow  # blocks against HiGHS: also test_reduced_lp_equals_full_lp_highs
def test_block_decomposition_against_highs():
  # Long videos with short, mostly separate instances: blocks of 2 rows must reproduce HiGHS.
  num_snippets = 120
  segments, scores, valid, length = _random_problems(1, 40, 12, num_snippets, sparse=True)
  with jax.enable_x64(True):
    labels, info = linpro.linpro_labels(segments, scores, valid, length,
                                        num_snippets=num_snippets, block_rows=3,
                                        outer_rule="wtalc")
    assert np.all(np.asarray(info["block_rows"]) == 3)
    _check_against_highs(segments, scores, valid, length, labels, info,
                         num_snippets=num_snippets, outer_rule="wtalc", normalize="sum",
                         rtol=1e-5)


def test_float32_default_against_highs():
  num_snippets = 48
  segments, scores, valid, length = _random_problems(2, 60, 6, num_snippets)
  labels, info = linpro.linpro_labels(segments, scores, valid, length, num_snippets=num_snippets)
  assert labels.dtype == jnp.float32
  # float32: a rare ill-conditioned LP may fail the certificate; it is zeroed and counted.
  _check_against_highs(segments, scores, valid, length, labels, info, num_snippets=num_snippets,
                       outer_rule="gaufuse", normalize="sum", rtol=2e-4, max_failed=2)


# The comparison solvers (the optional `solvers` extra): qpax in the default run, the slower
# first-order ones with -m slow.
@pytest.mark.parametrize("solver,rtol", [("qpax", 1e-6),
                                         pytest.param("mpax", 1e-5, marks=pytest.mark.slow),
                                         pytest.param("jaxopt", 5e-2, marks=pytest.mark.slow)])
def test_every_solver_within_tolerance(solver, rtol):
  # (The default "ipm" is checked against HiGHS in the tests above.)
  num_snippets = 32
  segments, scores, valid, length = _random_problems(3, 12, 3, num_snippets, max_len=12)
  scores = np.abs(scores)
  with jax.enable_x64(True):
    labels, info = linpro.linpro_labels(segments, scores, valid, length,
                                        num_snippets=num_snippets, outer_rule="wtalc",
                                        solver=solver)
    solved = 0
    for i in range(len(scores)):
      a, b = linpro.linpro_constraints(segments[i], scores[i], valid[i], length[i],
                                       num_snippets=num_snippets, outer_rule="wtalc")
      status, objective, _ = _highs(np.asarray(a), np.asarray(b))
      if int(info["status"][i]) == linpro.STATUS_FAILED:
        # Only BoxOSQP (ADMM) is allowed not to converge; its classes are zero then.
        assert solver == "jaxopt" and np.all(np.asarray(labels[i]) == 0)
      elif status == 0:
        solved += 1
        assert int(info["status"][i]) == linpro.STATUS_SOLVED, (solver, i)
        assert abs(float(info["objective"][i]) - objective) <= rtol * max(1.0, objective)
  assert solved >= 4


def test_outer_areas_get_equal_labels():
  # Negative score: the mass goes to the outer area; HiGHS puts it on one snippet, the
  # averaging of equivalent snippets spreads it evenly over both sides (width 2 each).
  labels, info = linpro.linpro_labels(np.array([[10.0, 20.0]]), np.array([-0.8]),
                                      np.array([True]), 40, num_snippets=40,
                                      outer_rule="wtalc", conventions="exact")
  assert int(info["status"]) == linpro.STATUS_SOLVED
  expected = np.zeros(40)
  expected[[8, 9, 20, 21]] = 0.2
  np.testing.assert_allclose(np.asarray(labels), expected, atol=1e-5)
  # One instance: the score is spread evenly over the inner area.
  labels, _ = linpro.linpro_labels(np.array([[3.0, 8.0]]), np.array([0.5]), np.array([True]),
                                   10, num_snippets=40, outer_rule="wtalc", conventions="exact")
  expected = np.zeros(40)
  expected[3:8] = 0.1  # width floor(5 / 4) = 1 outer snippet each side, label 0
  np.testing.assert_allclose(np.asarray(labels), expected, atol=1e-6)


@pytest.mark.parametrize("segments,scores,violated,conventions", [
    ([[3.0, 8.0], [0.0, 0.0]], [-0.2, 0.0], 1, "exact"),  # negative score, no outer area
    ([[3.0, 8.0], [3.2, 8.9]], [0.3, 0.1], 1, "exact"),  # identical rows, different scores
    ([[3.0, 12.0], [5.0, 9.0]], [0.1, 0.4], 1, "exact"),  # nested, no outer areas, inner larger
    ([[3.0, 3.5], [30.0, 31.0]], [0.2, 0.3], 1, "exact"),  # empty inner ([3, 3)), beyond L
    ([[0.0, 21.0], [0.0, 0.0]], [-0.2, 0.0], 1, "reference"),  # the whole video, negative score
])
def test_infeasible_problems_are_relaxed_and_counted(segments, scores, violated, conventions):
  labels, info = linpro.linpro_labels(np.array(segments), np.array(scores), np.ones(2, bool),
                                      20, num_snippets=24, conventions=conventions)
  assert np.all(np.isfinite(np.asarray(labels)))
  assert int(info["status"]) == linpro.STATUS_RELAXED
  assert int(info["num_violated_rows"]) >= violated
  assert float(info["max_violation"]) > 1e-3


def _largest_component(a):
  """Rows of the largest set of rows of ``a [K, T]`` linked by shared nonzero columns."""
  support = np.abs(a) > 0
  parent = list(range(len(a)))
  def root(i):
    while parent[i] != i:
      i = parent[i]
    return i
  for i in range(len(a)):
    for j in range(i):
      if np.any(support[i] & support[j]):
        parent[root(i)] = root(j)
  roots = [root(i) for i in range(len(a)) if support[i].any()]
  return max(np.bincount(roots)) if roots else 0


def test_component_tiers_mixed_in_one_batch_against_highs():
  # block_rows=1: components of 1, 2, 3-4 and 5-10 rows go to blocks of 1, 2, 4 and 10 rows,
  # all in one batch; each problem must still reproduce HiGHS and report its largest tier.
  num_snippets = 60
  segments, scores, valid, length = _random_problems(6, 40, 10, num_snippets, max_len=12)
  with jax.enable_x64(True):
    labels, info = linpro.linpro_labels(segments, scores, valid, length,
                                        num_snippets=num_snippets, block_rows=1,
                                        outer_rule="wtalc")
    _check_against_highs(segments, scores, valid, length, labels, info,
                         num_snippets=num_snippets, outer_rule="wtalc", normalize="sum",
                         rtol=1e-5)
  expected = []
  for i in range(len(scores)):
    a, _ = linpro.linpro_constraints(segments[i], scores[i], valid[i], length[i],
                                     num_snippets=num_snippets, outer_rule="wtalc")
    largest = _largest_component(np.asarray(a))
    expected.append(0 if largest == 0 else min(t for t in (1, 2, 4, 10) if t >= largest))
  np.testing.assert_array_equal(np.asarray(info["block_rows"]), expected)
  assert len(set(expected) - {0}) >= 3, expected


def test_unsolved_problems_fall_back_to_zeros():
  segments, scores, valid, length = _random_problems(4, 8, 2, 16)
  labels, info = linpro.linpro_labels(segments, scores, valid, length, num_snippets=16,
                                      max_iter=1)
  empty = ~valid.any(axis=1)  # problem 0: no rows, nothing to solve
  assert empty.tolist() == [True] + [False] * 7
  np.testing.assert_array_equal(np.asarray(info["status"]),
                                np.where(empty, linpro.STATUS_SOLVED, linpro.STATUS_FAILED))
  np.testing.assert_array_equal(np.asarray(info["iterations"]), np.where(empty, 0, 1))
  assert np.all(np.asarray(labels) == 0)


def test_lane_pool_equals_solving_each_block_alone():
  """3 lanes for 10 blocks (7 used): each block gets the x, step count and certificate of its own
  interior-point run, whatever lane it ran on and whenever it started; unused blocks get zeros."""
  segments, scores, valid, length = _random_problems(11, 10, 4, 40)
  areas = jax.vmap(linpro.instance_areas, in_axes=(0, 0, 0, None))(segments, valid, length,
                                                                     "gaufuse")
  lps = jax.vmap(blocks.reduce_block, in_axes=(0, 0, 0, None))(areas, valid, scores, "sum")[-1]
  alone_x, _, alone_it, alone_ok = jax.vmap(linpro.solve_elastic_lp)(lps)
  assert len(set(np.asarray(alone_it[:7]).tolist())) > 2  # blocks finish at different steps
  x, it, ok = jax.jit(functools.partial(tiers.solve_pool, lanes=3, solver="ipm", tol=1e-5,
                                        max_iter=60))(lps, 7)
  np.testing.assert_array_equal(np.asarray(it[:7]), np.asarray(alone_it[:7]))
  np.testing.assert_array_equal(np.asarray(ok[:7]), np.asarray(alone_ok[:7]))
  np.testing.assert_allclose(np.asarray(x[:7]), np.asarray(alone_x[:7]), rtol=1e-6, atol=1e-7)
  assert not np.any(np.asarray(x[7:])) and not np.any(it[7:]) and not np.any(ok[7:])


def test_jit_equals_eager_vmap_equals_loop_and_padding_invariance():
  num_snippets = 60
  segments, scores, valid, length = _random_problems(5, 6, 4, num_snippets, sparse=True)
  run = functools.partial(linpro.linpro_labels, num_snippets=num_snippets, block_rows=2,
                          outer_rule="wtalc")
  labels, info = jax.vmap(run)(segments, scores, valid, length)
  # Padded: extra invalid rows (garbage geometry), extra snippets, batch [2, 3]; all together,
  # then each problem alone (the others without valid rows), in one compilation.
  rng = np.random.default_rng(0)
  padded_inputs = (
      np.concatenate([rng.uniform(0, num_snippets, (6, 2, 2)), segments], 1).reshape(2, 3, 6, 2),
      np.concatenate([rng.uniform(size=(6, 2)), scores], 1).reshape(2, 3, 6),
      np.concatenate([np.zeros((6, 2), bool), valid], 1).reshape(2, 3, 6), length.reshape(2, 3))
  padded_run = functools.partial(run, num_snippets=num_snippets + 7)
  padded, padded_info = padded_run(*padded_inputs)
  assert np.all(np.asarray(padded_info["block_rows"]) == 2)
  padded = np.asarray(padded).reshape(6, -1)
  np.testing.assert_allclose(padded[:, :num_snippets], labels, atol=1e-5)
  assert np.all(padded[:, num_snippets:] == 0)
  np.testing.assert_array_equal(np.asarray(padded_info["status"]).ravel(), info["status"])
  for i in range(6):
    alone = np.zeros(6, bool)
    alone[i] = True
    only_valid = padded_inputs[2] & alone.reshape(2, 3, 1)
    looped, _ = padded_run(padded_inputs[0], padded_inputs[1], only_valid, padded_inputs[3])
    looped = np.asarray(looped).reshape(6, -1)
    np.testing.assert_allclose(looped[i], padded[i], atol=1e-5)
    assert not np.any(np.delete(looped, i, axis=0))
  # jit == eager: the constraints, and two interior-point steps on one block (float64: the
  # steps amplify round-off, float32 trajectories drift apart by ~1e-3 after a few steps).
  a, b = linpro.linpro_constraints(segments[0], scores[0], valid[0], length[0],
                                   num_snippets=num_snippets, outer_rule="wtalc")
  with jax.disable_jit():
    a_eager, b_eager = linpro.linpro_constraints(segments[0], scores[0], valid[0], length[0],
                                                 num_snippets=num_snippets, outer_rule="wtalc")
  np.testing.assert_array_equal(a_eager, a)
  np.testing.assert_array_equal(b_eager, b)
  with jax.enable_x64(True):
    areas = linpro.instance_areas(segments[0], valid[0], length[0], "wtalc")
    lp = blocks.reduce_block(areas, valid[0], scores[0], "sum")[-1]
    steps = functools.partial(linpro.solve_elastic_lp, max_iter=2)
    jitted = jax.jit(steps)(lp)
    with jax.disable_jit():
      eager = steps(lp)
  np.testing.assert_allclose(eager[0], jitted[0], atol=1e-6)


def test_bad_input_raises():
  seg, sc, va = np.zeros((3, 2)), np.zeros(3), np.ones(3, bool)
  with pytest.raises(ValueError, match="solver"):
    linpro.linpro_labels(seg, sc, va, 5, num_snippets=5, solver="cvxpy")
  with pytest.raises(ValueError, match="normalize"):
    linpro.linpro_constraints(seg, sc, va, 5, num_snippets=5, normalize="max")
  with pytest.raises(ValueError, match="scores"):
    linpro.linpro_labels(seg, np.zeros(4), va, 5, num_snippets=5)
  with pytest.raises(ValueError, match="segments"):
    linpro.linpro_labels(np.zeros((3, 3)), sc, va, 5, num_snippets=5)


@pytest.mark.parametrize("problem_chunk", [pytest.param(1, marks=pytest.mark.slow), 3, 64])
def test_problem_chunk_changes_nothing(problem_chunk):
  """Problems with rows taken a chunk at a time give the labels and info of all at once (float64:
  other chunks batch the same blocks differently, which moves float32 labels by round-off);
  problems without rows (here every other one) get zeros and ``STATUS_SOLVED``."""
  num_snippets = 50
  segments, scores, valid, length = _random_problems(11, 8, 6, num_snippets)
  valid[::2] = False
  run = functools.partial(linpro.linpro_labels, num_snippets=num_snippets)
  with jax.enable_x64(True):
    expected, expected_info = run(segments, scores, valid, length, problem_chunk=len(scores))
    labels, info = run(segments, scores, valid, length, problem_chunk=problem_chunk)
  np.testing.assert_allclose(labels, expected, rtol=0, atol=1e-9)
  for key, value in expected_info.items():
    np.testing.assert_allclose(info[key], value, rtol=1e-9, atol=1e-9, err_msg=key)
  assert not np.any(np.asarray(labels)[::2]) and np.asarray(labels)[1::2].any()
  assert not np.any(np.asarray(info["status"])[::2])
  assert np.all(np.asarray(info["iterations"])[1::2] > 0)


def test_solution_is_independent_of_the_padded_length():
  """``linpro_solve`` has no ``T``: its pieces laid out on any ``T >= L`` give the labels of
  ``linpro_labels`` at that ``T`` (zeros past ``L``)."""
  segments, scores, valid, length = _random_problems(3, 5, 7, 40)
  solution, info = linpro.linpro_solve(segments, scores, valid, length)
  assert solution.starts.shape == solution.values.shape and solution.starts.shape[0] == 5
  assert np.all((np.asarray(solution.starts) < 2**31 - 1).sum(1) > 0)
  for num_snippets in (40, 57):
    labels, full_info = linpro.linpro_labels(segments, scores, valid, length,
                                             num_snippets=num_snippets)
    laid_out = linpro.linpro_assemble(solution, length, num_snippets=num_snippets)
    np.testing.assert_array_equal(laid_out, labels)
    assert not np.any(np.asarray(labels)[:, 40:])
    np.testing.assert_array_equal(info["status"], full_info["status"])


def test_a_missing_comparison_solver_says_how_to_install_it(monkeypatch):
  from gaufuse_jax._src.linpro import solvers
  monkeypatch.setitem(sys.modules, "mpax", None)  # an import of it raises ImportError
  with pytest.raises(ImportError, match=r"solver='mpax' needs the mpax package.*\[solvers\]"):
    solvers._import("mpax")
