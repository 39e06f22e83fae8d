"""W-TALC annotation folders (``classlist.npy``, ``videoname.npy``, ``subset.npy``,
``segments.npy``, ``labels.npy``, ``labels_all.npy``, ``duration.npy``, ``Ambiguous_test.txt``)
read and checked into ``Annotations``."""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Mapping

import numpy as np

from gaufuse_jax._src.data.errors import DataError
from gaufuse_jax._src.data.errors import MissingFileError

ANNOTATION_FILES = ("classlist", "videoname", "subset", "segments", "labels", "labels_all",
                    "duration")
AMBIGUOUS_FILE = "Ambiguous_test.txt"
SPLITS = ("train", "test")
WTALC_HINT = ("the standard files come from the W-TALC release "
              "(https://github.com/sujoyp/wtalc-pytorch: annotation folders "
              "Thumos14reduced-Annotations, ActivityNet1.2-Annotations; the "
              "<Dataset>-I3D-JOINTFeatures.npy files are linked from its README)")


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


def load_npy(path: pathlib.Path, what: str):
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
  raw = {name: load_npy(p, "annotation") for name, p in paths.items()}

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
