"""``VideoDataset``: one split of a WTAL dataset in memory (features, video labels, ground truth
in seconds, ambiguous intervals), whatever its source."""

from __future__ import annotations

import dataclasses

import numpy as np

from gaufuse_jax._src.data.errors import DataError


@dataclasses.dataclass(frozen=True, eq=False)
class VideoDataset:
  """One split of a WTAL dataset, held in memory.

  Attributes:
    name: dataset name, e.g. ``"Thumos14reduced"``, ``"embedded"``.
    split: ``"train"`` or ``"test"``.
    class_names: ``C`` class names, index = class id.
    video_names: ``V`` video names.
    features: ``V`` float32 arrays ``[T_i, D]``, one row per snippet.
    labels: ``[V, C]`` float32 multi-hot video-level labels (``labels_all.npy``).
    segments: ``V`` float64 arrays ``[n_i, 2]``, ground truth ``(start, end)`` in seconds, clipped
      to ``[0, duration]``.
    segment_labels: ``V`` int32 arrays ``[n_i]``, class id of each segment.
    durations: ``[V]`` float64 video durations in seconds.
    ambiguous: video name -> ``[m, 2]`` float64 ambiguous intervals in seconds (only videos that
      have some; empty dict when none).
    fps, frames_per_snippet: one snippet is ``frames_per_snippet / fps`` seconds.
    excluded_videos: names removed on request (``exclude_videos``), echoed for the outputs.
    report: counts of what loading repaired or skipped (see `build_dataset`).
    feature_source: where the features come from: a feature file or folder, or
      ``"generated: ..."`` for generated features.
  """
  name: str
  split: str
  class_names: tuple[str, ...]
  video_names: tuple[str, ...]
  features: list[np.ndarray]
  labels: np.ndarray
  segments: list[np.ndarray]
  segment_labels: list[np.ndarray]
  durations: np.ndarray
  ambiguous: dict
  fps: float = 25.0
  frames_per_snippet: float = 16.0
  excluded_videos: tuple[str, ...] = ()
  report: dict = dataclasses.field(default_factory=dict)
  feature_source: str = ""

  def __post_init__(self):
    v = len(self.video_names)
    sizes = {"features": len(self.features), "labels": len(self.labels),
             "segments": len(self.segments), "segment_labels": len(self.segment_labels),
             "durations": len(self.durations)}
    wrong = {k: n for k, n in sizes.items() if n != v}
    if wrong:
      raise ValueError(f"VideoDataset: expected {v} entries (one per video name), found {wrong}")
    if self.labels.shape != (v, len(self.class_names)):
      raise ValueError(f"VideoDataset: labels must be [V, C] = {(v, len(self.class_names))}, "
                       f"found {self.labels.shape}")

  @property
  def num_classes(self) -> int:
    return len(self.class_names)

  @property
  def feature_dim(self) -> int:
    return int(self.features[0].shape[1])

  @property
  def lengths(self) -> np.ndarray:
    """``[V]`` int64 number of snippets of each video."""
    return np.array([f.shape[0] for f in self.features], dtype=np.int64)

  def __len__(self) -> int:
    return len(self.video_names)

  def ground_truth(self) -> dict[str, np.ndarray]:
    """All ground-truth segments: ``{"video": int32 [G], "label": int32 [G],
    "segment": float64 [G, 2] seconds}`` (``video`` indexes this dataset)."""
    counts = [len(s) for s in self.segments]
    return {"video": np.repeat(np.arange(len(self), dtype=np.int32), counts),
            "label": np.concatenate([np.zeros(0, np.int32), *self.segment_labels]),
            "segment": np.concatenate([np.zeros((0, 2)), *self.segments])}

  def check_usable(self) -> None:
    """Raises ``DataError`` when the split cannot do its job: a training split in which no
    video has a video-level label (nothing to learn from), a test split without ground-truth
    segments (nothing to score against)."""
    if self.split == "train" and not np.any(self.labels.sum(1) > 0):
      raise DataError(f"{self.name} (train): expected videos with video-level labels, found "
                      f"none of {len(self)} labelled: training would learn nothing (check "
                      f"labels.npy / labels_all.npy)")
    if self.split == "test" and not any(len(s) for s in self.segments):
      raise DataError(f"{self.name} (test): expected ground-truth segments, found none in "
                      f"{len(self)} videos: nothing to evaluate against (check segments.npy "
                      f"and the split's subset)")

  def ambiguous_arrays(self) -> dict[str, np.ndarray]:
    """Ambiguous intervals: ``{"video": int32 [A], "segment": float64 [A, 2] seconds}``."""
    index = {n: i for i, n in enumerate(self.video_names)}
    names = [n for n in self.video_names if n in self.ambiguous]
    return {"video": np.repeat(np.array([index[n] for n in names], np.int32),
                               [len(self.ambiguous[n]) for n in names]),
            "segment": np.concatenate([np.zeros((0, 2))] + [self.ambiguous[n] for n in names])}
