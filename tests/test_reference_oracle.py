"""The default ("reference") conventions against our own numpy port of the authors' code.

The port below was written from reading zhou745/GauFuse_WSTAL @ 3f3013a:
``evaluation/detectionMAP.py:getActLoc`` (the proposal loop), ``NonMaximumSuppression`` /
``utils/utils.py:prediction_fuse_module`` (the fusion loop, identical but for the video index
column) and ``utils/utils.py:compute_score_matrix`` / ``convert_segment_to_tensor`` (the LP).
It keeps their Python loops, ``int()`` casts and float64 arithmetic.
"""

import jax
import numpy as np
import pytest
from scipy import optimize

from gaufuse_jax._src import linpro
from gaufuse_jax._src import localization
from gaufuse_jax._src import proposals as proposals_lib

THRESHOLDS = np.arange(0.001, 0.04, 0.002)  # options.py: start, end, interval


# ------------------------------------------------------------------ the port


def port_proposals(cas, thresholds=THRESHOLDS):
  """getActLoc's inner loop for one (video, class): rows ``[s, e + 1, c_score, inner]``."""
  rows = []
  for thres in thresholds:
    vid_pred = np.concatenate([np.zeros(1), (cas > thres).astype("float32"), np.zeros(1)])
    diff = [vid_pred[i] - vid_pred[i - 1] for i in range(1, len(vid_pred))]
    s = [i for i, d in enumerate(diff) if d == 1]
    e = [i for i, d in enumerate(diff) if d == -1]
    for j in range(len(s)):
      len_proposal = e[j] - s[j]
      if len_proposal >= 2:
        inner = np.mean(cas[s[j]:e[j] + 1])
        outer_s = max(0, int(s[j] - 0.0785 * len_proposal**0.9))
        outer_e = min(int(cas.shape[0] - 1), int(e[j] + 0.0785 * len_proposal**0.9 + 1))
        outer_list = list(range(outer_s, int(s[j]))) + list(range(int(e[j] + 1), outer_e))
        outer = 0 if len(outer_list) == 0 else np.mean(cas[outer_list])
        rows.append([s[j], e[j] + 1, inner - outer, inner])
  return np.array(rows, np.float64).reshape(-1, 4)


def port_fusion(rows, overlap_thresh, temperature):
  """prediction_fuse_module: fused ``[s, e, score]`` in seed order."""
  if len(rows) == 0:
    return np.zeros((0, 3))
  s, e, scores, weights = rows.T
  area = e - s + 1
  idxs = np.argsort(scores)
  fused = []
  while len(idxs) > 0:
    last = len(idxs) - 1
    i = idxs[last]
    maxs = np.maximum(s[i], s[idxs[:last]])
    mine = np.minimum(e[i], e[idxs[:last]])
    overlap = np.maximum(0, mine - maxs + 1) / area[idxs[:last]]
    members = np.concatenate(([last], np.where(overlap > overlap_thresh)[0]))
    s_all = e_all = score_all = weight_all = 0.0
    for idj in members:
      k = idxs[idj]
      w = np.exp(weights[k] / temperature)
      s_all += s[k] * w
      e_all += e[k] * w
      score_all += scores[k] * w
      weight_all += np.sign(weights[k]) * w
    fused.append([s_all / weight_all, e_all / weight_all, score_all / weight_all])
    idxs = np.delete(idxs, members)
  return np.array(fused)


def port_score_matrix(fused, vid_lens):
  """compute_score_matrix: ``(M [K, L], b [K])``."""
  matrix = np.zeros([len(fused), vid_lens])
  score = np.zeros([len(fused)])
  for k, (start, end, value) in enumerate(fused):
    s, e = int(start), int(end)
    len_proposal = e - s
    outer_s = max(0, int(s - 0.0785 * len_proposal**0.9))
    outer_e = min(int(vid_lens - 1), int(e + 0.0785 * len_proposal**0.9 + 1))
    matrix[k, s:e] = 1.
    matrix[k, outer_s:s] = -1.
    matrix[k, e:outer_e] = -1.
    score[k] = value
  return matrix, score


