"""W-TALC-format data: annotation files + I3D JOINT features -> `VideoDataset`.

The layout read here is the one of W-TALC, RSKP, CO2-Net, DELU and the GauFuse authors::

  <data_dir>/<Dataset>-I3D-JOINTFeatures.npy   object array, one [T_i, D] array per video,
                                                in annotation order
  <data_dir>/<Dataset>-I3D-JOINTFeatures/<video>.npy   (alternative: one file per video)
  <data_dir>/  or  <data_dir>/<Dataset>-Annotations/
      classlist.npy videoname.npy subset.npy segments.npy labels.npy labels_all.npy
      duration.npy [Ambiguous_test.txt]

The annotation ``.npy`` files are Python-2 pickles of bytes; names may come back as ``bytes`` or
``str`` and both are accepted. Seconds <-> snippets use ``fps`` and ``frames_per_snippet`` (25 and
16 for I3D; ``extracted_fps.npy`` is never read). Splits: THUMOS14 train = subset ``validation``,
test = ``test``; every other dataset (ActivityNet 1.2 / 1.3, GTEA, BEOID, the embedded default)
train = ``training``, test = ``validation``.

Validation (every failure raises `DataError` naming the file, what was expected and what was found):
missing files (`MissingFileError`), annotation files or the feature file disagreeing on the number
of videos, a wrong feature dim, NaN/inf snippet rows, labels not in ``classlist.npy``, malformed
segments. Two conditions are repaired and counted in ``VideoDataset.report`` instead:
videos shorter than ``min_snippets`` snippets are skipped with a warning, and ground-truth segments
past the video end (``duration.npy``) are clipped to it; segments that start at or after the end
(30 in THUMOS14: 4 validation, 26 test, 22 of them in video_test_0000270) become empty and are
dropped. The reference evaluation keeps those 30 as unmatchable ground truth.
"""

from __future__ import annotations

import pathlib
import warnings
from typing import Callable, Sequence

import numpy as np

from gaufuse_jax._src.data import wtalc_annotations as annotations_lib
from gaufuse_jax._src.data.errors import DataError
from gaufuse_jax._src.data.errors import MissingFileError
from gaufuse_jax._src.data.video_dataset import VideoDataset

FEATURE_SUFFIX = "-I3D-JOINTFeatures"


def _check_features(x, video: str, source: str, feature_dim: int | None,
                    dim_origin: str) -> np.ndarray:
  x = np.asarray(x)
  if x.ndim != 2 or not np.issubdtype(x.dtype, np.number):
    raise DataError(f"{source}: video {video}: expected a [T, D] float array, found shape "
                    f"{x.shape} dtype {x.dtype}")
  if feature_dim is not None and x.shape[1] != feature_dim:
    raise DataError(f"{source}: video {video}: expected feature dim {feature_dim} ({dim_origin}), "
                    f"found {x.shape[1]}")
  x = x.astype(np.float32, copy=False)
  bad = ~np.isfinite(x).all(1)
  if bad.any():
    raise DataError(f"{source}: video {video}: expected finite features, found NaN/inf in "
                    f"{int(bad.sum())} of {len(x)} snippet rows (first: row {int(np.argmax(bad))})")
  return x


