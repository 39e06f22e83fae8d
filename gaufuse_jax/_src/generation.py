"""The method's dataset-wide phases between training epochs: a pseudo-label generation over all
training videos (paper §3.2, the authors' ``utils/utils.py:fuse_current_pred`` over the training
set) and the initialisation of RSKP's memory bank (the authors' ``ft_eval`` after the warm-up).

Both run the batches of ``input_pipeline.batches`` (videos sorted by length) through pmapped steps
of ``programs`` / ``steps``; with several processes each labels its shard and the results are
gathered, so every process returns the whole set.
"""

from __future__ import annotations

import jax
from jax.experimental import multihost_utils
import numpy as np

from gaufuse_jax._src import devices
from gaufuse_jax._src import input_pipeline


def generate_dataset_pseudo_labels(config, p_pseudo, params, dataset, *, epoch: int,
                                   temperature: float, bucket_sizes, num_snippets: int):
  """One pseudo-label generation over every video of ``dataset`` (frozen teacher ``params``).

  Args:
    config: the run's config (``batch_size``, ``seed``, ``pseudo.teacher_dropout``, devices).
    p_pseudo: ``programs.make_pseudo_label_step(config, model)``.
    params: replicated teacher parameters.
    dataset: ``VideoDataset`` of V videos.
    epoch: the generation's epoch (seeds the teacher's dropout keys when it is on).
    temperature: the generation's fusion temperature, a finite number > 0.
    bucket_sizes: padded lengths of the batches (``input_pipeline.bucket_sizes``).
    num_snippets: snippets ``T`` of the returned labels (>= every video's length).

  Returns:
    ``(labels, stats)``: float32 ``[V, T, C+1]`` numpy labels (0 past each video), and
    ``{"instances": fused instances, "lp_fallbacks": LPs relaxed or failed,
    "labelled_snippets": (video, snippet, class) labels > 0}`` (ints) plus the caps' drop counts
    of ``p_pseudo.take_dropped()``.

  Raises:
    ValueError: a ``temperature`` that is not a finite number > 0 (checked here: in the
      compiled step it is a traced value, which cannot raise).
  """
  if not (np.isfinite(temperature) and temperature > 0):
    raise ValueError(f"pseudo-label generation at epoch {epoch}: the fusion temperature must be "
                     f"a finite number > 0 (config.schedule.generation_temperatures), got "
                     f"{temperature}")
  rngs = None  # teacher dropout: one key per video (steps.video_keys)
  if config.pseudo.teacher_dropout:
    rngs = devices.replicate(
        jax.random.fold_in(jax.random.PRNGKey(config.seed), 1_000_003 + epoch), config)
  temperatures = np.full((len(devices.local_devices(config)),), temperature, np.float32)
  labels = np.zeros((len(dataset), num_snippets, dataset.num_classes + 1), np.float32)
  counts = np.zeros(2, np.int64)  # fused instances, LP fallbacks
  batches, total = input_pipeline.batches(config, dataset, bucket_sizes=bucket_sizes)
  for batch in input_pipeline.progress(batches, total, f"pseudo labels @{epoch}"):
    batch_labels, diagnostics = p_pseudo(params, batch, temperatures, rngs)
    index = batch["video_index"].reshape(-1)
    batch_labels = batch_labels.reshape((-1,) + batch_labels.shape[2:])
    for j in np.flatnonzero(index >= 0):
      labels[index[j], :batch_labels.shape[1]] = batch_labels[j]
    counts += [np.sum(diagnostics["num_instances"]), np.sum(diagnostics["lp_fallbacks"])]
  if jax.process_count() > 1:  # each host labelled (and counted) its own shard of the videos
    labels, counts = multihost_utils.process_allgather((labels, counts))
    labels, counts = labels.sum(0), counts.sum(0)
  stats = {"instances": int(counts[0]), "lp_fallbacks": int(counts[1]),
           "labelled_snippets": int(np.count_nonzero(labels))}
  return labels, {**stats, **p_pseudo.take_dropped()}


def fill_memory_bank(config, p_memory_init, bank, params, dataset, *, bucket_sizes):
  """The memory bank after adding the EM tokens of every video of ``dataset`` to the slots of
  its labelled classes (``steps.memory_init_step``, pmapped as ``p_memory_init``; ``bank`` and
  ``params`` replicated)."""
  batches, total = input_pipeline.batches(config, dataset, bucket_sizes=bucket_sizes)
  for batch in input_pipeline.progress(batches, total, "memory init"):
    bank = jax.block_until_ready(p_memory_init(bank, params, batch))
  return bank
