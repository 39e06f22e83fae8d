"""Speed of Gaussian weighted fusion, NMS and proposals: ours (jit + vmap) vs numpy loops.

The baselines are written here the way the authors' code does it
(``evaluation/detectionMAP.py:getActLoc`` and ``NonMaximumSuppression``): one Python loop over
videos and classes, and inside it the greedy loop over clusters. "authors-style" keeps their
per-member Python accumulation of ``exp(inner / T)``; "vectorized numpy" does each cluster with
whole-array numpy calls. Both compute what the authors compute (stored segments one snippet past
the run, inclusive candidate overlap > 0.25), as ours does by default (``conventions=
"reference"``), with ties to the lowest index, so their outputs are compared with ours, not only
timed.

Data: the 212 THUMOS14 test videos with their real lengths (``T = ceil(duration * 25 / 16)``,
from ``../shared/data``; a seeded stand-in when absent), 2 gated classes each, a random smooth
CAS per (video, class), 20 thresholds ``arange(0.001, 0.04, 0.002)``.

The 20 thresholds find most runs several times over (about 60% of the proposals are copies).
Ours merges them as ``localization`` does (``generate_proposals(merge_duplicates=True)``, the
copies as ``counts`` of the fusion) and so fuses and suppresses fewer rows; the baselines get
every copy, as in the authors' code. The row "fusion, every copy" times ours without merging.
Outputs are compared per set as (seed segment, fused start, end, score).

Ours is timed twice: one call over all sets padded to the largest (how a training batch is
done), and one call per power-of-two size bucket (sets grouped by proposal count).

Run: ``python benchmarks/fusion.py`` (about a minute on 2 CPU cores).
"""

from __future__ import annotations

import math
import pathlib
import platform
import time

import jax
import jax.numpy as jnp
import numpy as np

from gaufuse_jax._src.fusion import gaussian_weighted_fusion
from gaufuse_jax._src.proposals import generate_proposals
from gaufuse_jax._src.suppression import nms

ANNOTATIONS = (pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "thumos14"
               / "Thumos14reduced-Annotations")
THRESHOLDS = np.arange(0.001, 0.04, 0.002)
CLASSES_PER_VIDEO = 2
OVERLAP = 0.25
TEMPERATURE = 0.2  # the authors' test-time value
MAX_PROPOSALS = 2048
SEED = 0


# ----------------------------------------------------------------------------- data


def video_lengths() -> tuple[np.ndarray, str]:
  """Snippet counts of the THUMOS14 test videos (or a seeded stand-in of the same size)."""
  if (ANNOTATIONS / "duration.npy").exists():
    duration = np.load(ANNOTATIONS / "duration.npy", allow_pickle=True).astype(float).ravel()
    subset = np.load(ANNOTATIONS / "subset.npy", allow_pickle=True)
    test = np.array([(s.decode() if isinstance(s, bytes) else s) == "test" for s in subset])
    return np.ceil(duration[test] * 25 / 16).astype(int), "THUMOS14 test durations"
  rng = np.random.default_rng(SEED)
  return np.clip(rng.lognormal(5.5, 0.8, 212), 24, 2615).astype(int), "stand-in lengths"


def smooth_cas(rng, length: int, sigma: float = 3.0) -> np.ndarray:
  """A random smooth CAS in [0, 1]: exp of Gaussian-smoothed noise, like softmax x attention."""
  half = int(4 * sigma)
  kernel = np.exp(-0.5 * (np.arange(-half, half + 1) / sigma)**2)
  noise = rng.standard_normal(length + 2 * half)
  z = np.convolve(noise, kernel / np.sqrt(np.sum(kernel**2)), "valid")
  return np.clip(np.exp(3 * z - 5), 0, 1).astype(np.float32)


# ----------------------------------------------------------------------------- baselines


def numpy_proposals(cas: np.ndarray, thresholds) -> list[list[float]]:
  """Per threshold: runs ``[s, e)`` of cas > thr (np.diff), stored as ``[s, e + 1)`` with the
  authors' OIC score (inner mean over ``cas[s:e + 1]``, outer areas from ``int(s - w)`` and
  up to ``min(T - 1, int(e + w + 1))``)."""
  proposals = []
  length = len(cas)
  for thr in thresholds:
    edges = np.diff(np.concatenate([[0], (cas > np.float32(thr)).astype(np.int8), [0]]))
    for s, e in zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)):
      if e - s < 2:
        continue
      inner = cas[s:e + 1].mean(dtype=np.float64)
      w = 0.0785 * (e - s)**0.9
      right_end = min(length - 1, int(e + w + 1))
      outer = np.concatenate([cas[max(0, int(s - w)):s], cas[e + 1:right_end]])
      proposals.append([s, e + 1, inner - (outer.mean(dtype=np.float64) if outer.size else 0.0),
                        inner])
  return proposals


