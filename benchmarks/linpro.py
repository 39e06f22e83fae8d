"""Speed and accuracy of LinPro pseudo labels: ours (jit, batched) vs scipy HiGHS per problem.

The reference way is the authors' (``utils/utils.py:convert_segment_to_tensor``): one full
T-variable LP per (video, class), built with numpy and solved by ``scipy.optimize.linprog``
(HiGHS), in a Python loop. Ours is ``linpro.linpro_labels`` (reduced LP over classes of
equivalent snippets, independent blocks, elastic rows) on padded batches, one call per
power-of-two size bucket of the number of instances, jitted and warm (compiled before timing).
Both sides are timed in the same stretch, interleaved: five rounds of one reference pass over all
problems and two passes over all buckets; ours per bucket is the best of its ten passes, the
reference per problem the best of its six (the first, before compiling, included). Passes, not
repeated calls, and interleaved, so that a burst of load or a change of speed of a shared machine
neither decides a bucket's time nor weighs on one side only.

Workload (THUMOS14-sized): the 200 training videos (subset ``validation``) of
``../shared/data/thumos14/Thumos14reduced-Annotations``; per video and labelled class, the
ground-truth segments in snippets (``round(t * 25 / 16)``) with random scores in [0.01, 0.5],
plus one jittered overlapping copy of each (shifted by 10-30 % of its length, at least one
snippet, plus sub-snippet noise); ``T = ceil(duration * 25 / 16)``. Nested or identical rows make
some of these LPs infeasible: HiGHS reports them (the authors' code would write NaN), ours relaxes
them (``STATUS_RELAXED``); both counts are printed.

Printed per solver: time, ratio to the reference, throughput in labelled snippets per second
(sum of ``T`` over the (video, class) problems / time), max relative objective error vs HiGHS on the
feasible LPs, status counts (solved / relaxed / failed) and mismatches (HiGHS feasible but ours
not solved). ``--solvers`` picks solvers; ``--slow-max-rows`` limits qpax (dense ``n x n``
Hessian), mpax and jaxopt (first-order methods), which take minutes on the big buckets, to
buckets of at most that many rows, timed against the reference on the same problems (the
default ``ipm`` is printed on both sets).

Run: ``python benchmarks/linpro.py`` (about 5 minutes on 2 CPU cores, mostly compilation).
"""

from __future__ import annotations

import argparse
import collections
import functools
import math
import os
import pathlib
import platform
import time

# The reference is single-threaded (HiGHS, one LP at a time). Idle OpenBLAS workers left spinning
# by its numpy calls took a core from XLA's threads: unpinned on 2 cores ours read 0.033 s, and
# 0.023-0.026 s with one BLAS thread (set before numpy is imported).
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
  os.environ.setdefault(_var, "1")

import jax  # pylint: disable=g-import-not-at-top,wrong-import-position
import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position
from scipy import optimize  # pylint: disable=g-import-not-at-top,wrong-import-position

from gaufuse_jax._src import linpro  # pylint: disable=g-import-not-at-top,wrong-import-position

ANNOTATIONS = (pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "thumos14"
               / "Thumos14reduced-Annotations")
SNIPPETS_PER_SECOND = 25 / 16
SEED = 0
PASSES = 5  # timing rounds; the reference also counts the pass that gives its objectives
OURS_PER_PASS = 2


def workload(seed=SEED):
  """List of problems ``(T, segments [K, 2], scores [K])`` (see the module docstring)."""
  rng = np.random.default_rng(seed)
  load = lambda name: np.load(ANNOTATIONS / name, allow_pickle=True)
  subset, labels, segments = load("subset.npy"), load("labels.npy"), load("segments.npy")
  duration = load("duration.npy")
  problems = []
  for v in range(len(subset)):
    if subset[v] not in (b"validation", "validation"):
      continue
    num_snippets = math.ceil(float(duration[v][0]) * SNIPPETS_PER_SECOND)
    for c in sorted(set(labels[v])):
      gt = np.array([s for s, l in zip(segments[v], labels[v]) if l == c], np.float64)
      gt = np.round(gt * SNIPPETS_PER_SECOND)
      length = gt[:, 1] - gt[:, 0]
      shift = rng.choice([-1.0, 1.0], len(gt)) * np.maximum(1.0, rng.uniform(0.1, 0.3, len(gt))
                                                              * length)
      copy = gt + shift[:, None] + rng.uniform(0.0, 0.99, gt.shape)
      rows = np.clip(np.concatenate([gt, copy]), 0, num_snippets)
      problems.append((num_snippets, rows, rng.uniform(0.01, 0.5, len(rows))))
  return problems