def build_dataset(annotations: annotations_lib.Annotations,
                  features: Sequence[np.ndarray] | Callable[[int], np.ndarray], *,
                  split: str = "train", fps: float = 25.0, frames_per_snippet: float = 16.0,
                  feature_dim: int | None = None, exclude_videos: Sequence[str] = (),
                  min_snippets: int = 2, max_length_ratio: float = 2.0,
                  feature_source: str = "features") -> VideoDataset:
  """Selects one split, validates its features and repairs segments: the one assembly path of
  the W-TALC loader, the semi-synthetic datasets and the embedded default.

  Args:
    annotations: every video of the dataset (`load_annotations` or generated).
    features: per-video ``[T_i, D]`` arrays aligned with ``annotations`` (a sequence of length
      ``annotations.num_videos``), or a callable ``index -> array`` (read lazily, only for
      the videos of ``split``).
    split: ``"train"`` or ``"test"`` (see `subset_name`).
    fps, frames_per_snippet: snippet duration ``frames_per_snippet / fps`` seconds (> 0).
    feature_dim: expected ``D``; None takes the dim of the first video of the split.
    exclude_videos: video names to drop (each must exist in the annotations; names of the other
      split are allowed so one list serves both splits); echoed in ``excluded_videos``.
    min_snippets: videos with fewer snippets are skipped with a warning and counted.
    max_length_ratio: a video's snippet count ``T`` must lie within this factor (plus 2
      snippets) of ``duration * fps / frames_per_snippet``; 0 turns the check off. Features of
      another frame rate or snippet size would otherwise train and evaluate against ground truth
      at the wrong times.
    feature_source: file or folder name used in error messages.

  Returns:
    `VideoDataset` whose ``report`` holds ``subset`` (the subset.npy value),
    ``videos_in_subset``, ``excluded_videos``, ``skipped_short_videos`` (count) and
    ``skipped_short_names``, ``clipped_segments`` (end moved back to the duration),
    ``dropped_segments`` (start at or after the end), ``segments``, ``videos_without_labels``.

  Raises:
    ValueError: bad ``split``, ``fps``, ``frames_per_snippet``, ``min_snippets`` or
      ``max_length_ratio``.
    DataError: unknown names in ``exclude_videos``; a feature count that differs from the
      annotations; non-[T, D] features, a wrong feature dim, NaN/inf rows, a snippet count
      that does not match the video's duration (``max_length_ratio``); an empty split.
  """
  subset = annotations_lib.subset_name(annotations.dataset, split)
  if not (fps > 0 and frames_per_snippet > 0):
    raise ValueError(f"fps and frames_per_snippet must be > 0, got {fps} and {frames_per_snippet}")
  if min_snippets < 1:
    raise ValueError(f"min_snippets must be >= 1, got {min_snippets}")
  if not (max_length_ratio == 0 or max_length_ratio >= 1):
    raise ValueError(f"max_length_ratio must be 0 (off) or >= 1, got {max_length_ratio}")
  unknown = sorted(set(exclude_videos) - set(annotations.video_names))
  if unknown:
    raise DataError(f"exclude_videos: expected names from videoname.npy of "
                    f"{annotations.source}, found unknown {unknown}")
  if not callable(features):
    count = len(features) if getattr(features, "ndim", 1) > 0 else 0  # 0-d object array -> 0
    if count != annotations.num_videos:
      raise DataError(f"{feature_source}: expected {annotations.num_videos} videos (one per row "
                      f"of videoname.npy, in annotation order), found {count}")
    features = features.__getitem__

  in_subset = annotations.split_indices(split)
  excluded = tuple(annotations.video_names[i] for i in in_subset
                   if annotations.video_names[i] in frozenset(exclude_videos))
  dim_origin = "feature_dim"
  kept, kept_features, skipped = [], [], []
  for i in in_subset:
    name = annotations.video_names[i]
    if name in excluded:
      continue
    x = _check_features(features(int(i)), name, feature_source, feature_dim, dim_origin)
    if feature_dim is None:
      feature_dim, dim_origin = x.shape[1], f"that of the first video, {name}"
    if x.shape[0] < min_snippets:
      skipped.append(name)
      continue
    expected = annotations.durations[i] * fps / frames_per_snippet
    if max_length_ratio and not (expected / max_length_ratio - 2 <= x.shape[0]
                                 <= expected * max_length_ratio + 2):
      raise DataError(
          f"{feature_source}: video {name}: expected about {expected:.0f} snippets (duration "
          f"{annotations.durations[i]:g} s from duration.npy x fps {fps:g} / frames_per_snippet "
          f"{frames_per_snippet:g}), found {x.shape[0]}: features of another frame rate or "
          f"snippet size? (set fps / frames_per_snippet, or max_length_ratio=0 to skip the check)")
    kept.append(int(i))
    kept_features.append(x)
  if skipped:
    warnings.warn(f"{feature_source}: skipped {len(skipped)} video(s) shorter than "
                  f"min_snippets={min_snippets} snippets: {skipped}", stacklevel=2)
  if not kept:
    raise DataError(f"{annotations.source}: expected videos with subset {subset!r} for split "
                    f"{split!r}, found none left (subsets present: "
                    f"{sorted(set(annotations.subsets))}, excluded {len(excluded)}, "
                    f"too short {len(skipped)})")

  segments, segment_labels, clipped, dropped = [], [], 0, 0
  for i in kept:
    raw = annotations.segments[i]
    segs = np.clip(raw, 0.0, annotations.durations[i])
    keep = segs[:, 1] > segs[:, 0]
    clipped += int(np.sum(keep & (segs[:, 1] != raw[:, 1])))
    dropped += int(np.sum(~keep))
    segments.append(segs[keep])
    segment_labels.append(annotations.segment_labels[i][keep])
  names = tuple(annotations.video_names[i] for i in kept)
  labels = annotations.labels[kept]
  report = {"subset": subset, "videos_in_subset": len(in_subset), "excluded_videos": len(excluded),
            "skipped_short_videos": len(skipped), "skipped_short_names": tuple(skipped),
            "clipped_segments": clipped, "dropped_segments": dropped,
            "segments": sum(len(s) for s in segments),
            "videos_without_labels": int(np.sum(labels.sum(1) == 0))}
  return VideoDataset(
      name=annotations.dataset, split=split, class_names=annotations.class_names,
      video_names=names, features=kept_features, labels=labels, segments=segments,
      segment_labels=segment_labels, durations=annotations.durations[kept],
      ambiguous={n: annotations.ambiguous[n] for n in names if n in annotations.ambiguous},
      fps=float(fps), frames_per_snippet=float(frames_per_snippet), excluded_videos=excluded,
      report=report, feature_source=feature_source)