def numpy_greedy(segs: np.ndarray, overlap_thresh: float, emit) -> list:
  """The authors' NonMaximumSuppression loop (without its dead occupancy code).

  ``segs`` rows are ``[start, end, score, inner]``; the seed is the remaining row with the
  highest score (ties: lowest index), its cluster every remaining row whose intersection /
  own length, both inclusive (``+ 1``), is > ``overlap_thresh``; ``emit(seed, cluster)`` makes
  the output row.
  """
  s, e, scores = segs[:, 0], segs[:, 1], segs[:, 2]
  area = e - s + 1
  idxs = np.lexsort((-np.arange(len(scores)), scores))  # the last entry is the next seed
  out = []
  while len(idxs) > 0:
    last = len(idxs) - 1
    i = idxs[last]
    l = np.maximum(0, np.minimum(e[i], e[idxs[:last]]) - np.maximum(s[i], s[idxs[:last]]) + 1)
    overlap = l / area[idxs[:last]]
    members = np.concatenate(([last], np.where(overlap > overlap_thresh)[0]))
    out.append(emit(i, idxs[members]))
    idxs = np.delete(idxs, members)
  return out


def authors_style_fusion(segs: np.ndarray, overlap_thresh: float, T: float) -> list:
  """Fusion with the authors' per-member accumulation of ``exp(inner / T)``."""
  s, e, scores, weights = segs.T

  def emit(i, cluster):
    s_all = e_all = score_all = weight_all = 0.0
    for id_seg in cluster:
      s_all += s[id_seg] * np.exp(weights[id_seg] / T)
      e_all += e[id_seg] * np.exp(weights[id_seg] / T)
      score_all += scores[id_seg] * np.exp(weights[id_seg] / T)
      weight_all += np.exp(weights[id_seg] / T)
    return [i, s_all / weight_all, e_all / weight_all, score_all / weight_all]

  return numpy_greedy(segs, overlap_thresh, emit)


def vectorized_fusion(segs: np.ndarray, overlap_thresh: float, T: float) -> list:
  """Fusion with each cluster done by whole-array numpy calls."""
  def emit(i, cluster):
    w = np.exp((segs[cluster, 3] - segs[cluster, 3].max()) / T)
    return [i, *(w / w.sum()) @ segs[cluster, :3]]
  return numpy_greedy(segs, overlap_thresh, emit)


def numpy_nms(segs: np.ndarray, overlap_thresh: float) -> list:
  """Greedy NMS: the same loop, keeping the seed (the authors' use_new_predictor=False)."""
  return numpy_greedy(segs, overlap_thresh, lambda i, cluster: [i, *segs[i, :3]])


# ----------------------------------------------------------------------------- ours


def _fuse(p, v):
  return gaussian_weighted_fusion(p[:, :2], p[:, 2], v, logits=p[:, 3], counts=p[:, 4],
                                  overlap_threshold=OVERLAP, temperature=TEMPERATURE)


def _nms(p, v):
  return nms(p[:, :2], p[:, 2], v, overlap_threshold=OVERLAP, overlap="candidate")


FUSE = jax.jit(jax.vmap(_fuse))
NMS = jax.jit(jax.vmap(_nms))


@jax.jit(static_argnames=("max_proposals", "merge_duplicates"))
def _proposals(cas, lengths, thresholds, max_proposals=MAX_PROPOSALS, merge_duplicates=True):
  per_class = jax.vmap(lambda c, n: generate_proposals(
      c, n, thresholds, max_proposals=max_proposals, merge_duplicates=merge_duplicates), (0, None))
  return jax.vmap(per_class)(cas, lengths)


def bucket_of(n: int, smallest: int = 64) -> int:
  return max(smallest, 1 << max(n - 1, 0).bit_length())


def best_time(fn, repeats: int = 3):
  """(best wall time, result) of ``fn()`` over ``repeats`` runs after one warm-up call.

  JAX results are blocked on; the machine is shared, so the best run is the fair one.
  """
  result = jax.block_until_ready(fn())
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    result = jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return min(times), result


# ----------------------------------------------------------------------------- checks