# ------------------------------------------------------------------ random CAS


def smooth_cas(rng, length, num_bumps, *, at_ends=False):
  """A non-negative CAS of Gaussian bumps (widths 1-12 snippets) over a low floor, on the
  scale of the reference thresholds (0.001-0.039)."""
  t = np.arange(length)
  centres = rng.uniform(0, length, num_bumps)
  if at_ends:
    centres[:2] = [0.0, length - 1.0]
  widths = rng.uniform(1.0, 12.0, num_bumps)
  heights = rng.uniform(0.005, 0.06, num_bumps)
  cas = (heights[:, None] * np.exp(-0.5 * ((t - centres[:, None]) / widths[:, None])**2)).sum(0)
  return (cas + rng.uniform(0, 0.002, length)).astype(np.float32)


def cases():
  """(name, cas) of: short runs, runs touching both ends, > 70 instances of one class."""
  rng = np.random.default_rng(0)
  out = [(f"short{i}", smooth_cas(rng, 120, 12)) for i in range(3)]
  out += [(f"ends{i}", smooth_cas(rng, 90, 8, at_ends=True)) for i in range(3)]
  many = np.full(1100, 0.0005, np.float32)  # 90 separate instances of 2-8 snippets
  starts = np.arange(90) * 12 + 3
  for s, n, h in zip(starts, rng.integers(2, 9, 90), rng.uniform(0.01, 0.06, 90)):
    many[s:s + n] = h
  out.append(("many", many + rng.uniform(0, 0.0004, 1100).astype(np.float32)))
  return out


CASES = cases()
T_PAD = 1152  # every case padded to one length: one compilation


def _localize(cas, temperature, merge):
  cfg = localization.LocalizationConfig(
      class_threshold=0.0, max_proposals=2048, max_instances=512, temperature=temperature,
      merge_duplicates=merge)
  padded = np.zeros((1, T_PAD, 1), np.float32)
  padded[0, :len(cas), 0] = cas
  return LOCALIZE(padded, np.ones((1, 1), np.float32), np.array([len(cas)]), cfg)


LOCALIZE = jax.jit(localization.localize, static_argnums=3)
PROPOSE = jax.jit(proposals_lib.generate_proposals, static_argnames=("max_proposals",))


# ------------------------------------------------------------------ tests


def test_proposals_equal_the_port():
  for name, cas in CASES:
    want = port_proposals(cas.astype(np.float64))
    padded = np.zeros(T_PAD, np.float32)
    padded[:len(cas)] = cas
    p = PROPOSE(padded, len(cas), THRESHOLDS, max_proposals=4096)
    valid = np.asarray(p.valid)
    got = np.stack([np.asarray(x)[valid] for x in (p.start, p.end, p.score, p.inner)], 1)
    assert int(p.num_dropped) == 0 and got.shape == want.shape, name
    order = lambda r: np.lexsort((r[:, 2], r[:, 1], r[:, 0]))
    np.testing.assert_allclose(got[order(got)], want[order(want)], atol=1e-5, err_msg=name)
  # The two ends: a run at t = 0 has no left area, one touching L stores L + 1.
  ends = [port_proposals(c.astype(np.float64)) for n, c in CASES if n.startswith("ends")]
  assert any(np.any(r[:, 0] == 0) for r in ends)
  assert any(np.any(r[:, 1] == 91) for r in ends)


