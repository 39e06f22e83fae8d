"""Result files: the mAP table, the ActivityNet-style results JSON (written, validated, read
back), a run's ``results/<split>.json|md`` and its ``dataset.json``."""

from __future__ import annotations

import json
import math
import numbers
import pathlib
from typing import Any, Mapping, Sequence

import numpy as np

from gaufuse_jax._src import segments as segments_lib
from gaufuse_jax._src import evaluation
from gaufuse_jax._src import matching
from gaufuse_jax._src import tables
from gaufuse_jax._src.data.wtalc import FEATURE_SUFFIX


PROTOCOL_DESCRIPTIONS = {
    "wtalc": ("W-TALC/RSKP evaluator: tIoU of integer snippet sets (GT round(s*fps/frames), "
              "prediction int() truncated toward zero), greedy matching, all-points AP"),
    "activitynet": ("official ActivityNet evaluator: continuous tIoU in seconds, greedy matching, "
                    "interpolated all-points AP"),
}

DEFAULT_EXTERNAL_DATA = {
    "used": True,
    "details": "I3D RGB and optical-flow features pretrained on Kinetics-400 (as distributed "
               "by W-TALC).",
}



def format_map_table(metrics: Mapping[str, Any], *, protocol: str, dataset_name: str,
                     cmap: float | None = None) -> str:
  """The markdown mAP table (one row: mAP per tIoU, averages, cmAP) for one protocol.

  Args:
    metrics: a dict holding the scalar ``f"{protocol}/mAP@..."`` entries of
      ``evaluation.detection_map`` (other keys are ignored; the array entries are not needed).
    protocol: ``"wtalc"`` or ``"activitynet"``.
    dataset_name: the dataset and variant, e.g. ``"THUMOS14 (Thumos14reduced test, 212 videos)"``.
    cmap: optional classification mAP (percent), shown as the last column.

  Returns:
    A caption line naming dataset and protocol, then a one-row table: mAP (%) per tIoU, the
    averages present, and cmAP.

  Raises:
    ValueError: unknown protocol or no ``f"{protocol}/mAP@<tIoU>"`` entry.
  """
  if protocol not in matching.PROTOCOLS:
    raise ValueError(f"protocol: expected one of {matching.PROTOCOLS}, found {protocol!r}")
  prefix = f"{protocol}/mAP@"
  entries = {k[len(prefix):]: float(v) for k, v in metrics.items()
             if isinstance(k, str) and k.startswith(prefix) and np.ndim(v) == 0}
  per_tiou = sorted((name for name in entries if ":" not in name), key=float)
  if not per_tiou:
    raise ValueError(f"format_map_table: metrics has no '{prefix}<tIoU>' entry "
                     f"(keys: {sorted(metrics)[:20]})")
  averages = [n for n in evaluation.AVERAGE_RANGES if n in entries]
  averages += sorted(n for n in entries if ":" in n and n not in evaluation.AVERAGE_RANGES)
  header = per_tiou + [f"avg {n}" for n in averages] + (["cmAP"] if cmap is not None else [])
  values = [entries[n] for n in per_tiou + averages] + ([float(cmap)] if cmap is not None else [])
  caption = f"**{dataset_name}**, protocol `{protocol}` ({PROTOCOL_DESCRIPTIONS[protocol]})"
  dropped = metrics.get(f"{protocol}/num_ambiguous_dropped")
  if dropped is not None:
    caption += f"; ambiguous-interval filter dropped {int(dropped)} predictions"
  return "\n".join([
      caption + ".",
      "",
      "| tIoU | " + " | ".join(header) + " |",
      "|:--|" + "--:|" * len(header),
      "| mAP (%) | " + " | ".join(f"{v:.2f}" for v in values) + " |",
  ])


def _names(values, name: str) -> list[str]:
  names = [v.decode() if isinstance(v, bytes) else v for v in values]
  if not all(isinstance(n, str) for n in names):
    raise ValueError(f"{name}: expected strings, found {sorted({type(n).__name__ for n in names})}")
  if len(set(names)) != len(names):
    raise ValueError(f"{name}: names must be unique")
  return names


