"""Pure per-batch steps of training and inference, written for ``jax.pmap(axis_name="batch")``.

Every step takes a batch from ``data.batching.iterate_batches`` (or one micro-batch of
``iterate_micro_batches``) without its leading device axis: ``features [B,T,D]``,
``valid_length [B]``, ``labels [B,C]``, ``video_index [B]``
(-1 for padding slots), ``video_mask [B]``.
"""

from __future__ import annotations

import jax
import jax.flatten_util
import jax.numpy as jnp
import optax

from gaufuse_jax._src import localization
from gaufuse_jax._src import memory as memory_lib
from gaufuse_jax._src import pseudo_labels as pl_lib
from gaufuse_jax._src import schedule as schedule_lib

AXIS = "batch"


def _psum_tree(tree):
  """``lax.psum`` of a whole (single-dtype) pytree as one all-reduce of its flattened leaves."""
  flat, unravel = jax.flatten_util.ravel_pytree(tree)
  return unravel(jax.lax.psum(flat, AXIS))


def _batch_pseudo_labels(generations, batch, label_mode, delta_scale):
  """The pseudo label of each video in the batch: none, the latest, or the Δ label (eq. 8)."""
  t_pad = batch["features"].shape[1]
  window = lambda g, i, o: jax.lax.dynamic_slice_in_dim(g[i], o, t_pad, axis=0)
  rows = jax.vmap(window, in_axes=(None, 0, 0))  # each video's (cropped) window of snippets
  idx = jnp.maximum(batch["video_index"], 0)
  latest = rows(generations[0], idx, batch["offset"])
  previous = rows(generations[1], idx, batch["offset"])
  delta = pl_lib.delta_pseudo_labels(latest, previous, delta_scale)
  labels = jnp.where(label_mode == schedule_lib.LABEL_DELTA, delta, latest)
  return jnp.where(label_mode == schedule_lib.LABEL_NONE, 0.0, labels)


def _gather_and_update_memory(bank, outputs, batch):
  """Gathers every replica's tokens so each applies the same memory update."""
  gather = lambda x: jax.lax.all_gather(x, AXIS).reshape((-1,) + x.shape[1:])
  tokens = jax.lax.stop_gradient(outputs["tokens"])
  scores = jax.lax.stop_gradient(outputs["token_scores"])
  return memory_lib.update_memory(bank, gather(tokens), gather(scores), gather(batch["labels"]),
                                  gather(batch["video_mask"]))


def _metric_names(model):
  """The metric sums of a training step: the model's loss terms, the pseudo-label loss, the total
  ``loss`` and the number of videos."""
  return ("loss", "num_videos", *model.loss_terms, "pseudo")


def video_keys(key, video_index):
  """One PRNG key per video, ``fold_in(key, video_index)``: a video's dropout mask depends on the
  step and the video only, not on the batch, the padding or the device that holds it."""
  return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, jnp.maximum(video_index, 0))


def init_accumulator(state, *, model):
  """The empty gradient accumulator of one optimizer step (see :func:`accumulate_step`):
  zero gradients, zero metric sums and the step's pending memory bank (the current one)."""
  zeros = jax.tree_util.tree_map(jnp.zeros_like, state.params)
  sums = {k: jnp.zeros((), jnp.float32) for k in _metric_names(model)}
  return {"grads": zeros, "sums": sums, "memory": state.memory}