def max_diff(ours_rows: list[np.ndarray], ref_rows: list[list], ref_sets) -> float:
  """Largest |ours - reference| over all sets; inf when counts or seed segments differ.

  Rows are compared as ``[seed start, seed end, start, end, score]``: with copies merged, our
  seed index points into a shorter set than the reference's.
  """
  worst = 0.0
  for mine, ref, segs in zip(ours_rows, ref_rows, ref_sets):
    ref = np.asarray(ref, np.float64).reshape(-1, 4)
    ref = np.column_stack([segs[ref[:, 0].astype(int), :2], ref[:, 1:]])
    if mine.shape != ref.shape or not np.array_equal(mine[:, :2], ref[:, :2]):
      return math.inf
    if len(ref):
      worst = max(worst, float(np.max(np.abs(mine[:, 2:] - ref[:, 2:]))))
  return worst


def detections_rows(det, sets) -> list[np.ndarray]:
  """Per set ``[seed start, seed end, start, end, score]`` rows of a batched Detections."""
  index, segs, scores, count = (np.asarray(x) for x in (det.index, det.segments, det.scores,
                                                        det.count))
  return [np.column_stack([rows[index[b, :count[b]], :2], segs[b, :count[b]],
                           scores[b, :count[b]]]) for b, rows in enumerate(sets)]


def as_sets(props) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """``[sets, N, 5]`` rows (start, end, score, inner, count), ``[sets, N]`` valid, counts."""
  stacked = np.stack([np.asarray(x, np.float32) for x in (props.start, props.end, props.score,
                                                          props.inner, props.count)], axis=-1)
  stacked = stacked.reshape(-1, stacked.shape[-2], 5)
  valid = np.asarray(props.valid).reshape(stacked.shape[:2])
  return stacked, valid, valid.sum(axis=1)


def bucketed(stacked, valid, counts):
  """Sets grouped by power-of-two proposal count: ``[(ids, rows [B, N, 5], valid [B, N])]``."""
  groups: dict[int, list[int]] = {}
  for b, n in enumerate(counts):
    groups.setdefault(bucket_of(int(n)), []).append(b)
  return [(ids, jnp.asarray(stacked[ids, :size]), jnp.asarray(valid[ids, :size]))
          for size, ids in sorted(groups.items())]


def time_ours(fn, stacked, valid, counts, sets):
  """(padded s, bucketed s, padded rows, bucketed rows) of ``fn`` on one layout of the sets."""
  n_pad = bucket_of(int(counts.max()))
  padded = (jnp.asarray(stacked[:, :n_pad]), jnp.asarray(valid[:, :n_pad]))
  buckets = bucketed(stacked, valid, counts)
  t_padded, det = best_time(lambda: fn(*padded))
  padded_rows = detections_rows(det, sets)
  t_bucketed, dets = best_time(lambda: [fn(p, v) for _, p, v in buckets])
  rows = [None] * len(sets)
  for (ids, _, _), det in zip(buckets, dets):
    for b, r in zip(ids, detections_rows(det, [sets[b] for b in ids])):
      rows[b] = r
  return t_padded, t_bucketed, padded_rows, rows, buckets


# ----------------------------------------------------------------------------- main