def results_json(detections: Mapping[str, Any], video_names: Sequence[str],
                 class_names: Sequence[str], *, fps: float = segments_lib.FPS,
                 frames_per_snippet: float = segments_lib.FRAMES_PER_SNIPPET,
                 version: str = "VERSION 1.3",
                 external_data: Mapping[str, Any] | None = None) -> dict[str, Any]:
  """tables.DetectionTable -> an ActivityNet-format results object, segments in seconds.

  The ``results`` file format read by the official ActivityNet evaluator
  (``ANETdetection._import_prediction``); segments are written unclipped (negative starts and ends
  past the video stay as they are, the official evaluator reads any float).

  Args:
    detections: ``tables.DetectionTable`` (segments in snippets).
    video_names: ``[V]`` unique names (str or bytes) indexed by ``detections["video"]``.
    class_names: ``[C]`` unique names indexed by ``detections["label"]``.
    fps, frames_per_snippet: seconds = snippets * frames_per_snippet / fps.
    version: the ``"version"`` string.
    external_data: ``{"used": bool, "details": str}``; default ``DEFAULT_EXTERNAL_DATA``.

  Returns:
    ``{"version", "results": {video: [{"label", "score", "segment": [s, e]}]},
    "external_data"}`` of plain Python types (``json.dumps``-able); every video of
    ``video_names`` is present (possibly with an empty list), its detections by descending score.

  Raises:
    ValueError: invalid detections (see ``evaluation.detection_map``), out-of-range indices, or
      non-unique or non-string names.
  """
  videos = _names(video_names, "video_names")
  classes = _names(class_names, "class_names")
  det = tables.check_table(detections, "detections", num_classes=len(classes),
                           num_videos=len(videos),
               scored=True)
  seconds = det["segment"] * (tables.check_positive("frames_per_snippet", frames_per_snippet)
                              / tables.check_positive("fps", fps))
  order = np.lexsort((-det["score"], det["video"]))
  results: dict[str, list] = {v: [] for v in videos}
  for v, c, s, seg in zip(det["video"][order].tolist(), det["label"][order].tolist(),
                          det["score"][order].tolist(), seconds[order].tolist()):
    results[videos[v]].append({"label": classes[c], "score": s, "segment": seg})
  obj = {"version": version, "results": results,
         "external_data": dict(DEFAULT_EXTERNAL_DATA if external_data is None else external_data)}
  validate_results_json(obj)
  return obj


def _is_real(x) -> bool:
  return isinstance(x, numbers.Real) and not isinstance(x, bool) and math.isfinite(x)


def validate_results_json(obj, *, class_names: Sequence[str] | None = None) -> None:
  """Checks an ActivityNet-format results object; raises ``ValueError`` naming the first problem.

  Schema: a dict with ``"version"`` (str), ``"results"`` (dict: video name (str) -> list of
  ``{"label": str, "score": finite number, "segment": [start, end]}`` with finite
  ``start <= end`` seconds, any sign) and ``"external_data"`` (dict with ``"used"`` bool and
  ``"details"`` str). With ``class_names``, every label must be one of them.
  """
  if not isinstance(obj, Mapping):
    raise ValueError(f"results: expected a dict, found {type(obj).__name__}")
  missing = {"version", "results", "external_data"} - set(obj)
  if missing:
    raise ValueError(f"results: missing keys {sorted(missing)}")
  if not isinstance(obj["version"], str):
    raise ValueError(f"results['version']: expected str, found {obj['version']!r}")
  ext = obj["external_data"]
  if not (isinstance(ext, Mapping) and isinstance(ext.get("used"), bool)
          and isinstance(ext.get("details"), str)):
    raise ValueError(f"results['external_data']: expected {{'used': bool, 'details': str}}, "
                     f"found {ext!r}")
  if not isinstance(obj["results"], Mapping):
    raise ValueError(f"results['results']: expected a dict, found {type(obj['results']).__name__}")
  allowed = None if class_names is None else set(_names(class_names, "class_names"))
  for video, entries in obj["results"].items():
    where = f"results['results'][{video!r}]"
    if not isinstance(video, str):
      raise ValueError(f"{where}: video names must be str")
    if not isinstance(entries, list):
      raise ValueError(f"{where}: expected a list, found {type(entries).__name__}")
    for i, entry in enumerate(entries):
      at = f"{where}[{i}]"
      if not isinstance(entry, Mapping) or {"label", "score", "segment"} - set(entry):
        raise ValueError(f"{at}: expected a dict with 'label', 'score', 'segment', found {entry!r}")
      if not isinstance(entry["label"], str) or (allowed is not None
                                                 and entry["label"] not in allowed):
        raise ValueError(f"{at}['label']: unknown or non-string label {entry['label']!r}")
      if not _is_real(entry["score"]):
        raise ValueError(f"{at}['score']: expected a finite number, found {entry['score']!r}")
      seg = entry["segment"]
      if not (isinstance(seg, (list, tuple)) and len(seg) == 2 and all(map(_is_real, seg))
              and seg[0] <= seg[1]):
        raise ValueError(f"{at}['segment']: expected [start, end] finite seconds with "
                         f"start <= end, found {seg!r}")


