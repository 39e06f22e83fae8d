"""Pure per-batch steps of training and inference, written for ``jax.pmap(axis_name="batch")``.

Every step takes a batch from ``gaufuse_jax.data.iterate_batches`` without its leading device
axis: ``features [B,T,D]``, ``valid_length [B]``, ``labels [B,C]``, ``video_index [B]``
(-1 for padding slots), ``video_mask [B]``.
"""

from __future__ import annotations

import jax
import jax.flatten_util
import jax.numpy as jnp
import optax

from gaufuse_jax import localization
from gaufuse_jax import losses
from gaufuse_jax import memory as memory_lib
from gaufuse_jax import pseudo_labels as pl_lib
from gaufuse_jax import schedule as schedule_lib

AXIS = "batch"


def frame_and_video_scores(outputs, *, frame_coef: float, video_coef: float = 0.6):
  """CAS and video scores from the model outputs (the authors' ``utils/utils.py:fuse_current_pred``,
  ``evaluation/eval.py:ss_eval``).

  Args:
    outputs: the RSKP output dict (branches ``o`` and ``m``).
    frame_coef: weight of branch ``o`` in the frame mix: 0.85 at test, 0.8 for pseudo labels.
    video_coef: weight of ``o`` in the video score mix (0.6 in the reference).

  Returns:
    ``cas [B,T,C+1] = (frame_coef softmax(o) + (1-frame_coef) softmax(m)) * attention_o`` and
    ``video_scores [B,C+1] = video_coef o_ca + (1-video_coef) m_ca``.
  """
  o, m = outputs["o"], outputs["m"]
  probs = (frame_coef * jax.nn.softmax(o["frame_logits"], axis=-1)
           + (1.0 - frame_coef) * jax.nn.softmax(m["frame_logits"], axis=-1))
  cas = probs * o["attention"][..., None]
  video_scores = video_coef * o["video_ca"] + (1.0 - video_coef) * m["video_ca"]
  return cas, video_scores


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


def train_step(state, batch, hparams, *, model, tx, use_memory: bool, pseudo_frame_coef: float):
  """One optimizer step on a padded batch; the objective is the SUM of per-video losses.

  The reference accumulates the gradients of 10 single-video losses (``method.py``); summing the
  per-video losses of a padded batch of 10 is the same objective. Gradients and metrics are
  summed over devices (``lax.psum``), so 2 devices with half the batch each equal 1 device
  with the whole batch.

  Args:
    state: the replica's TrainState.
    batch: one device's batch (see the module docstring).
    hparams: dict of float32 scalars from the epoch plan: ``learning_rate``, ``spl_weight``,
      ``pseudo_weight``, ``label_mode``, ``delta_scale``.
    model: the RSKP module (static).
    tx: the optax optimizer of ``train_state.make_optimizer`` (static).
    use_memory: whether the memory branch ``r`` is on (static: it changes the graph).
    pseudo_frame_coef: weight of branch ``o`` in the pseudo-label loss, ``1 -`` it of ``m``
      (``config.pseudo.frame_coef``, 0.8: the authors' ``utils/utils.py:compute_distloss``).

  Returns:
    ``(new_state, metrics)``; metrics are device-summed: ``loss`` (sum over videos),
    ``num_videos`` and the per-term sums.
  """
  rng = jax.random.fold_in(jax.random.fold_in(state.rng, state.step), jax.lax.axis_index(AXIS))
  mask = batch["video_mask"].astype(jnp.float32)
  pseudo = _batch_pseudo_labels(state.generations, batch, hparams["label_mode"],
                                hparams["delta_scale"])
  mem_tokens = mem_mask = None
  if use_memory:
    mem_tokens, mem_mask = memory_lib.read_memory(state.memory, batch["labels"])

  def loss_fn(params):
    outputs = model.apply({"params": params}, batch["features"], batch["valid_length"],
                          mem_tokens, mem_mask, train=True, rngs={"dropout": rng})
    per_video, terms = losses.rskp_losses(outputs, batch["labels"], batch["valid_length"],
                                          spl_weight=hparams["spl_weight"])
    valid = jnp.arange(batch["features"].shape[1])[None, :] < batch["valid_length"][:, None]
    pseudo_loss = (
        pseudo_frame_coef * pl_lib.pseudo_label_loss(outputs["o"]["frame_logits"], pseudo, valid)
        + (1.0 - pseudo_frame_coef) * pl_lib.pseudo_label_loss(outputs["m"]["frame_logits"],
                                                               pseudo, valid))
    per_video = per_video + hparams["pseudo_weight"] * pseudo_loss
    terms = dict(terms, pseudo=pseudo_loss)
    sums = {k: jnp.sum(v * mask) for k, v in terms.items()}
    return jnp.sum(per_video * mask), (outputs, sums)

  (loss, (outputs, sums)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
  grads = _psum_tree(grads)
  lr = jnp.asarray(hparams["learning_rate"], state.opt_state.hyperparams["learning_rate"].dtype)
  opt_state = state.opt_state._replace(
      hyperparams=dict(state.opt_state.hyperparams, learning_rate=lr))
  updates, opt_state = tx.update(grads, opt_state, state.params)
  new_memory = state.memory
  if use_memory:
    new_memory = _gather_and_update_memory(state.memory, outputs, batch)
  new_state = state.replace(step=state.step + 1, params=optax.apply_updates(state.params, updates),
                            opt_state=opt_state, memory=new_memory)
  metrics = _psum_tree(dict(sums, loss=loss, num_videos=jnp.sum(mask)))
  return new_state, metrics


def inference_outputs(params, batch, *, model, rng=None):
  """The model's outputs without memory; dropout on only when ``rng`` is given."""
  rngs = None if rng is None else {"dropout": rng}
  return model.apply({"params": params}, batch["features"], batch["valid_length"],
                     train=rng is not None, rngs=rngs)


def memory_init_step(bank, params, batch, *, model):
  """Adds the batch's EM tokens to the memory bank of their labelled classes (the authors'
  ``ft_eval`` at the end of the warm-up, model in eval mode)."""
  outputs = inference_outputs(params, batch, model=model)
  return _gather_and_update_memory(bank, outputs, batch)


def pseudo_label_step(params, batch, temperature, rng, *, model, pl_config, frame_coef,
                      video_coef):
  """Pseudo labels ``[B,T,C+1]`` of a batch from a frozen teacher (paper §3.2).

  ``temperature`` is the generation's fusion temperature (a traced scalar); ``rng`` turns teacher
  dropout on (the authors' teacher is never put in eval mode); pass None for the deterministic
  default.
  """
  outputs = inference_outputs(params, batch, model=model, rng=rng)
  cas, video_scores = frame_and_video_scores(outputs, frame_coef=frame_coef, video_coef=video_coef)
  labels, diagnostics = pl_lib.generate_pseudo_labels(cas, video_scores, batch["valid_length"],
                                                      pl_config, temperature)
  return labels, diagnostics


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
  cas, video_scores = frame_and_video_scores(outputs, frame_coef=frame_coef, video_coef=video_coef)
  instances, stats = localization.localize(cas[..., :-1], video_scores[..., :-1],
                                           batch["valid_length"], loc_config)
  drops = {k: stats[k] for k in ("proposals_dropped", "instances_dropped")}
  return instances, video_scores, drops
