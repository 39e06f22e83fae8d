"""The embedded default dataset: generated THUMOS14-like annotations + synthetic features.

No files are read: the annotations are drawn from a few numbers that summarise THUMOS14
(`EmbeddedLayout`), and the features come from the same synthesis core as the semi-synthetic
benchmarks (`gaufuse_jax/_src/data/synthetic.py`). The defaults (160 + 160 videos, lengths 60-290
snippets for 90% of them, median 135; ~7 instances per video covering 33% of it; 10% of the
videos with two classes; D = 128) are generated in seconds and keep a full train + evaluation run
within minutes on 2 CPU cores.

Calibration (``configs/default.py``: 120 train / 100 test videos, seed 0, 28 epochs; W-TALC
protocol, avg mAP@0.1:0.7): ground truth as predictions scores ~100 (the W-TALC snippet rounding
costs a few points, see ``evaluation``), an untrained RSKP 0.12 (cmAP 9.7), the trained backbone
40.2 at epoch 14 and 35.9 at the end (cmAP 94.6): clearly below ground truth, far above chance.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from gaufuse_jax._src import segments as seg_lib
from gaufuse_jax._src.data import synthetic
from gaufuse_jax._src.data.video_dataset import VideoDataset
from gaufuse_jax._src.data import wtalc_annotations
from gaufuse_jax._src.data import wtalc

DATASET = "embedded"


@dataclasses.dataclass(frozen=True)
class EmbeddedLayout:
  """Annotation statistics of the embedded dataset (THUMOS14 reduced values in brackets).

  Attributes:
    median_length: median video length in snippets (THUMOS14: 242; smaller here for speed).
    length_sigma: sigma of the log-normal video length.
    min_length, max_length: clip of the video length in snippets.
    instance_median: median instance length in snippets [4.7 = 3.0 s; quartiles 2.5 and 9.2].
    instance_sigma: sigma of the log-normal instance length [~1.0].
    instances_per_snippet: mean number of instances per snippet [0.046].
    rate_sigma: sigma of a per-video log-normal factor on that rate (heavy tail of the
      instance counts: THUMOS14 has 1 to 218 per video, median 8).
    multi_class_prob: probability of a second class in a video [60 of 412 videos].
    max_coverage: instances are dropped until they cover at most this fraction of the video
      [THUMOS14 mean 29%].
  """
  median_length: float = 128.0
  length_sigma: float = 0.5
  min_length: int = 32
  max_length: int = 512
  instance_median: float = 4.7
  instance_sigma: float = 0.9
  instances_per_snippet: float = 0.042
  rate_sigma: float = 0.7
  multi_class_prob: float = 0.13
  max_coverage: float = 0.8

  def __post_init__(self):
    ok = (self.median_length > 0 and 1 <= self.min_length <= self.max_length
          and self.instance_median > 0 and self.instances_per_snippet > 0
          and min(self.length_sigma, self.instance_sigma, self.rate_sigma) >= 0
          and 0 <= self.multi_class_prob <= 1 and 0 < self.max_coverage <= 1)
    if not ok:
      raise ValueError(f"EmbeddedLayout: expected positive lengths and rates, "
                       f"1 <= min_length <= max_length, sigmas >= 0, probabilities in [0, 1], "
                       f"max_coverage in (0, 1]; found {self}")


def _video_instances(rng: np.random.Generator, length: int, classes: np.ndarray,
                     layout: EmbeddedLayout) -> tuple[np.ndarray, np.ndarray]:
  """Non-overlapping half-open instances ``[n, 2]`` (snippets, sorted) and their class ids."""
  rate = layout.instances_per_snippet * np.exp(layout.rate_sigma * rng.standard_normal())
  count = max(1, int(rng.poisson(rate * length)))
  sizes = layout.instance_median * np.exp(layout.instance_sigma * rng.standard_normal(count))
  sizes = np.clip(np.round(sizes), 1, max(1, length // 3)).astype(np.int64)
  budget = max(1, int(layout.max_coverage * length))
  keep = np.cumsum(sizes) <= budget
  keep[0] = True  # at least one instance
  sizes = sizes[keep]
  free = length - int(sizes.sum())
  gaps = np.floor(rng.dirichlet(np.ones(len(sizes) + 1)) * free).astype(np.int64)
  starts = np.cumsum(gaps[:-1]) + np.concatenate([[0], np.cumsum(sizes)[:-1]])
  segments = np.stack([starts, starts + sizes], axis=1)
  return segments, rng.choice(classes, size=len(sizes))


def embedded_annotations(*, seed: int = 0, num_train: int = 160, num_test: int = 160,
                         num_classes: int = 20, layout: EmbeddedLayout = EmbeddedLayout(),
                         fps: float = seg_lib.FPS,
                         frames_per_snippet: float = seg_lib.FRAMES_PER_SNIPPET
                         ) -> wtalc_annotations.Annotations:
  """Generated THUMOS14-like annotations (dataset ``"embedded"``, subsets ``training`` then
  ``validation``), deterministic for ``seed`` (``np.random.default_rng((seed, 2))``).

  Every class is the primary class of ``ceil`` or ``floor`` of ``V / C`` videos per split; a
  second class is added with probability ``layout.multi_class_prob``. Video ``i`` lasts
  ``T_i * frames_per_snippet / fps`` seconds, so `synthetic.num_snippets` gives back ``T_i``, and
  its segments are snippet boundaries converted to seconds. Video-level labels are exactly the
  classes of its instances. No ambiguous intervals.

  Raises:
    ValueError: ``num_train`` or ``num_test`` < 1, ``num_classes`` < 1.
  """
  if min(num_train, num_test) < 1 or num_classes < 1:
    raise ValueError(f"num_train, num_test and num_classes must be >= 1, got {num_train}, "
                     f"{num_test}, {num_classes}")
  rng = np.random.default_rng((seed, 2))
  seconds = frames_per_snippet / fps
  names, subsets, durations, segments, seg_labels = [], [], [], [], []
  labels = np.zeros((num_train + num_test, num_classes), np.float32)
  for split, subset, count in (("train", "training", num_train), ("test", "validation", num_test)):
    primary = rng.permutation(np.arange(count) % num_classes)
    for j, first in enumerate(primary):
      length = int(np.clip(np.round(layout.median_length * np.exp(
          layout.length_sigma * rng.standard_normal())), layout.min_length, layout.max_length))
      classes = np.array([first])
      if num_classes > 1 and rng.random() < layout.multi_class_prob:
        other = rng.integers(0, num_classes - 1)
        classes = np.array([first, other + (other >= first)])
      segs, ids = _video_instances(rng, length, classes, layout)
      labels[len(names), ids] = 1.0
      names.append(f"embedded_{split}_{j:04d}")
      subsets.append(subset)
      durations.append(length * seconds)
      segments.append(segs.astype(np.float64) * seconds)
      seg_labels.append(ids.astype(np.int32))
  return wtalc_annotations.Annotations(
      dataset=DATASET, class_names=tuple(f"class_{c:02d}" for c in range(num_classes)),
      video_names=tuple(names), subsets=tuple(subsets), durations=np.array(durations),
      segments=segments, segment_labels=seg_labels, labels=labels, ambiguous={},
      source=f"embedded annotations (seed {seed})")


def make_embedded_dataset(*, seed: int = 0, num_train: int = 160, num_test: int = 160,
                          num_classes: int = 20, feature_dim: int = 128,
                          layout: EmbeddedLayout = EmbeddedLayout(),
                          params: synthetic.SynthesisParams = synthetic.SynthesisParams(),
                          fps: float = seg_lib.FPS,
                          frames_per_snippet: float = seg_lib.FRAMES_PER_SNIPPET
                          ) -> tuple[VideoDataset, VideoDataset]:
  """The embedded default: `embedded_annotations` + `synthetic.synthesize_features`.

  Args:
    seed: one seed for annotations and features.
    num_train, num_test: videos per split.
    num_classes: ``C``.
    feature_dim: ``D``.
    layout: annotation statistics (`EmbeddedLayout`).
    params: feature difficulty knobs (`synthetic.SynthesisParams`).
    fps, frames_per_snippet: snippet duration in seconds = ``frames_per_snippet / fps``.

  Returns:
    ``(train, test)`` `VideoDataset` s named ``"embedded"``.
  """
  annotations = embedded_annotations(seed=seed, num_train=num_train, num_test=num_test,
                                     num_classes=num_classes, layout=layout, fps=fps,
                                     frames_per_snippet=frames_per_snippet)
  features = synthetic.synthesize_features(annotations, seed=seed, feature_dim=feature_dim,
                                           params=params, fps=fps,
                                           frames_per_snippet=frames_per_snippet)
  return tuple(wtalc.build_dataset(annotations, features, split=split, fps=fps,
                                   frames_per_snippet=frames_per_snippet, feature_dim=feature_dim,
                                   feature_source=f"generated: embedded features (seed {seed})")
               for split in wtalc_annotations.SPLITS)