def detections_from_results_json(obj, video_names: Sequence[str], class_names: Sequence[str], *,
                                 fps: float = segments_lib.FPS,
                                 frames_per_snippet: float = segments_lib.FRAMES_PER_SNIPPET
                                 ) -> tables.DetectionTable:
  """An ActivityNet-format results object -> ``tables.DetectionTable`` (segments back in snippets).

  The inverse of ``results_json`` (up to float round-off of the unit conversion), e.g. to score a
  saved results file with ``evaluation.detection_map``.

  Raises:
    ValueError: an invalid object (``validate_results_json``), or a video or label not in
      ``video_names`` / ``class_names``.
  """
  validate_results_json(obj, class_names=class_names)
  video_id = {n: i for i, n in enumerate(_names(video_names, "video_names"))}
  class_id = {n: i for i, n in enumerate(_names(class_names, "class_names"))}
  unknown = sorted(set(obj["results"]) - set(video_id))
  if unknown:
    raise ValueError(f"results: videos not in video_names: {unknown[:5]}")
  rows = [(video_id[v], class_id[e["label"]], e["score"], *e["segment"])
          for v, entries in obj["results"].items() for e in entries]
  table = np.array(rows, np.float64).reshape(-1, 5)
  to_snippets = (tables.check_positive("fps", fps)
                 / tables.check_positive("frames_per_snippet", frames_per_snippet))
  return {"video": table[:, 0].astype(np.int64), "label": table[:, 1].astype(np.int64),
          "score": table[:, 2], "segment": table[:, 3:] * to_snippets}


def external_data(dataset) -> dict:
  """The results JSON's ``external_data`` for the features ``dataset`` was read from: generated
  features use none; features from files are described by where they came from (the W-TALC
  I3D files are Kinetics-400 pretrained)."""
  source = dataset.feature_source
  if source.startswith("generated"):
    return {"used": False, "details": f"{source}, generated by gaufuse_jax: no pretrained model"}
  if source.endswith(FEATURE_SUFFIX + ".npy") or source.endswith(FEATURE_SUFFIX):
    return dict(DEFAULT_EXTERNAL_DATA, details=DEFAULT_EXTERNAL_DATA["details"] + f" {source}")
  return {"used": True, "details": f"features read from {source or 'an unnamed source'}; "
                                   "their pretraining is not recorded"}


def write_results_json(path, detections, dataset) -> dict:
  """Writes the detections of ``dataset``'s videos (``tables.DetectionTable``, segments in
  snippets) to ``path`` as a validated ActivityNet-format results JSON (seconds), with the
  ``external_data`` of its features, creating its folder; returns the results dict."""
  results = results_json(detections, dataset.video_names, dataset.class_names, fps=dataset.fps,
                         frames_per_snippet=dataset.frames_per_snippet,
                         external_data=external_data(dataset))
  validate_results_json(results)
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(results))
  return results


def write_outputs(out_dir, dataset, metrics, detections, *, epoch: int) -> str:
  """Writes ``<out_dir>/results/<split>.json`` (ActivityNet format, seconds) and
  ``<out_dir>/results/<split>.md`` (the mAP tables of both protocols, naming the ``epoch``
  whose checkpoint they score); prints and returns the tables."""
  results_dir = pathlib.Path(out_dir) / "results"
  write_results_json(results_dir / f"{dataset.split}.json", detections, dataset)
  name = f"{dataset.name} ({dataset.split}, {len(dataset)} videos" + (
      f", excluded {', '.join(dataset.excluded_videos)}" if dataset.excluded_videos else "") + (
      f"; the model after epoch {epoch})")
  table = "\n\n".join(
      format_map_table(metrics, protocol=p, dataset_name=name, cmap=metrics["cmAP"])
      for p in ("wtalc", "activitynet"))
  if metrics.get("proposals_dropped") or metrics.get("instances_dropped"):
    table += (f"\n\nThe caps dropped {metrics['proposals_dropped']} proposals and "
              f"{metrics['instances_dropped']} instances (config.grow_caps=False): not the "
              "authors' post-processing.")
  (results_dir / f"{dataset.split}.md").write_text(table + "\n")
  print(table, flush=True)
  return table


def run_info(dataset) -> dict:
  """The content of a run's ``dataset.json``: what a trained model needs to localize new videos
  (class names, feature size, snippet duration) and the size of its training split."""
  return {"name": dataset.name, "class_names": list(dataset.class_names),
          "feature_dim": dataset.feature_dim, "fps": dataset.fps,
          "frames_per_snippet": dataset.frames_per_snippet, "num_videos": len(dataset)}


def read_run_info(workdir) -> dict:
  """Reads ``workdir/dataset.json``; raises FileNotFoundError naming it when missing."""
  path = pathlib.Path(workdir) / "dataset.json"
  if not path.is_file():
    raise FileNotFoundError(f"{path} not found: --workdir must be a directory written by "
                            "launch.train")
  return json.loads(path.read_text())