def test_hand_computed_proposal():
  cas = np.array([0.1, 0.9, 0.8, 0.7, 0.6, 0.2, 0.0, 0.0], np.float32)
  # Run [1, 5): inner mean(cas[1:6]) = 0.64, left area [0, 1) (ceil(0.27) = 1 snippet), right
  # area [6, min(7, 6)) empty -> score 0.64 - 0.1 = 0.54; stored segment [1, 6).
  p = proposals_lib.generate_proposals(cas, 8, [0.5], max_proposals=2)
  np.testing.assert_allclose([p.start[0], p.end[0], p.inner[0], p.score[0]],
                             [1, 6, 0.64, 0.54], atol=1e-6)
  np.testing.assert_allclose(port_proposals(cas.astype(np.float64), [0.5]),
                             [[1, 6, 0.54, 0.64]], atol=1e-6)


@pytest.mark.parametrize("temperature", [0.2, 0.02, 0.0016])
def test_fused_instances_equal_the_port(temperature):
  for name, cas in CASES:
    want = port_fusion(port_proposals(cas.astype(np.float64)), 0.25, temperature)
    inst, stats = _localize(cas, temperature, merge=True)  # copies merged, as by default
    count = int(inst.count[0, 0])
    assert count == len(want) and int(stats["instances_dropped"].sum()) == 0, name
    got = np.concatenate([np.asarray(inst.segments)[0, 0, :count],
                          np.asarray(inst.scores)[0, 0, :count, None]], 1)
    np.testing.assert_allclose(got, want, atol=1e-4, err_msg=name)
  assert len(port_fusion(port_proposals(CASES[-1][1].astype(np.float64)), 0.25, 0.2)) > 70


def unique_averaged_optimum(matrix, score):
  """The LP optimum of convert_segment_to_tensor averaged over equivalent snippets (identical
  columns of ``matrix``), or None when the LP is infeasible or that average is not unique
  (some class mass varies over the optimal face: min and max differ)."""
  columns, group = np.unique(matrix.T, axis=0, return_inverse=True)
  group = group.ravel()
  size = np.bincount(group).astype(np.float64)
  bounds = list(zip(np.zeros_like(size), size))
  best = optimize.linprog(np.ones(len(size)), A_eq=columns.T, b_eq=score, bounds=bounds)
  if best.status != 0:
    return None
  face = dict(A_eq=columns.T, b_eq=score, A_ub=np.ones((1, len(size))),
              b_ub=[best.fun + 1e-9 * (1 + best.fun)], bounds=bounds)
  for g in range(len(size)):
    unit = np.eye(len(size))[g]
    low, high = (optimize.linprog(sign * unit, **face).fun for sign in (1, -1))
    if -high - low > 1e-7:
      return None
  return (best.x / size)[group]


def test_lp_rows_and_labels_equal_the_port():
  compared = 0
  for name, cas in CASES:
    inst, _ = _localize(cas, 0.02, merge=True)
    count, length = int(inst.count[0, 0]), len(cas)
    segments = np.asarray(inst.segments)[0, 0, :count]
    scores = np.asarray(inst.scores)[0, 0, :count]
    valid = np.ones(count, bool)
    a, b = linpro.linpro_constraints(segments, scores, valid, length, num_snippets=T_PAD)
    matrix, score = port_score_matrix(np.concatenate([segments, scores[:, None]], 1), length)
    np.testing.assert_array_equal(np.asarray(a)[:, :length], matrix, err_msg=name)
    assert not np.any(np.asarray(a)[:, length:])
    np.testing.assert_allclose(np.asarray(b), score, rtol=1e-6)
    labels, info = linpro.linpro_labels(segments, scores, valid, length, num_snippets=T_PAD)
    labels = np.asarray(labels)[:length]
    # convert_segment_to_tensor: linprog(ones, A_eq=M, b_eq=b, bounds=(0, 1)). Its optimum is
    # one point of a face; ours averages equivalent snippets. Compare where that is unique.
    want = unique_averaged_optimum(matrix, score)
    if want is None:
      continue
    assert int(info["status"]) == linpro.STATUS_SOLVED, name
    np.testing.assert_allclose(labels, want, atol=1e-3, err_msg=name)
    compared += 1
  assert compared >= 4
