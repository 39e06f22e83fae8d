"""Synthetic I3D-like features for real or generated annotations, and the W-TALC writer.

One synthesis core serves the semi-synthetic benchmarks (real THUMOS14 / ActivityNet annotations,
``T = ceil(duration * fps / frames_per_snippet)``) and the embedded default (generated
annotations, `data/embedded.py`).

Generative model. For video ``v`` with ``T`` snippets, a pre-activation
``z [T, D]`` is a sum of random Gaussian pattern vectors (entries N(0, 1), shared by all videos of
a seed) with time-varying amplitudes, and the feature is ``x = feature_scale * relu(z)``::

  z_t = offset                                      per-channel baseline ~ N(mean, std)
      + sum_c action[t, c]  * A~_c                  class action patterns
      + sum_c context[t, c] * B~_c                  class context patterns
      + background_strength * sum_k w_tk G_k / sqrt(K)   shared background, slow drift
      + noise_strength * n_t                        temporally correlated noise

* Discriminative core: inside each ground-truth instance the action amplitude is
  ``core_strength`` on a random contiguous ``core_fraction`` of it and ``periphery_strength`` on
  the rest (times a per-instance log-normal jitter), so the easy evidence covers only part of the
  instance -> incomplete localization.
* Context: class ``c``'s context pattern has amplitude ``context_strength`` inside its instances,
  falls linearly to 0 over ``context_margin`` instance lengths on each side, and is at least
  ``context_video_strength`` throughout every video that contains ``c`` -> context false
  positives, instances merged across short gaps.
* Background: ``K = num_background_patterns`` patterns shared by all classes, mixed with
  AR(1) weights of coefficient ``background_drift`` per snippet (slow drift within a video,
  different mixes across videos).
* Noise: per-channel AR(1) of coefficient ``noise_correlation`` (temporally correlated).
* Intra-class variation: per video, ``A~_c = sqrt(1 - v^2) A_c + v R`` (same for ``B``) with a
  fresh Gaussian ``R`` and ``v = class_variation``.
* Sparse and non-negative like I3D JOINT features after the ReLU. Measured on semi-synthetic
  THUMOS14 (D = 2048) with the defaults: 58% of the entries exactly 0, mean 0.19, std 0.33;
  cosine similarity of two snippets of a video 0.59 on average (action-action 0.73,
  background-background 0.61, action-background 0.54; adjacent snippets 0.92), of two
  video-mean features 0.65. Synthesis of THUMOS14 at D = 2048 takes seconds on one core. The real
  I3D samples in ``../shared/data/features_sample`` have mean ~0.2 and within-video cosine
  0.6-0.8, lower between action and background. Dense positive features make every snippet
  nearly parallel under cosine similarity and defeat cosine-similarity models (RSKP learned
  classes but no localization on such data).

The defaults are not yet calibrated against a trained backbone (the aim: avg mAP well
below 100 and far above chance); every knob is a field of `SynthesisParams`.
Everything is deterministic for a seed: patterns from ``(seed, 0)``, video ``i`` (annotation
order) from ``(seed, 1, i)``.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Sequence

import numpy as np

from gaufuse_jax._src import segments as seg_lib
from gaufuse_jax._src.data.video_dataset import VideoDataset
from gaufuse_jax._src.data import wtalc_annotations
from gaufuse_jax._src.data import wtalc


@dataclasses.dataclass(frozen=True)
class SynthesisParams:
  """Difficulty knobs of the synthetic features (amplitudes are in units of the per-channel std
  of one pattern; see the module docstring for the model).

  Attributes:
    core_fraction: fraction of each instance (contiguous, random position, >= 1 snippet) that
      carries the strong class evidence. 1 removes the incomplete-localization failure mode.
    core_strength: class-pattern amplitude in the core.
    periphery_strength: class-pattern amplitude in the rest of the instance.
    instance_jitter: sigma of the per-instance log-normal amplitude factor (mean 1).
    class_variation: ``v`` in ``sqrt(1 - v^2) A_c + v R``, per-video pattern variation in [0, 1].
    context_strength: context amplitude inside instances, ramping to 0 outside.
    context_margin: ramp length on each side, in instance lengths (at least 1 snippet).
    context_video_strength: context amplitude everywhere in a video containing the class.
    num_background_patterns: ``K`` shared background patterns.
    background_strength: std of the background term per channel.
    background_drift: AR(1) coefficient of the background weights per snippet, in [0, 1).
    noise_strength: std of the noise per channel.
    noise_correlation: AR(1) coefficient of the noise per snippet, in [0, 1).
    offset_mean, offset_std: per-channel baseline ``~ N(offset_mean, offset_std)`` before the
      ReLU; more negative means sparser features.
    feature_scale: multiplies the ReLU output (I3D JOINT values have mean ~0.2).
  """
  core_fraction: float = 0.4
  core_strength: float = 1.5
  periphery_strength: float = 0.5
  instance_jitter: float = 0.3
  class_variation: float = 0.5
  context_strength: float = 0.8
  context_margin: float = 1.0
  context_video_strength: float = 0.3
  num_background_patterns: int = 16
  background_strength: float = 1.0
  background_drift: float = 0.98
  noise_strength: float = 0.5
  noise_correlation: float = 0.6
  offset_mean: float = -0.3
  offset_std: float = 0.7
  feature_scale: float = 0.4

  def __post_init__(self):
    checks = {
        "core_fraction": 0 < self.core_fraction <= 1,
        "class_variation": 0 <= self.class_variation <= 1,
        "num_background_patterns": self.num_background_patterns >= 1,
        "background_drift": 0 <= self.background_drift < 1,
        "noise_correlation": 0 <= self.noise_correlation < 1,
        "feature_scale": self.feature_scale > 0,
    }
    for name in ("core_strength", "periphery_strength", "instance_jitter", "context_strength",
                 "context_margin", "context_video_strength", "background_strength",
                 "noise_strength", "offset_std"):
      checks[name] = getattr(self, name) >= 0
    bad = [n for n, ok in checks.items() if not ok]
    if bad:
      raise ValueError("SynthesisParams: out of range (fractions in (0, 1], correlations in "
                       "[0, 1), strengths >= 0, num_background_patterns >= 1): "
                       + ", ".join(f"{n}={getattr(self, n)!r}" for n in bad))


@dataclasses.dataclass(frozen=True, eq=False)
class FeaturePatterns:
  """Pattern vectors shared by all videos of one seed: ``offset [D]``, ``action [C, D]``,
  ``context [C, D]``, ``background [K, D]`` (float32)."""
  offset: np.ndarray
  action: np.ndarray
  context: np.ndarray
  background: np.ndarray


def make_patterns(num_classes: int, feature_dim: int, *, seed: int,
                  params: SynthesisParams = SynthesisParams()) -> FeaturePatterns:
  """Draws the shared patterns from ``np.random.default_rng((seed, 0))``."""
  if num_classes < 1 or feature_dim < 1:
    raise ValueError(f"num_classes and feature_dim must be >= 1, got {num_classes}, {feature_dim}")
  rng = np.random.default_rng((seed, 0))
  normal = lambda *shape: rng.standard_normal(shape, dtype=np.float32)  # noqa: E731
  return FeaturePatterns(
      offset=(params.offset_mean + params.offset_std * normal(feature_dim)).astype(np.float32),
      action=normal(num_classes, feature_dim), context=normal(num_classes, feature_dim),
      background=normal(params.num_background_patterns, feature_dim))


def ar1(rng: np.random.Generator, length: int, dim: int, rho: float) -> np.ndarray:
  """Stationary AR(1) process with unit variance: ``x_t = rho x_{t-1} + sqrt(1-rho^2) e_t``.

  Returns:
    float32 ``[length, dim]``.
  """
  x = rng.standard_normal((length, dim), dtype=np.float32)
  scale = np.float32(np.sqrt(1.0 - rho * rho))
  x[1:] *= scale
  for t in range(1, length):
    x[t] += np.float32(rho) * x[t - 1]
  return x


def instance_profiles(num_snippets: int, segments, labels, num_classes: int, *,
                      rng: np.random.Generator,
                      params: SynthesisParams = SynthesisParams()) -> tuple[np.ndarray, np.ndarray]:
  """Action and context amplitudes of one video.

  Args:
    num_snippets: ``T``.
    segments: int ``[n, 2]`` half-open instances ``[s, e)`` in snippets, ``0 <= s < e <= T``.
    labels: int ``[n]`` class ids.
    num_classes: ``C``.
    rng: draws, per instance in order, the jitter factor and the core position.
    params: `SynthesisParams`.

  Returns:
    ``(action, context)``, float32 ``[T, C]`` each. Overlapping instances of a class take the
    maximum. ``action`` is ``m * core_strength`` on the core (``max(1, round(core_fraction * L))``
    snippets at a uniform random offset) and ``m * periphery_strength`` elsewhere in the instance
    (``m`` log-normal, mean 1); ``context`` is ``context_strength`` inside an instance and
    ``context_strength * (1 - d / (w + 1))`` at distance ``d`` snippets outside it, with
    ``w = max(1, context_margin * L)``, floored at ``context_video_strength`` for classes present.
  """
  segments = np.asarray(segments, np.int64).reshape(-1, 2)
  labels = np.asarray(labels, np.int64).reshape(-1)
  action = np.zeros((num_snippets, num_classes), np.float32)
  context = np.zeros((num_snippets, num_classes), np.float32)
  context[:, np.unique(labels)] = params.context_video_strength
  t = np.arange(num_snippets)
  sigma = params.instance_jitter
  for (s, e), c in zip(segments, labels):
    length = e - s
    m = np.exp(sigma * rng.standard_normal() - 0.5 * sigma * sigma)
    core = max(1, int(round(params.core_fraction * length)))
    core_start = s + int(rng.integers(0, length - core + 1))
    profile = np.full(length, params.periphery_strength, np.float32)
    profile[core_start - s:core_start - s + core] = params.core_strength
    action[s:e, c] = np.maximum(action[s:e, c], m * profile)
    width = max(1.0, params.context_margin * length)
    distance = np.maximum(np.maximum(s - t, t - (e - 1)), 0)
    ramp = np.clip(1.0 - distance / (width + 1.0), 0.0, 1.0)
    context[:, c] = np.maximum(context[:, c], params.context_strength * ramp)
  return action, context


def render_features(patterns: FeaturePatterns, action: np.ndarray, context: np.ndarray, *,
                    rng: np.random.Generator,
                    params: SynthesisParams = SynthesisParams()) -> np.ndarray:
  """Features of one video from its amplitude profiles (see the module docstring).

  Args:
    patterns: `FeaturePatterns` with ``C`` classes and dim ``D``.
    action, context: float ``[T, C]`` amplitudes (`instance_profiles`).
    rng: per-video generator (pattern variation, background weights, noise).
    params: `SynthesisParams`.

  Returns:
    float32 ``[T, D]``, non-negative.
  """
  num_snippets = action.shape[0]
  dim = patterns.offset.shape[0]
  v = np.float32(params.class_variation)
  keep = np.float32(np.sqrt(1.0 - params.class_variation ** 2))
  present = np.flatnonzero((action > 0).any(0) | (context > 0).any(0))
  z = np.broadcast_to(patterns.offset, (num_snippets, dim)).copy()
  for amplitude, base in ((action, patterns.action), (context, patterns.context)):
    varied = keep * base[present] + v * rng.standard_normal((len(present), dim), dtype=np.float32)
    z += amplitude[:, present].astype(np.float32) @ varied
  k = patterns.background.shape[0]
  weights = ar1(rng, num_snippets, k, params.background_drift)
  z += (np.float32(params.background_strength / np.sqrt(k)) * weights) @ patterns.background
  z += np.float32(params.noise_strength) * ar1(rng, num_snippets, dim, params.noise_correlation)
  return np.float32(params.feature_scale) * np.maximum(z, 0.0)


def num_snippets(durations, fps: float = seg_lib.FPS,
                 frames_per_snippet: float = seg_lib.FRAMES_PER_SNIPPET) -> np.ndarray:
  """``ceil(duration * fps / frames_per_snippet)`` (at least 1) as int64, tolerant to float32
  round-off (1e-3 snippets) so that ``duration = T * 16 / 25`` gives back ``T``."""
  x = np.asarray(seg_lib.seconds_to_snippets(np.asarray(durations, np.float64), fps,
                                             frames_per_snippet), np.float64)
  return np.maximum(np.ceil(x - 1e-3), 1).astype(np.int64)


def snippet_segments(segments_s, length: int, fps: float = seg_lib.FPS,
                     frames_per_snippet: float = seg_lib.FRAMES_PER_SNIPPET) -> np.ndarray:
  """Seconds -> snippets for synthesis.

  Args:
    segments_s: float ``[n, 2]`` seconds.
    length: ``T``, the video length in snippets.

  Returns:
    ``(segments, keep)``: int64 half-open ``[n', 2]`` snippet segments inside ``[0, T)``,
    ``round(t * fps / frames_per_snippet)`` as in the W-TALC evaluation, clipped and at least
    one snippet long; bool ``[n]`` ``keep`` marks the rows kept (those starting before ``T``).
  """
  segments_s = np.asarray(segments_s, np.float64).reshape(-1, 2)
  x = np.asarray(seg_lib.seconds_to_snippets(segments_s, fps, frames_per_snippet), np.float64)
  snip = np.round(x).astype(np.int64).reshape(-1, 2)
  keep = snip[:, 0] < length
  start = np.clip(snip[keep, 0], 0, length - 1)
  end = np.clip(np.maximum(snip[keep, 1], start + 1), 1, length)
  return np.stack([start, end], axis=1), keep


def synthesize_features(annotations: wtalc_annotations.Annotations, *, seed: int = 0,
                        feature_dim: int = 2048, params: SynthesisParams = SynthesisParams(),
                        fps: float = seg_lib.FPS,
                        frames_per_snippet: float = seg_lib.FRAMES_PER_SNIPPET) -> list[np.ndarray]:
  """Synthetic features for every video of ``annotations`` (annotation order).

  Video ``i`` has ``T_i = ceil(duration_i * fps / frames_per_snippet)`` snippets; its instances
  are its ground-truth segments (`snippet_segments`) and labels.

  Returns:
    list of float32 ``[T_i, feature_dim]`` arrays (memory: ``4 * D * sum T_i`` bytes, about
    1.1 GB for THUMOS14 at D = 2048).
  """
  patterns = make_patterns(annotations.num_classes, feature_dim, seed=seed, params=params)
  lengths = num_snippets(annotations.durations, fps, frames_per_snippet)
  out = []
  for i, length in enumerate(lengths):
    rng = np.random.default_rng((seed, 1, i))
    segs, keep = snippet_segments(annotations.segments[i], int(length), fps, frames_per_snippet)
    action, context = instance_profiles(int(length), segs, annotations.segment_labels[i][keep],
                                        annotations.num_classes, rng=rng, params=params)
    out.append(render_features(patterns, action, context, rng=rng, params=params))
  return out


def make_semisynthetic_dataset(
    annotation_dir, *, dataset: str = "Thumos14reduced", seed: int = 0, feature_dim: int = 2048,
    params: SynthesisParams = SynthesisParams(), fps: float = seg_lib.FPS,
    frames_per_snippet: float = seg_lib.FRAMES_PER_SNIPPET, exclude_videos: Sequence[str] = (),
    min_snippets: int = 2) -> tuple[VideoDataset, VideoDataset]:
  """Real annotations (`wtalc_annotations.load_annotations`) + `synthesize_features`, in memory.

  Returns:
    ``(train, test)`` `VideoDataset` s, assembled by `wtalc.build_dataset` exactly as the
    loader does for files written by `write_wtalc`.
  """
  annotations = wtalc_annotations.load_annotations(annotation_dir, dataset=dataset)
  features = synthesize_features(annotations, seed=seed, feature_dim=feature_dim, params=params,
                                 fps=fps, frames_per_snippet=frames_per_snippet)
  source = f"generated: semi-synthetic features (seed {seed})"
  return tuple(wtalc.build_dataset(annotations, features, split=split, fps=fps,
                                   frames_per_snippet=frames_per_snippet, feature_dim=feature_dim,
                                   exclude_videos=exclude_videos, min_snippets=min_snippets,
                                   feature_source=source)
               for split in wtalc_annotations.SPLITS)


def _object_array(items) -> np.ndarray:
  out = np.empty(len(items), dtype=object)
  for i, item in enumerate(items):
    out[i] = item
  return out


def write_wtalc(root, dataset: str, annotations: wtalc_annotations.Annotations,
                features: Sequence[np.ndarray], *, per_video: bool = False) -> pathlib.Path:
  """Writes ``annotations`` and ``features`` in the W-TALC layout read by `wtalc.load_wtalc`.

  Files: ``<root>/<dataset>-Annotations/{classlist, videoname, subset, duration, segments, labels,
  labels_all}.npy`` (names as byte strings ``|S``, lists as object arrays of ``str``, durations
  ``[V, 1]`` float64 as THUMOS14's), ``Ambiguous_test.txt`` when there are ambiguous intervals,
  and ``<root>/<dataset>-I3D-JOINTFeatures.npy`` (object array of float32 ``[T_i, D]``) or, with
  ``per_video``, ``<root>/<dataset>-I3D-JOINTFeatures/<video>.npy``.

  Returns:
    ``root`` as a `pathlib.Path`.

  Raises:
    ValueError: ``features`` not one per video.
  """
  if len(features) != annotations.num_videos:
    raise ValueError(f"write_wtalc: expected {annotations.num_videos} feature arrays (one per "
                     f"video), found {len(features)}")
  root = pathlib.Path(root)
  ann_dir = root / f"{dataset}-Annotations"
  ann_dir.mkdir(parents=True, exist_ok=True)
  names = annotations.class_names
  files = {
      "classlist": np.array([n.encode() for n in names]),
      "videoname": np.array([n.encode() for n in annotations.video_names]),
      "subset": np.array([s.encode() for s in annotations.subsets]),
      "duration": np.asarray(annotations.durations, np.float64).reshape(-1, 1),
      "segments": _object_array([s.tolist() for s in annotations.segments]),
      "labels": _object_array([[names[c] for c in l] for l in annotations.segment_labels]),
      "labels_all": _object_array([[names[c] for c in np.flatnonzero(row > 0)]
                                   for row in annotations.labels]),
  }
  for name, array in files.items():
    np.save(ann_dir / f"{name}.npy", array, allow_pickle=True)
  if annotations.ambiguous:
    lines = [f"{video}  {float(s)!r} {float(e)!r}" for video, segs in annotations.ambiguous.items()
             for s, e in segs]
    (ann_dir / wtalc_annotations.AMBIGUOUS_FILE).write_text("\n".join(lines) + "\n")
  single, folder = wtalc.feature_paths(root, dataset)
  arrays = [np.asarray(f, np.float32) for f in features]
  if per_video:
    folder.mkdir(parents=True, exist_ok=True)
    for video, x in zip(annotations.video_names, arrays):
      np.save(folder / f"{video}.npy", x)
  else:
    np.save(single, _object_array(arrays), allow_pickle=True)
  return root