def feature_paths(data_dir, dataset: str) -> tuple[pathlib.Path, pathlib.Path]:
  """``(<data_dir>/<dataset>-I3D-JOINTFeatures.npy, <data_dir>/<dataset>-I3D-JOINTFeatures/)``:
  the single object-array file and the per-video folder alternative."""
  stem = pathlib.Path(data_dir) / f"{dataset}{FEATURE_SUFFIX}"
  return stem.with_name(stem.name + ".npy"), stem


def open_wtalc(data_dir, *, dataset: str = "Thumos14reduced", annotation_dir=None):
  """Reads the annotations and opens the features of a W-TALC-format dataset (both splits).

  Args:
    data_dir: folder with ``<dataset>-I3D-JOINTFeatures.npy`` (object array, annotation order)
      or ``<dataset>-I3D-JOINTFeatures/<video>.npy``, and the annotation files (beside it or in
      ``<dataset>-Annotations/``).
    dataset: e.g. ``"Thumos14reduced"``, ``"ActivityNet1.2"``, ``"ActivityNet1.3"``.
    annotation_dir: where the annotation files are, if not under ``data_dir``.

  Returns:
    ``(annotations, features, source)`` for `build_dataset`: the loaded object array, or a
    callable reading ``<video>.npy`` on demand; ``source`` names the file or folder.

  Raises:
    MissingFileError, DataError: see `load_annotations`; no feature file nor folder.
  """
  annotations = annotations_lib.load_annotations(
      data_dir if annotation_dir is None else annotation_dir,
      dataset=dataset)
  single, folder = feature_paths(data_dir, dataset)
  if single.is_file():
    return annotations, annotations_lib.load_npy(single, "feature"), str(single)
  if folder.is_dir():
    def features(i):
      return annotations_lib.load_npy(folder / f"{annotations.video_names[i]}.npy",
                                      "per-video feature")
    return annotations, features, str(folder)
  raise MissingFileError(f"missing feature file {single} (or per-video folder "
                         f"{folder}/<video>.npy); {annotations_lib.WTALC_HINT}")


def load_wtalc(data_dir, *, dataset: str = "Thumos14reduced", split: str = "train",
               annotation_dir=None, fps: float = 25.0, frames_per_snippet: float = 16.0,
               feature_dim: int | None = None, exclude_videos: Sequence[str] = (),
               min_snippets: int = 2, max_length_ratio: float = 2.0) -> VideoDataset:
  """Loads one split of a W-TALC-format dataset: `open_wtalc` + `build_dataset`.

  Args:
    data_dir, dataset, annotation_dir: see `open_wtalc`.
    split: ``"train"`` or ``"test"`` (see `subset_name`).
    fps, frames_per_snippet, feature_dim, exclude_videos, min_snippets, max_length_ratio: see
      `build_dataset`.

  Returns:
    `VideoDataset` of the split.

  Raises:
    MissingFileError, DataError, ValueError: see `load_annotations` and `build_dataset`.
  """
  annotations_lib.subset_name(dataset, split)  # fail on a bad split before reading large files
  annotations, features, source = open_wtalc(data_dir, dataset=dataset,
                                             annotation_dir=annotation_dir)
  return build_dataset(annotations, features, split=split, fps=fps,
                       frames_per_snippet=frames_per_snippet, feature_dim=feature_dim,
                       exclude_videos=exclude_videos, min_snippets=min_snippets,
                       max_length_ratio=max_length_ratio, feature_source=source)