def reference_matrix(num_snippets, segments):
  """The constraint matrix built the authors' way (a Python loop of slices), our geometry."""
  a = np.zeros((len(segments), num_snippets))
  for k, (start, end) in enumerate(segments):
    s, e = int(math.floor(start)), int(math.floor(end))
    w = int(math.floor(0.0785 * max(e - s, 0)**0.9 + 1e-6))
    lo, hi = min(max(s, 0), num_snippets), min(max(e, 0), num_snippets)
    hi = max(hi, lo)
    a[k, max(0, min(s - w, num_snippets)):lo] = -1
    a[k, lo:hi] = 1
    a[k, hi:max(hi, min(num_snippets, e + w))] = -1
  return a


def run_reference(problems):
  """Per-problem seconds and objectives (None where infeasible) of HiGHS on the full LPs."""
  seconds, objectives = [], []
  for num_snippets, segments, scores in problems:
    start = time.perf_counter()
    res = optimize.linprog(np.ones(num_snippets), A_eq=reference_matrix(num_snippets, segments),
                           b_eq=scores, bounds=(0.0, 1.0), method="highs")
    seconds.append(time.perf_counter() - start)
    objectives.append(res.fun if res.status == 0 else None)
  return np.array(seconds), objectives


def buckets(problems):
  """Problem indices grouped by the power of two >= their number of rows."""
  groups = collections.defaultdict(list)
  for i, (_, segments, _) in enumerate(problems):
    groups[max(2, 1 << math.ceil(math.log2(len(segments))))].append(i)
  return dict(sorted(groups.items()))


def padded_batch(problems, indices, num_rows):
  num_snippets = max(problems[i][0] for i in indices)
  segments = np.zeros((len(indices), num_rows, 2))
  scores = np.zeros((len(indices), num_rows))
  valid = np.zeros((len(indices), num_rows), bool)
  for j, i in enumerate(indices):
    _, seg, sc = problems[i]
    segments[j, :len(seg)], scores[j, :len(seg)], valid[j, :len(seg)] = seg, sc, True
  lengths = np.array([problems[i][0] for i in indices])
  return (segments, scores, valid, lengths), num_snippets


@functools.partial(jax.jit, static_argnames=("num_snippets", "solver"))
def _labels(args, num_snippets, solver):
  # Jitted as in the pseudo-label pipeline (an eager call would add the host-side bucket
  # padding of the public function to the time).
  return linpro.linpro_labels(*args, num_snippets=num_snippets, solver=solver)


def labels(args, num_snippets, solver):
  return jax.block_until_ready(_labels(args, num_snippets, solver))


def compile_ours(problems, groups, solver):
  """Warm calls per bucket, compile seconds, objectives and statuses of ``linpro_labels``."""
  objectives, statuses, calls = {}, {}, {}
  compile_seconds = 0.0
  for num_rows, indices in groups.items():
    args, num_snippets = padded_batch(problems, indices, num_rows)
    # On the device before timing, as in the pseudo-label pipeline.
    calls[num_rows] = functools.partial(labels, jax.device_put(args), num_snippets, solver)
    start = time.perf_counter()
    _, info = calls[num_rows]()
    compile_seconds += time.perf_counter() - start
    for j, i in enumerate(indices):
      objectives[i] = float(info["objective"][j])
      statuses[i] = int(info["status"][j])
  return calls, compile_seconds, objectives, statuses


