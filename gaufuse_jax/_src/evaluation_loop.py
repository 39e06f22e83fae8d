"""A model over a dataset at test time: detections of every video (gathered over processes)
and their metrics under both protocols."""

from __future__ import annotations

import jax
from jax.experimental import multihost_utils
import numpy as np

from gaufuse_jax._src import evaluation
from gaufuse_jax._src import input_pipeline

def detect(config, params, dataset, *, p_eval, bucket_sizes):
  """Detections and video scores of every video of ``dataset``; with several processes each
  localizes its shard of the videos and all of them return the whole set (gathered per batch).

  Args:
    params: replicated parameters (leading local-device axis).
    p_eval: a ``make_eval_step`` step; its ``dropped`` counts this call's drops.

  Returns:
    ``(detections, video_scores)``: ``evaluation.Detections`` (segments in snippets, video =
    index into ``dataset``) and float32 ``[V, C+1]`` video scores.
  """
  parts, video_scores = [], np.zeros((len(dataset), dataset.num_classes + 1), np.float32)
  iterator, total = input_pipeline.batches(config, dataset, bucket_sizes=bucket_sizes)
  for batch in input_pipeline.progress(iterator, total, f"localize {dataset.split}"):
    # device_get blocks: one step at a time, never a queue of collective steps.
    outputs = p_eval(params, batch)[:2] + (batch["video_index"],)
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
  order = np.argsort(detections["video"], kind="stable")  # annotation order, as the batches were
  return {k: v[order] for k, v in detections.items()}, video_scores


def evaluate(config, params, dataset, *, p_eval, bucket_sizes) -> tuple[dict, dict]:
  """Localizes every video of ``dataset`` and scores the detections against its ground truth.

  Returns:
    ``(metrics, detections)``: scalar metrics of both protocols (``wtalc/...`` with the
    ambiguous filter when ``config.eval.ambiguous_filter``, ``activitynet/...``), ``cmAP``
    (percent), and the caps' counts of ``GrowingStep.take_dropped`` (``proposals_dropped``,
    ``instances_dropped``: 0 unless ``config.grow_caps`` is off; ``max_proposals``,
    ``max_instances``); detections in the ``evaluation.Detections`` format (segments in
    snippets).
  """
  p_eval.take_dropped()
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
  metrics.update(p_eval.take_dropped())
  return metrics, detections