def accumulate_step(state, acc, batch, hparams, *, model, use_memory: bool,
                    pseudo_frame_coef: float, max_labels: int | None = None):
  """Adds the gradient of the SUM of a (micro-)batch's per-video losses to ``acc``.

  The reference accumulates the gradients of 10 single-video losses before one Adam step
  (``method.py``); an optimizer step here is any split of its videos into micro-batches, each
  padded to its own length, passed through this function, then :func:`apply_step`. Every video
  term is independent of the others (dropout keys from :func:`video_keys`, memory read from the
  step's starting bank), so the split does not change the step: one micro-batch of all videos
  padded to the longest (the plain padded batch) gives the same parameters.

  Args:
    state: the replica's TrainState (unchanged).
    acc: the accumulator of :func:`init_accumulator` (donate it).
    batch: one device's micro-batch (see the module docstring).
    hparams: dict of float32 scalars from the epoch plan: ``learning_rate``, ``spl_weight``,
      ``pseudo_weight``, ``label_mode``, ``delta_scale``.
    model: the backbone (``models.backbone.Backbone``, static).
    use_memory: whether RSKP's memory branch ``r`` is on (static: it changes the graph); the
      batch's EM tokens are then inserted in the pending bank (top-``L`` of a union, so the order
      of micro-batches does not matter). Only for a model with ``uses_memory``.
    pseudo_frame_coef: weight of the model's first branch in the pseudo-label loss
      (``config.pseudo.frame_coef``, 0.8: RSKP's ``o`` vs ``m``, the authors'
      ``utils/utils.py:compute_distloss``; see ``Backbone.pseudo_label_loss``).
    max_labels: the most labels of a training video (static): the memory branch then walks over
      only the slots of as many classes (``memory.read_memory``); None walks over all of them.

  Returns:
    The new accumulator: this device's gradient and metric sums added (not yet summed over
    devices), and the pending memory bank (same on every device).
  """
  keys = video_keys(jax.random.fold_in(state.rng, state.step), batch["video_index"])
  mask = batch["video_mask"].astype(jnp.float32)
  pseudo = _batch_pseudo_labels(state.generations, batch, hparams["label_mode"],
                                hparams["delta_scale"])
  memory = {}
  if use_memory:
    memory = dict(zip(("memory_tokens", "memory_mask"), memory_lib.read_memory(
        state.memory, batch["labels"], max_labels=max_labels)))

  def loss_fn(params):
    outputs = model.apply({"params": params}, batch["features"], batch["valid_length"],
                          train=True, dropout_keys=keys, **memory)
    per_video, terms = model.losses(outputs, batch["labels"], batch["valid_length"], hparams)
    valid = jnp.arange(batch["features"].shape[1])[None, :] < batch["valid_length"][:, None]
    pseudo_loss = model.pseudo_label_loss(outputs, pseudo, valid, frame_coef=pseudo_frame_coef)
    per_video = per_video + hparams["pseudo_weight"] * pseudo_loss
    terms = {k: terms[k] for k in model.loss_terms} | {"pseudo": pseudo_loss}
    sums = {k: jnp.sum(v * mask) for k, v in terms.items()}
    return jnp.sum(per_video * mask), (outputs, sums)

  (loss, (outputs, sums)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  sums = dict(sums, loss=loss, num_videos=jnp.sum(mask))
  pending = acc["memory"]
  if use_memory:
    pending = _gather_and_update_memory(pending, outputs, batch)
  add = lambda a, b: jax.tree_util.tree_map(jnp.add, a, b)
  return {"grads": add(acc["grads"], grads), "sums": add(acc["sums"], sums), "memory": pending}


def apply_step(state, acc, hparams, *, tx):
  """One optimizer step from an accumulated gradient (see :func:`accumulate_step`).

  Gradients and metrics are summed over devices (``lax.psum``), so 2 devices with half the
  videos each equal 1 device with all of them.

  Args:
    state: the replica's TrainState.
    acc: the step's accumulator.
    hparams: as in :func:`accumulate_step` (``learning_rate`` is used).
    tx: the optax optimizer of ``train_state.make_optimizer`` (static).

  Returns:
    ``(new_state, metrics)``; metrics are device-summed: ``loss`` (sum over videos),
    ``num_videos`` and the per-term sums.
  """
  grads = _psum_tree(acc["grads"])
  lr = jnp.asarray(hparams["learning_rate"], state.opt_state.hyperparams["learning_rate"].dtype)
  opt_state = state.opt_state._replace(
      hyperparams=dict(state.opt_state.hyperparams, learning_rate=lr))
  updates, opt_state = tx.update(grads, opt_state, state.params)
  new_state = state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                            opt_state=opt_state, memory=acc["memory"])
  return new_state, _psum_tree(acc["sums"])


def train_step(state, batch, hparams, *, model, tx, use_memory: bool, pseudo_frame_coef: float,
               max_labels: int | None = None):
  """One optimizer step on one padded batch: :func:`accumulate_step` then :func:`apply_step`.

  Returns:
    ``(new_state, metrics)`` as :func:`apply_step`.
  """
  acc = accumulate_step(state, init_accumulator(state, model=model), batch, hparams, model=model,
                        use_memory=use_memory, pseudo_frame_coef=pseudo_frame_coef,
                        max_labels=max_labels)
  return apply_step(state, acc, hparams, tx=tx)


def inference_outputs(params, batch, *, model, rng=None):
  """The model's outputs without memory; dropout on only when ``rng`` is given (then each video
  draws from ``video_keys(rng, video_index)``, whatever batch it is in)."""
  keys = None if rng is None else video_keys(rng, batch["video_index"])
  return model.apply({"params": params}, batch["features"], batch["valid_length"],
                     train=rng is not None, dropout_keys=keys)


def memory_init_step(bank, params, batch, *, model):
  """Adds the batch's EM tokens to the memory bank of their labelled classes (the authors'
  ``ft_eval`` at the end of the warm-up, model in eval mode)."""
  outputs = inference_outputs(params, batch, model=model)
  return _gather_and_update_memory(bank, outputs, batch)


def pseudo_label_instances(params, batch, temperature, rng, *, model,
                           loc_config: localization.LocalizationConfig, frame_coef, video_coef):
  """The fused instances that become a batch's pseudo labels, from a frozen teacher (paper §3.2):
  ``localization.localize`` of every class, background included, at the generation's fusion
  ``temperature`` (a traced scalar). Then ``pseudo_labels.solve_pseudo_labels`` and
  ``assemble_pseudo_labels`` (``generate_pseudo_labels`` is the three together).

  ``rng`` turns teacher dropout on (the authors' teacher is never put in eval mode), one key per
  video from :func:`video_keys`; pass None for the deterministic default.

  Returns:
    ``(instances, stats)`` of ``localization.localize`` (leaves ``[B, C+1, K]``).
  """
  outputs = inference_outputs(params, batch, model=model, rng=rng)
  cas, video_scores = model.scores(outputs, frame_coef=frame_coef, video_coef=video_coef)
  return localization.localize(cas, video_scores, batch["valid_length"], loc_config, temperature)


def eval_step(params, batch, *, model, loc_config: localization.LocalizationConfig,
              frame_coef: float, video_coef: float):
  """Test-time detections of a batch, all on device (``evaluation/detectionMAP.py:getActLoc``;
  background never scored).

  Returns:
    ``(instances, video_scores, stats)``: ``suppression.Detections`` with leaves ``[B, C, K]``
    (segments in snippets), the video scores ``[B, C+1]`` and the ``[B, C]`` int32
    ``proposals_dropped`` and ``instances_dropped`` of ``localization.localize``.
  """
  outputs = inference_outputs(params, batch, model=model)
  cas, video_scores = model.scores(outputs, frame_coef=frame_coef, video_coef=video_coef)
  instances, stats = localization.localize(cas[..., :-1], video_scores[..., :-1],
                                           batch["valid_length"], loc_config)
  drops = {k: stats[k] for k in ("proposals_dropped", "instances_dropped")}
  return instances, video_scores, drops