def main():
  rng = np.random.default_rng(SEED)
  lengths, source = video_lengths()
  t_max = int(lengths.max())
  cas = np.zeros((len(lengths), CLASSES_PER_VIDEO, t_max), np.float32)
  for v, t in enumerate(lengths):
    for c in range(CLASSES_PER_VIDEO):
      cas[v, c, :t] = smooth_cas(rng, t)
  pairs = [(v, c) for v in range(len(lengths)) for c in range(CLASSES_PER_VIDEO)]
  thresholds = jnp.asarray(THRESHOLDS, jnp.float32)

  # Proposals: ours over [videos, classes, T_max] in one call (copies merged, as localization
  # does) vs the numpy loop; the every-copy output feeds the baselines below.
  t_prop_ours, props = best_time(lambda: _proposals(cas, lengths, thresholds))
  full_props = _proposals(cas, lengths, thresholds, merge_duplicates=False)
  assert int(jnp.max(props.num_dropped)) == int(jnp.max(full_props.num_dropped)) == 0, (
      "raise MAX_PROPOSALS")
  video_groups: dict[int, list[int]] = {}
  for v, t in enumerate(lengths):
    video_groups.setdefault(bucket_of(int(t)), []).append(v)
  # At most (T + 1) / 3 runs of length >= 2 per threshold.
  video_buckets = [(cas[ids, :, :size], lengths[ids], min(MAX_PROPOSALS, 7 * size))
                   for size, ids in sorted(video_groups.items())]
  t_prop_buckets, bucket_props = best_time(lambda: [
      _proposals(c, n, thresholds, max_proposals=m) for c, n, m in video_buckets])
  assert max(int(jnp.max(p.num_dropped)) for p in bucket_props) == 0
  t_prop_np, ref_props = best_time(lambda: [
      numpy_proposals(cas[v, c, :lengths[v]], THRESHOLDS) for v, c in pairs])
  merged, merged_valid, merged_counts = as_sets(props)
  full, full_valid, full_counts = as_sets(full_props)
  prop_diff = 0.0
  for b, ref in enumerate(ref_props):  # our rows times their counts == the numpy rows
    ref = np.asarray(ref, np.float64).reshape(-1, 4)
    mine = np.repeat(merged[b, :merged_counts[b]], merged[b, :merged_counts[b], 4].astype(int),
                     axis=0)[:, :4]
    if len(ref) != len(mine):
      prop_diff = math.inf
      break
    if len(ref):
      order = lambda r: np.lexsort((r[:, 1], r[:, 0]))
      prop_diff = max(prop_diff, float(np.max(np.abs(mine[order(mine)] - ref[order(ref)]))))

  # Fusion and NMS: the baselines get every copy (as the authors' code), ours the merged rows
  # (and, for comparison, every copy too).
  full_sets = [full[b, :full_counts[b]].astype(np.float64) for b in range(len(pairs))]
  merged_sets = [merged[b, :merged_counts[b]] for b in range(len(pairs))]
  authors = ("authors-style loop", lambda x: authors_style_fusion(x, OVERLAP, TEMPERATURE))
  vectorized = ("vectorized numpy loop", lambda x: vectorized_fusion(x, OVERLAP, TEMPERATURE))
  rows, baseline_times, layouts = [], {}, {}
  for name, ours, sets, baselines in (
      ("fusion", FUSE, "merged", (authors, vectorized)),
      ("fusion, every copy", FUSE, "full", (authors,)),
      ("nms", NMS, "merged", (("numpy loop", lambda x: numpy_nms(x, OVERLAP)),))):
    layout = (merged, merged_valid, merged_counts, merged_sets) if sets == "merged" else (
        full, full_valid, full_counts, full_sets)
    t_padded, t_bucketed, padded_rows, mine, buckets = time_ours(ours, *layout)
    layouts[sets] = (layout[0].shape[1], buckets)
    for label, fn in baselines:
      if label not in baseline_times:
        baseline_times[label] = best_time(lambda: [fn(x[:, :4]) for x in full_sets])
      t_np, ref = baseline_times[label]
      diff = max(max_diff(mine, ref, full_sets), max_diff(padded_rows, ref, full_sets))
      rows.append((name, label, t_np, t_padded, t_bucketed, diff))
  rows.append(("proposals", "numpy loop (np.diff runs)", t_prop_np, t_prop_ours, t_prop_buckets,
               prop_diff))

  n_fused = int(sum(len(r) for r in mine))
  print(f"{len(lengths)} videos ({source}, T {lengths.min()}-{t_max}) x {CLASSES_PER_VIDEO} "
        f"classes = {len(pairs)} sets, {len(THRESHOLDS)} thresholds; {int(full_counts.sum())} "
        f"proposals (max {int(full_counts.max())} per set), {int(merged_counts.sum())} after "
        f"merging the copies of a run (max {int(merged_counts.max())}), {n_fused} fused instances")
  describe = lambda buckets: ", ".join(f"{len(i)}x{p.shape[1]}" for i, p, _ in buckets)
  print(f"machine: {platform.processor() or platform.machine()}, {jax.device_count()} "
        f"{jax.default_backend()} device(s), jax {jax.__version__}; ours padded: one call "
        f"[{len(pairs)}, {bucket_of(int(merged_counts.max()))}] merged, [{len(pairs)}, "
        f"{bucket_of(int(full_counts.max()))}] every copy (proposals: [{len(lengths)}, "
        f"{CLASSES_PER_VIDEO}, {t_max}]); bucketed: sets x N {describe(layouts['merged'][1])} "
        f"merged, {describe(layouts['full'][1])} every copy; videos x T "
        f"{', '.join(f'{len(n)}x{c.shape[-1]}' for c, n, _ in video_buckets)}")
  print()
  header = ("op", "baseline", "baseline s", "ours padded s", "ratio", "ours bucketed s", "ratio",
            "max |diff|")
  print("| " + " | ".join(header) + " |")
  print("|" + "---|" * len(header))
  for name, label, t_np, t_pad, t_buck, diff in rows:
    print(f"| {name} | {label} | {t_np:.3f} | {t_pad:.4f} | {t_np / t_pad:.1f}x | {t_buck:.4f} | "
          f"{t_np / t_buck:.1f}x | {diff:.1e} |")
  assert all(r[-1] < 1e-3 for r in rows), "outputs disagree"
  print("\noutputs agree: same counts and seed segments per set, values within the max |diff| "
        "above (float32 vs float64, snippets / scores)")


if __name__ == "__main__":
  main()
