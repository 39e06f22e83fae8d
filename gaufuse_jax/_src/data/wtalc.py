"""W-TALC-format data: annotation files + I3D JOINT features -> `VideoDataset`.

The layout read here is the one of W-TALC, RSKP, CO2-Net, DELU and the GauFuse authors
(reference file §7)::

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

import dataclasses
import pathlib
import warnings
from typing import Callable, Mapping, Sequence

import numpy as np

FEATURE_SUFFIX = "-I3D-JOINTFeatures"
ANNOTATION_FILES = ("classlist", "videoname", "subset", "segments", "labels", "labels_all",
                    "duration")
AMBIGUOUS_FILE = "Ambiguous_test.txt"
SPLITS = ("train", "test")
WTALC_HINT = ("the standard files come from the W-TALC release "
              "(https://github.com/sujoyp/wtalc-pytorch: annotation folders "
              "Thumos14reduced-Annotations, ActivityNet1.2-Annotations; the "
              "<Dataset>-I3D-JOINTFeatures.npy files are linked from its README)")


class DataError(ValueError):
  """A data file is missing, unreadable or inconsistent."""


class MissingFileError(DataError, FileNotFoundError):
  """A required data file does not exist."""


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

  def ambiguous_arrays(self) -> dict[str, np.ndarray]:
    """Ambiguous intervals: ``{"video": int32 [A], "segment": float64 [A, 2] seconds}``."""
    index = {n: i for i, n in enumerate(self.video_names)}
    names = [n for n in self.video_names if n in self.ambiguous]
    return {"video": np.repeat(np.array([index[n] for n in names], np.int32),
                               [len(self.ambiguous[n]) for n in names]),
            "segment": np.concatenate([np.zeros((0, 2))] + [self.ambiguous[n] for n in names])}


@dataclasses.dataclass(frozen=True, eq=False)
class Annotations:
  """All videos of a W-TALC annotation folder (every subset), without features.

  Attributes:
    dataset: dataset name (decides the subset of each split, see `subset_name`).
    class_names: ``C`` class names.
    video_names, subsets: ``V`` names and subset names (``"validation"``, ``"test"``, ...).
    durations: ``[V]`` float64 seconds.
    segments: ``V`` float64 ``[n_i, 2]`` arrays in seconds, as in the file (not clipped).
    segment_labels: ``V`` int32 ``[n_i]`` class ids.
    labels: ``[V, C]`` float32 multi-hot video-level labels from ``labels_all.npy``.
    ambiguous: video name -> ``[m, 2]`` float64 seconds, from ``Ambiguous_test.txt``.
    source: the folder read, or a description for generated annotations.
  """
  dataset: str
  class_names: tuple[str, ...]
  video_names: tuple[str, ...]
  subsets: tuple[str, ...]
  durations: np.ndarray
  segments: list[np.ndarray]
  segment_labels: list[np.ndarray]
  labels: np.ndarray
  ambiguous: dict
  source: str

  @property
  def num_videos(self) -> int:
    return len(self.video_names)

  @property
  def num_classes(self) -> int:
    return len(self.class_names)

  @property
  def num_segments(self) -> int:
    return sum(len(s) for s in self.segments)

  def split_indices(self, split: str) -> np.ndarray:
    """int64 indices (annotation order) of the videos of ``split`` (``"train"``/``"test"``)."""
    subset = subset_name(self.dataset, split)
    return np.array([i for i, s in enumerate(self.subsets) if s == subset], dtype=np.int64)


def subset_name(dataset: str, split: str) -> str:
  """The ``subset.npy`` value of ``split``: THUMOS14 (name starting with ``Thumos``) train ->
  ``validation``, test -> ``test``; any other dataset train -> ``training``, test ->
  ``validation``. Raises ValueError for a split other than ``"train"``/``"test"``."""
  if split not in SPLITS:
    raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
  if dataset.lower().startswith("thumos"):
    return {"train": "validation", "test": "test"}[split]
  return {"train": "training", "test": "validation"}[split]


def find_annotation_dir(root, dataset: str) -> pathlib.Path:
  """``root`` itself if it holds ``classlist.npy``, else ``root/<dataset>-Annotations``.

  Raises:
    MissingFileError: neither holds ``classlist.npy``.
  """
  root = pathlib.Path(root)
  candidates = (root, root / f"{dataset}-Annotations")
  for folder in candidates:
    if (folder / "classlist.npy").is_file():
      return folder
  raise MissingFileError(
      f"missing annotation file classlist.npy for dataset {dataset!r}: looked in "
      f"{candidates[0]} and {candidates[1]}; {WTALC_HINT}")


def _load_npy(path: pathlib.Path, what: str):
  if not path.is_file():
    raise MissingFileError(f"missing {what} file {path}; {WTALC_HINT}")
  try:
    # latin1 is numpy's safe choice for Python-2 pickles holding both strings and arrays.
    return np.load(path, allow_pickle=True, encoding="latin1")
  except Exception as e:  # noqa: BLE001 - any reader failure becomes one clear message
    raise DataError(f"{path}: cannot be read as a .npy file ({type(e).__name__}: {e})") from e


def _as_str(value, path: pathlib.Path) -> str:
  if isinstance(value, (bytes, np.bytes_)):
    return bytes(value).decode("utf-8")
  if isinstance(value, str):
    return str(value)
  raise DataError(f"{path}: expected a name (str or bytes), found {type(value).__name__} {value!r}")


def _class_ids(names, class_index: Mapping[str, int], path: pathlib.Path, video: str):
  ids = []
  for raw in names:
    name = _as_str(raw, path)
    if name not in class_index:
      raise DataError(f"{path}: video {video}: label {name!r} is not in classlist.npy "
                      f"(expected one of {len(class_index)} classes)")
    ids.append(class_index[name])
  return np.array(ids, dtype=np.int32)


def _segment_array(entry, path: pathlib.Path, video: str) -> np.ndarray:
  try:
    segs = np.asarray(entry if len(entry) else np.zeros((0, 2)), dtype=np.float64)
  except (TypeError, ValueError) as e:
    raise DataError(f"{path}: video {video}: expected a list of [start, end] pairs in seconds, "
                    f"found {entry!r}") from e
  if segs.ndim != 2 or segs.shape[1] != 2:
    raise DataError(f"{path}: video {video}: expected a list of [start, end] pairs in seconds, "
                    f"found shape {segs.shape}")
  bad = ~np.isfinite(segs).all(1) | (segs[:, 1] < segs[:, 0]) | (segs[:, 0] < 0)
  if bad.any():
    k = int(np.argmax(bad))
    raise DataError(f"{path}: video {video}: segment {k} must satisfy 0 <= start <= end (finite "
                    f"seconds), found {segs[k].tolist()}")
  return segs


def load_ambiguous(path) -> dict[str, np.ndarray]:
  """Parses ``Ambiguous_test.txt`` (lines ``video start end`` in seconds, any whitespace).

  Returns:
    video name -> ``[m, 2]`` float64 seconds; ``{}`` for an empty file.

  Raises:
    DataError: a non-empty line without a name and two numbers ``start <= end``.
  """
  path = pathlib.Path(path)
  out: dict[str, list] = {}
  for number, line in enumerate(path.read_text().splitlines(), start=1):
    fields = line.split()
    if not fields:
      continue
    try:
      if len(fields) != 3:
        raise ValueError
      start, end = float(fields[1]), float(fields[2])
      if not start <= end:
        raise ValueError
    except ValueError:
      raise DataError(f"{path}: line {number}: expected 'video start end' with start <= end "
                      f"(seconds), found {line!r}") from None
    out.setdefault(fields[0], []).append((start, end))
  return {name: np.array(v, dtype=np.float64) for name, v in out.items()}


def load_annotations(annotation_dir, *, dataset: str = "Thumos14reduced") -> Annotations:
  """Reads and validates a W-TALC annotation folder (no features needed).

  Args:
    annotation_dir: the folder holding ``classlist.npy`` ..., or its parent holding
      ``<dataset>-Annotations/`` (e.g. ``../shared/data/thumos14``).
    dataset: ``"Thumos14reduced"``, ``"ActivityNet1.2"``, ``"ActivityNet1.3"``, ...

  Returns:
    `Annotations` for every video of the folder, in file order.

  Raises:
    MissingFileError: a required file is absent.
    DataError: unreadable file; an empty class list; files that disagree on the number of
      videos; duplicate class or video names; a duration that is not finite and > 0; a segment
      that is not ``0 <= start <= end``; ``labels.npy`` and ``segments.npy`` lengths that
      differ for a video; a label that is not in ``classlist.npy``; a malformed
      ``Ambiguous_test.txt`` line.
  """
  folder = find_annotation_dir(annotation_dir, dataset)
  paths = {name: folder / f"{name}.npy" for name in ANNOTATION_FILES}
  raw = {name: _load_npy(p, "annotation") for name, p in paths.items()}

  class_names = tuple(_as_str(c, paths["classlist"]) for c in np.ravel(raw["classlist"]))
  if not class_names:
    raise DataError(f"{paths['classlist']}: expected at least one class name, found none")
  if len(set(class_names)) != len(class_names):
    raise DataError(f"{paths['classlist']}: expected unique class names, found duplicates")
  class_index = {c: i for i, c in enumerate(class_names)}

  if np.ndim(raw["duration"]) == 2 and raw["duration"].shape[1] == 1:
    raw["duration"] = raw["duration"][:, 0]  # THUMOS14 stores [V, 1]
  counts = {f"{n}.npy": (len(raw[n]) if np.ndim(raw[n]) else 0) for n in ANNOTATION_FILES[1:]}
  if len(set(counts.values())) != 1:
    raise DataError(f"annotation files in {folder} disagree on the number of videos: {counts}")
  video_names = tuple(_as_str(v, paths["videoname"]) for v in raw["videoname"])
  if len(set(video_names)) != len(video_names):
    raise DataError(f"{paths['videoname']}: expected unique video names, found duplicates")
  subsets = tuple(_as_str(s, paths["subset"]) for s in raw["subset"])

  try:
    durations = np.asarray(raw["duration"], dtype=np.float64)
  except (TypeError, ValueError) as e:
    raise DataError(f"{paths['duration']}: expected float seconds, found {raw['duration'].dtype}"
                    ) from e
  bad = ~(np.isfinite(durations) & (durations > 0))
  if bad.any():
    k = int(np.argmax(bad))
    raise DataError(f"{paths['duration']}: video {video_names[k]}: expected a finite duration "
                    f"> 0 seconds, found {durations[k]}")

  segments, segment_labels = [], []
  labels = np.zeros((len(video_names), len(class_names)), np.float32)
  for i, video in enumerate(video_names):
    segs = _segment_array(raw["segments"][i], paths["segments"], video)
    seg_labels = _class_ids(raw["labels"][i], class_index, paths["labels"], video)
    if len(seg_labels) != len(segs):
      raise DataError(f"{paths['labels']}: video {video}: expected one label per segment "
                      f"({len(segs)} in segments.npy), found {len(seg_labels)}")
    segments.append(segs)
    segment_labels.append(seg_labels)
    labels[i, _class_ids(raw["labels_all"][i], class_index, paths["labels_all"], video)] = 1.0

  ambiguous_path = folder / AMBIGUOUS_FILE
  ambiguous = load_ambiguous(ambiguous_path) if ambiguous_path.is_file() else {}
  return Annotations(dataset=dataset, class_names=class_names, video_names=video_names,
                     subsets=subsets, durations=durations, segments=segments,
                     segment_labels=segment_labels, labels=labels, ambiguous=ambiguous,
                     source=str(folder))


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


def build_dataset(annotations: Annotations,
                  features: Sequence[np.ndarray] | Callable[[int], np.ndarray], *,
                  split: str = "train", fps: float = 25.0, frames_per_snippet: float = 16.0,
                  feature_dim: int | None = None, exclude_videos: Sequence[str] = (),
                  min_snippets: int = 2, feature_source: str = "features") -> VideoDataset:
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
    feature_source: file or folder name used in error messages.

  Returns:
    `VideoDataset` whose ``report`` holds ``subset`` (the subset.npy value),
    ``videos_in_subset``, ``excluded_videos``, ``skipped_short_videos`` (count) and
    ``skipped_short_names``, ``clipped_segments`` (end moved back to the duration),
    ``dropped_segments`` (start at or after the end), ``segments``, ``videos_without_labels``.

  Raises:
    ValueError: bad ``split``, ``fps``, ``frames_per_snippet`` or ``min_snippets``.
    DataError: unknown names in ``exclude_videos``; a feature count that differs from the
      annotations; non-[T, D] features, a wrong feature dim, NaN/inf rows; an empty split.
  """
  subset = subset_name(annotations.dataset, split)
  if not (fps > 0 and frames_per_snippet > 0):
    raise ValueError(f"fps and frames_per_snippet must be > 0, got {fps} and {frames_per_snippet}")
  if min_snippets < 1:
    raise ValueError(f"min_snippets must be >= 1, got {min_snippets}")
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
      report=report)


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
  annotations = load_annotations(data_dir if annotation_dir is None else annotation_dir,
                                 dataset=dataset)
  single, folder = feature_paths(data_dir, dataset)
  if single.is_file():
    return annotations, _load_npy(single, "feature"), str(single)
  if folder.is_dir():
    def features(i):
      return _load_npy(folder / f"{annotations.video_names[i]}.npy", "per-video feature")
    return annotations, features, str(folder)
  raise MissingFileError(f"missing feature file {single} (or per-video folder "
                         f"{folder}/<video>.npy); {WTALC_HINT}")


def load_wtalc(data_dir, *, dataset: str = "Thumos14reduced", split: str = "train",
               annotation_dir=None, fps: float = 25.0, frames_per_snippet: float = 16.0,
               feature_dim: int | None = None, exclude_videos: Sequence[str] = (),
               min_snippets: int = 2) -> VideoDataset:
  """Loads one split of a W-TALC-format dataset: `open_wtalc` + `build_dataset`.

  Args:
    data_dir, dataset, annotation_dir: see `open_wtalc`.
    split: ``"train"`` or ``"test"`` (see `subset_name`).
    fps, frames_per_snippet, feature_dim, exclude_videos, min_snippets: see `build_dataset`.

  Returns:
    `VideoDataset` of the split.

  Raises:
    MissingFileError, DataError, ValueError: see `load_annotations` and `build_dataset`.
  """
  subset_name(dataset, split)  # fail on a bad split before reading large files
  annotations, features, source = open_wtalc(data_dir, dataset=dataset,
                                             annotation_dir=annotation_dir)
  return build_dataset(annotations, features, split=split, fps=fps,
                       frames_per_snippet=frames_per_snippet, feature_dim=feature_dim,
                       exclude_videos=exclude_videos, min_snippets=min_snippets,
                       feature_source=source)
