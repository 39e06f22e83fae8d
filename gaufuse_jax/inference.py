"""Running a model over a dataset: batches, progress, test-time evaluation and its outputs.

Shared by training (``train.py``), ``launch.evaluate`` and ``launch.localize``.
"""

from __future__ import annotations

import functools
import json
import pathlib

from flax import jax_utils
import jax
from jax.experimental import multihost_utils
import numpy as np
import tqdm

from gaufuse_jax import evaluation
from gaufuse_jax import input_pipeline
from gaufuse_jax import steps
from gaufuse_jax.data import batching
from gaufuse_jax.models import rskp


def progress(iterable, total, desc):
  """A tqdm bar with ETA on process 0, silent elsewhere."""
  return tqdm.tqdm(iterable, total=total, desc=desc, leave=False,
                   disable=jax.process_index() != 0, dynamic_ncols=True)


def batches(config, dataset, *, epoch, shuffle, bucket_sizes, crop=False):
  """``(iterator, count)`` of this process's padded batches (leading local-device axis);
  ``crop`` applies ``config.max_snippets`` (training only: pseudo labels and evaluation see
  whole videos)."""
  iterator = batching.iterate_batches(
      dataset, batch_size=config.batch_size, seed=config.seed, epoch=epoch, shuffle=shuffle,
      bucket_sizes=bucket_sizes, max_snippets=(config.max_snippets or None) if crop else None,
      num_devices=len(local_devices(config)), process_index=jax.process_index(),
      process_count=jax.process_count())
  count = batching.num_batches(dataset, batch_size=config.batch_size,
                               process_count=jax.process_count())
  return iterator, count


def bucket_sizes(config, *datasets, crop=False) -> tuple[int, ...]:
  """``config.bucket_sizes``, or sizes picked from the lengths of all ``datasets`` when empty;
  ``crop`` picks them for the training crops (``config.max_snippets``)."""
  return tuple(config.bucket_sizes) or batching.default_bucket_sizes(
      np.concatenate([d.lengths for d in datasets]),
      max_snippets=(config.max_snippets or None) if crop else None)


def build_model(config, dataset) -> rskp.RSKP:
  """The RSKP model of ``config.model`` for ``dataset``'s classes and feature size."""
  return rskp.RSKP(num_classes=dataset.num_classes, feature_dim=dataset.feature_dim,
                   **config.model)


def make_eval_step(config, model):
  """The pmapped test-time step of ``config.eval`` (see ``steps.eval_step``)."""
  return pmap(functools.partial(
      steps.eval_step, model=model, loc_config=input_pipeline.localization_config(config.eval),
      frame_coef=config.eval.frame_coef, video_coef=config.eval.video_coef), config)


def detect(config, params, dataset, *, p_eval, bucket_sizes):
  """Detections and video scores of every video of ``dataset``; with several processes each
  localizes its shard of the videos and all of them return the whole set (gathered per batch).

  Args:
    params: replicated parameters (leading local-device axis).

  Returns:
    ``(detections, video_scores)``: ``evaluation.Detections`` (segments in snippets, video =
    index into ``dataset``) and float32 ``[V, C+1]`` video scores.
  """
  parts, video_scores = [], np.zeros((len(dataset), dataset.num_classes + 1), np.float32)
  iterator, total = batches(config, dataset, epoch=0, shuffle=False, bucket_sizes=bucket_sizes)
  for batch in progress(iterator, total, f"localize {dataset.split}"):
    # device_get blocks: one step at a time, never a queue of collective steps.
    outputs = jax.device_get(p_eval(params, batch)) + (batch["video_index"],)
    if jax.process_count() > 1:  # each process localized its own shard: all get every shard
      outputs = multihost_utils.process_allgather(outputs)  # same shapes on every process
    lead = outputs[2].ndim  # [(processes,) devices, b]
    instances, scores, index = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[lead:]),
                                            outputs)
    keep = index >= 0
    flat = jax.tree.map(lambda x: x[keep], instances)
    parts.append(evaluation.detections_from_padded(
        flat.segments[..., 0], flat.segments[..., 1], flat.scores, flat.valid,
        video_index=index[keep]))
    video_scores[index[keep]] = scores[keep]
  detections = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
  return detections, video_scores