def time_interleaved(problems, solver_calls, reference_seconds):
  """Best seconds per problem of the reference and per bucket of each solver's calls, timed in
  ``PASSES`` rounds of one reference pass and ``OURS_PER_PASS`` passes over every solver's buckets,
  so that a change of machine speed during the run weighs on both sides alike."""
  best = [dict.fromkeys(calls, math.inf) for calls in solver_calls]
  for _ in range(PASSES):
    reference_seconds = np.minimum(reference_seconds, run_reference(problems)[0])
    for _ in range(OURS_PER_PASS):
      for calls, seconds in zip(solver_calls, best):
        for num_rows, call in calls.items():
          start = time.perf_counter()
          call()
          seconds[num_rows] = min(seconds[num_rows], time.perf_counter() - start)
  return reference_seconds, best


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--solvers", default="ipm,qpax,mpax,jaxopt")
  parser.add_argument("--slow-max-rows", type=int, default=8)
  args = parser.parse_args()
  problems = workload()
  groups = buckets(problems)
  print(f"{platform.processor() or platform.machine()}, {jax.devices()[0].platform}, "
        f"jax {jax.__version__}, float32")
  print(f"workload: {len(problems)} (video, class) LPs, {sum(len(p[1]) for p in problems)} rows, "
        f"T {min(p[0] for p in problems)}..{max(p[0] for p in problems)}; buckets (rows: "
        f"problems) {', '.join(f'{k}: {len(v)}' for k, v in groups.items())}")
  reference_seconds, reference = run_reference(problems)
  small = {k: v for k, v in groups.items() if k <= args.slow_max_rows}
  solvers = args.solvers.split(",")
  runs = [(s, groups) for s in solvers if s == "ipm"] + [(s, small) for s in solvers if s != "ipm"]
  if "ipm" in solvers and len(runs) > 1:
    runs.append(("ipm", small))  # the default on the problems of the other solvers
  compiled = [compile_ours(problems, subset, solver) for solver, subset in runs]
  reference_seconds, best = time_interleaved(problems, [c[0] for c in compiled],
                                             reference_seconds)
  infeasible = sum(r is None for r in reference)
  print(f"reference (numpy + scipy HiGHS, full LP, one per problem): "
        f"{reference_seconds.sum():.3f} s, {infeasible} infeasible, "
        f"{sum(p[0] for p in problems) / reference_seconds.sum():.3g} snippets/s")
  print(f"{'solver':8s} {'problems':>8s} {'ours s':>8s} {'ref s':>8s} {'ratio':>7s} "
        f"{'max obj err':>11s} {'solved':>6s} {'relaxed':>7s} {'failed':>6s} {'mismatch':>8s} "
        f"{'compile s':>9s} {'snippets/s':>10s}")
  per_bucket = None
  for (solver, subset), (_, compile_seconds, objectives, statuses), seconds in zip(
      runs, compiled, best):
    indices = [i for v in subset.values() for i in v]
    ref_seconds = reference_seconds[indices].sum()
    if solver == "ipm" and per_bucket is None:
      per_bucket = seconds
    errors = [abs(objectives[i] - reference[i]) / max(1.0, abs(reference[i])) for i in indices
              if reference[i] is not None and statuses[i] == linpro.STATUS_SOLVED]
    counts = collections.Counter(statuses.values())
    mismatch = sum((reference[i] is not None) != (statuses[i] == linpro.STATUS_SOLVED)
                   for i in indices)
    total = sum(seconds.values())
    snippets = sum(problems[i][0] for i in indices)  # labelled (video, class) snippets
    print(f"{solver:8s} {len(indices):8d} {total:8.3f} {ref_seconds:8.3f} "
          f"{ref_seconds / total:6.1f}x {max(errors, default=float('nan')):11.1e} "
          f"{counts[linpro.STATUS_SOLVED]:6d} {counts[linpro.STATUS_RELAXED]:7d} "
          f"{counts[linpro.STATUS_FAILED]:6d} {mismatch:8d} {compile_seconds:9.1f} "
          f"{snippets / total:10.3g}")
  if per_bucket:
    print("ipm per bucket (rows: ours ms / reference ms = ratio): " + ", ".join(
        f"{k}: {1e3 * v:.1f}/{1e3 * reference_seconds[groups[k]].sum():.1f}="
        f"{reference_seconds[groups[k]].sum() / v:.0f}x" for k, v in per_bucket.items()))

if __name__ == "__main__":
  main()
