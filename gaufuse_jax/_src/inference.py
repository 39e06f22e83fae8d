"""Running a model over a dataset: batches, progress, test-time evaluation and its outputs.

Shared by training (``train.py``), ``launch.evaluate`` and ``launch.localize``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import pathlib
from typing import Callable

from absl import logging
from flax import jax_utils
import jax
from jax.experimental import multihost_utils
import numpy as np
import tqdm

from gaufuse_jax._src import evaluation
from gaufuse_jax._src import input_pipeline
from gaufuse_jax._src import localization
from gaufuse_jax._src import pseudo_labels as pl_lib
from gaufuse_jax._src import steps
from gaufuse_jax._src.data import batching
from gaufuse_jax._src.models import rskp


def progress(iterable, total, desc):
  """A tqdm bar with ETA on process 0, silent elsewhere."""
  return tqdm.tqdm(iterable, total=total, desc=desc, leave=False,
                   disable=jax.process_index() != 0, dynamic_ncols=True)


def batches(config, dataset, *, bucket_sizes):
  """``(iterator, count)`` of this process's padded batches of whole videos (leading local-device
  axis), in order of decreasing length so that each batch pads little: evaluation, pseudo labels
  and memory initialisation, where the order does not matter."""
  iterator = batching.iterate_batches(
      dataset, batch_size=config.batch_size, seed=config.seed, epoch=0, shuffle=False,
      sort_by_length=True, bucket_sizes=bucket_sizes, num_devices=len(local_devices(config)),
      process_index=jax.process_index(), process_count=jax.process_count())
  count = batching.num_batches(dataset, batch_size=config.batch_size,
                               process_count=jax.process_count())
  return iterator, count


def train_batches(config, dataset, *, epoch, bucket_sizes):
  """``(iterator, count)`` of this process's optimizer steps of one epoch, each a list of
  micro-batches (``batching.iterate_micro_batches`` with ``config.micro_batch_size``; crops of
  ``config.max_snippets``)."""
  ndev = len(local_devices(config))
  iterator = batching.iterate_micro_batches(
      dataset, batch_size=config.batch_size, seed=config.seed, epoch=epoch,
      micro_batch_size=config.micro_batch_size or config.batch_size // ndev,
      bucket_sizes=bucket_sizes, max_snippets=config.max_snippets or None, num_devices=ndev,
      process_index=jax.process_index(), process_count=jax.process_count())
  count = batching.num_batches(dataset, batch_size=config.batch_size,
                               process_count=jax.process_count())
  return iterator, count


def bucket_sizes(config, *datasets, crop=False) -> tuple[int, ...]:
  """``config.bucket_sizes`` when set; else, for whole videos (evaluation, pseudo labels, memory
  initialisation: the batches of ``batches``, fixed in advance), the
  ``config.inference_buckets`` sizes that pad the batches of all ``datasets`` least
  (``batching.fitted_bucket_sizes``); with ``crop`` (training, one video per micro-batch, crops
  of ``config.max_snippets``), the used rungs of the ladder of ``config.bucket_growth``
  (``batching.default_bucket_sizes``)."""
  if config.bucket_sizes:
    return tuple(config.bucket_sizes)
  if crop:
    return batching.default_bucket_sizes(
        np.concatenate([d.lengths for d in datasets]), growth=config.bucket_growth,
        max_snippets=config.max_snippets or None)
  per_batch = config.batch_size * jax.process_count()  # a global batch of ``batches``
  longest = [d.lengths[batching.epoch_order(len(d), seed=0, epoch=0, shuffle=False,
                                            lengths=d.lengths)][::per_batch] for d in datasets]
  return batching.fitted_bucket_sizes(np.concatenate(longest),
                                      num_buckets=config.inference_buckets)


def build_model(config, dataset) -> rskp.RSKP:
  """The RSKP model of ``config.model`` for ``dataset``'s classes and feature size."""
  return rskp.RSKP(num_classes=dataset.num_classes, feature_dim=dataset.feature_dim,
                   **config.model)