def evaluate(config, params, dataset, *, p_eval, bucket_sizes) -> tuple[dict, dict]:
  """Localizes every video of ``dataset`` and scores the detections against its ground truth.

  Returns:
    ``(metrics, detections)``: scalar metrics of both protocols (``wtalc/...`` with the
    ambiguous filter when ``config.eval.ambiguous_filter``, ``activitynet/...``) and ``cmAP``
    (percent); detections in the ``evaluation.Detections`` format (segments in snippets).
  """
  detections, video_scores = detect(config, params, dataset, p_eval=p_eval,
                                    bucket_sizes=bucket_sizes)
  gt = dataset.ground_truth()
  metrics = {}
  for protocol in ("wtalc", "activitynet"):
    ambiguous = dataset.ambiguous_arrays() if (
        protocol == "wtalc" and config.eval.ambiguous_filter) else None
    result = evaluation.detection_map(
        detections, gt, num_classes=dataset.num_classes, protocol=protocol,
        ambiguous=ambiguous, fps=dataset.fps, frames_per_snippet=dataset.frames_per_snippet)
    metrics.update({k: float(v) for k, v in result.items() if np.ndim(v) == 0})
  metrics["cmAP"] = float(evaluation.classification_map(video_scores[:, :-1], dataset.labels))
  return metrics, detections


def write_outputs(out_dir, dataset, metrics, detections) -> str:
  """Writes ``<out_dir>/results/<split>.json`` (ActivityNet format, seconds) and
  ``<out_dir>/results/<split>.md`` (the mAP tables of both protocols); prints and returns the
  tables."""
  results_dir = pathlib.Path(out_dir) / "results"
  results_dir.mkdir(parents=True, exist_ok=True)
  results = evaluation.results_json(
      detections, dataset.video_names, dataset.class_names, fps=dataset.fps,
      frames_per_snippet=dataset.frames_per_snippet)
  evaluation.validate_results_json(results)
  (results_dir / f"{dataset.split}.json").write_text(json.dumps(results))
  name = f"{dataset.name} ({dataset.split}, {len(dataset)} videos" + (
      f", excluded {', '.join(dataset.excluded_videos)})" if dataset.excluded_videos else ")")
  table = "\n\n".join(
      evaluation.format_map_table(metrics, protocol=p, dataset_name=name, cmap=metrics["cmAP"])
      for p in ("wtalc", "activitynet"))
  (results_dir / f"{dataset.split}.md").write_text(table + "\n")
  print(table, flush=True)
  return table


def local_devices(config):
  """The local devices a run uses: the first ``config.num_devices`` (0 = all)."""
  devices = jax.local_devices()
  if config.num_devices > len(devices):
    raise ValueError(f"config.num_devices={config.num_devices} but this process has only "
                     f"{len(devices)} local devices")
  return devices[:config.num_devices or None]


def pmap(fn, config, **kwargs):
  """``jax.pmap`` with the batch axis name of ``steps`` over ``local_devices(config)`` of every
  process: pmap wants the same global device list on all processes (a list of local devices
  would give each process its own, unconnected pmap)."""
  n = len(local_devices(config))
  devices = [d for p in range(jax.process_count()) for d in jax.local_devices(p)[:n]]
  return jax.pmap(fn, axis_name=steps.AXIS, devices=devices, **kwargs)


def replicate(tree, config):
  """One copy of ``tree`` per device of ``local_devices(config)``, for pmap."""
  return jax_utils.replicate(tree, devices=local_devices(config))


def write_run_info(workdir, dataset) -> None:
  """``workdir/dataset.json``: what a trained model needs to localize new videos (class names,
  feature size, snippet duration)."""
  info = {"name": dataset.name, "class_names": list(dataset.class_names),
          "feature_dim": dataset.feature_dim, "fps": dataset.fps,
          "frames_per_snippet": dataset.frames_per_snippet}
  (pathlib.Path(workdir) / "dataset.json").write_text(json.dumps(info, indent=2))


def read_run_info(workdir) -> dict:
  """Reads ``workdir/dataset.json``; raises FileNotFoundError naming it when missing."""
  path = pathlib.Path(workdir) / "dataset.json"
  if not path.is_file():
    raise FileNotFoundError(f"{path} not found: --workdir must be a directory written by "
                            "launch.train")
  return json.loads(path.read_text())


def unreplicate(tree):
  """The first device's copy of a replicated pytree, on the host (blocks)."""
  return jax.device_get(jax.tree.map(lambda x: x[0], tree))