class GrowingStep:
  """A pmapped localization step whose proposal / instance caps grow instead of dropping.

  ``make(loc_config)`` returns the pmapped step for those static caps; the last element of its
  output is a dict with per-(video, class) ``proposals_dropped`` and ``instances_dropped``
  arrays. A call returns the output on the host. With ``grow``, a batch that would drop
  anything (on any process: they decide together, so every process runs the same program) is
  run again with caps that hold it (``localization.grow_caps``; a recompilation) and the larger
  caps are kept for later calls, so nothing is ever dropped; without it, the drops are counted
  in ``dropped``.

  Attributes:
    loc_config: the caps in use.
    dropped: ``{"proposals": int, "instances": int}`` dropped since the last ``take_dropped``.
  """

  def __init__(self, make: Callable, loc_config: localization.LocalizationConfig, *,
               grow: bool, name: str):
    self.loc_config, self._make, self._grow, self._name = loc_config, make, grow, name
    self._fn = make(loc_config)
    self.dropped = {"proposals": 0, "instances": 0}

  def __call__(self, *args):
    while True:
      out = jax.device_get(self._fn(*args))
      stats = (out[-1]["proposals_dropped"], out[-1]["instances_dropped"])
      drops = np.array([np.sum(x) for x in stats] + [np.max(x, initial=0) for x in stats],
                       np.int64)
      if jax.process_count() > 1:
        gathered = multihost_utils.process_allgather(drops)
        drops = np.concatenate([gathered[:, :2].sum(0), gathered[:, 2:].max(0)])
      if not (self._grow and drops[:2].any()):
        self.dropped["proposals"] += int(drops[0])
        self.dropped["instances"] += int(drops[1])
        return out
      self.loc_config = localization.grow_caps(
          self.loc_config, proposals_dropped=int(drops[2]), instances_dropped=int(drops[3]))
      logging.info("%s: a batch would drop %d proposals and %d instances; running it again "
                   "with max_proposals=%d, max_instances=%d.", self._name, drops[0], drops[1],
                   self.loc_config.max_proposals, self.loc_config.max_instances)
      self._fn = self._make(self.loc_config)

  def take_dropped(self) -> dict:
    """The drop counts and caps since the last call (``proposals_dropped``,
    ``instances_dropped``, ``max_proposals``, ``max_instances``); resets the counts."""
    out = {"proposals_dropped": self.dropped["proposals"],
           "instances_dropped": self.dropped["instances"],
           "max_proposals": self.loc_config.max_proposals,
           "max_instances": self.loc_config.max_instances}
    self.dropped = {"proposals": 0, "instances": 0}
    return out


def make_eval_step(config, model) -> GrowingStep:
  """The pmapped test-time step of ``config.eval`` (see ``steps.eval_step``), growing its caps
  when ``config.grow_caps``."""
  def make(loc_config):
    return pmap(functools.partial(
        steps.eval_step, model=model, loc_config=loc_config, frame_coef=config.eval.frame_coef,
        video_coef=config.eval.video_coef), config)
  return GrowingStep(make, input_pipeline.localization_config(config.eval),
                     grow=config.grow_caps, name="localization")


def make_pseudo_label_step(config, model) -> GrowingStep:
  """The pseudo-label step of ``config.pseudo``, growing its caps when ``config.grow_caps``:
  ``step(params, batch, temperatures, rngs) -> (labels [n, B, T, C+1], diagnostics)`` on the
  host (see ``pseudo_labels.generate_pseudo_labels``). Three pmapped programs: the teacher's
  instances (``steps.pseudo_label_instances``, one per length bucket), their LPs
  (``pseudo_labels.solve_pseudo_labels``: its shapes do not depend on the length, so it compiles
  once per caps, not per bucket) and the labels (``assemble_pseudo_labels``, small)."""
  pl_config = input_pipeline.pseudo_label_config(config.pseudo)
  assemble = pmap(lambda solution, lengths, num_snippets: pl_lib.assemble_pseudo_labels(
      solution, lengths, num_snippets=num_snippets), config, static_broadcasted_argnums=(2,))

  def make(loc_config):
    instances = pmap(functools.partial(
        steps.pseudo_label_instances, model=model, loc_config=loc_config,
        frame_coef=config.pseudo.frame_coef, video_coef=config.pseudo.video_coef), config)
    solve = pmap(functools.partial(pl_lib.solve_pseudo_labels,
                                   cfg=dataclasses.replace(pl_config, localization=loc_config)),
                 config)

    def step(params, batch, temperatures, rngs):
      found, stats = instances(params, batch, temperatures, rngs)
      solution, diagnostics = solve(found, batch["valid_length"])
      labels = assemble(solution, batch["valid_length"], batch["features"].shape[-2])
      drops = {k: stats[k] for k in ("proposals_dropped", "instances_dropped")}
      return labels, {**diagnostics, **drops}
    return step
  return GrowingStep(make, pl_config.localization, grow=config.grow_caps, name="pseudo labels")


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
  iterator, total = batches(config, dataset, bucket_sizes=bucket_sizes)
  for batch in progress(iterator, total, f"localize {dataset.split}"):
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
  if metrics.get("proposals_dropped") or metrics.get("instances_dropped"):
    table += (f"\n\nThe caps dropped {metrics['proposals_dropped']} proposals and "
              f"{metrics['instances_dropped']} instances (config.grow_caps=False): not the "
              "authors' post-processing.")
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
  """One copy of ``tree`` per device of ``local_devices(config)``, for pmap.

  The copies go through an identity pmap, so that they carry the sharding of pmap outputs: a
  state whose leaves came sometimes from here and sometimes from a step would otherwise be a new
  input signature to the compiled steps, and every step would be compiled twice.
  """
  return pmap(_identity, config)(jax_utils.replicate(tree, devices=local_devices(config)))


def _identity(tree):
  return tree


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
