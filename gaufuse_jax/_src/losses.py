"""RSKP training losses, per video (the authors' ``model/losses.py``, ``method.py``).

All losses return one value per video (``[B]``): the reference trains on one video at a time and
sums the losses of 10 videos before each optimiser step, so the training step sums these over
the valid videos of a padded batch. Padded snippets (``t >= valid_length``) never contribute.
The pseudo-label (distillation) loss lives in ``gaufuse_jax.pseudo_labels``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from gaufuse_jax._src.models.backbone import snippet_mask

FORE_WEIGHT = 1.0
BACK_WEIGHT = 0.2
ATTENTION_WEIGHT = 0.1
MEMORY_BRANCH_WEIGHT = 0.5  # weight of the "r" branch inside the fore / back losses
SELF_LABEL_TEMPERATURE = 0.2
SELF_LABEL_MEMORY_MIX = 0.2  # self-label target 0.2 * r + 0.8 * m once the memory is used
ATTENTION_TOP_FRACTION = 8  # k = max(valid_length // 8, 1)


def nce_loss(probs, targets):
  """Normalised cross entropy ``-sum_c (y_c / (sum y + 1e-8)) log p_c``
  (``NormalizedCrossEntropy``).

  Args:
    probs: float ``[..., C + 1]`` class probabilities.
    targets: float ``[..., C + 1]`` non-negative (multi-hot) targets; all-zero targets give 0.

  Returns:
    float ``[...]``.
  """
  weights = targets / (jnp.sum(targets, axis=-1, keepdims=True) + 1e-8)
  log_p = jnp.log(jnp.maximum(probs, jnp.finfo(probs.dtype).tiny))
  return -jnp.sum(weights * log_p, axis=-1)


def attention_loss(attention, valid_length):
  """Mean of the bottom-k minus mean of the top-k attention over valid snippets (``AttLoss(8)``).

  Args:
    attention: float ``[B, T]`` in ``[0, 1]``.
    valid_length: int ``[B]``; ``k = max(valid_length // 8, 1)``.

  Returns:
    float ``[B]`` in ``[-1, 1]``; 0 for a video with no valid snippet.
  """
  valid_length = jnp.asarray(valid_length)
  mask = snippet_mask(valid_length, attention.shape[1])
  k = jnp.maximum(valid_length // ATTENTION_TOP_FRACTION, 1)
  rank = jnp.arange(attention.shape[1])[None, :]
  take = (rank < k[:, None]) & (rank < valid_length[:, None])
  # Padding sorts after every valid value (attention lies in [0, 1]).
  top = -jnp.sort(-jnp.where(mask, attention, -1.0), axis=1)
  bottom = jnp.sort(jnp.where(mask, attention, 2.0), axis=1)
  mean_top = jnp.sum(jnp.where(take, top, 0.0), axis=1) / k
  mean_bottom = jnp.sum(jnp.where(take, bottom, 0.0), axis=1) / k
  return mean_bottom - mean_top


def self_label_loss(logits, target_logits, valid_length,
                    temperature: float = SELF_LABEL_TEMPERATURE):
  """Self-label cross entropy (``CategoryCrossEntropy(T=0.2)``), mean over valid snippets.

  ``-mean_t sum_c softmax(target / T)_c * log_softmax(logits / T)_c`` with the target under
  ``stop_gradient``.

  Args:
    logits: float ``[B, T, C + 1]`` frame logits being trained (the ``o`` branch).
    target_logits: float ``[B, T, C + 1]`` target frame logits.
    valid_length: int ``[B]``.
    temperature: softmax temperature (0.2).

  Returns:
    float ``[B]``; 0 for a video with no valid snippet.
  """
  valid_length = jnp.asarray(valid_length)
  mask = snippet_mask(valid_length, logits.shape[1])
  target = jax.nn.softmax(jax.lax.stop_gradient(target_logits) / temperature, axis=-1)
  ce = -jnp.sum(target * jax.nn.log_softmax(logits / temperature, axis=-1), axis=-1)
  return jnp.sum(jnp.where(mask, ce, 0.0), axis=1) / jnp.maximum(valid_length, 1)


def rskp_losses(outputs, labels, valid_length, *, spl_weight):
  """RSKP objective per video, without the pseudo-label loss (the authors' ``method.py``).

  ``loss = fore + 0.2 back + 0.1 attention + spl_weight * self_label`` with
  ``fore = NCE(o.video_ca, f) + NCE(m.video_ca, f) [+ 0.5 NCE(r.video_ca, f)]``, ``f = [y, 0]``;
  ``back`` the same on ``video_cw`` with ``b = [y, 1]``; ``attention`` on ``o.attention``;
  ``self_label`` of ``o.frame_logits`` against ``m.frame_logits`` (or ``0.2 r + 0.8 m`` when the
  ``r`` branch is present).

  Args:
    outputs: the dict returned by ``RSKP.__call__``.
    labels: float ``[B, C]`` multi-hot video labels.
    valid_length: int ``[B]``.
    spl_weight: scalar self-label weight (1, 0.5 after the warm-up, 1 with pseudo labels).

  Returns:
    ``(loss [B], metrics)`` with ``metrics`` a dict of ``[B]`` arrays: ``fore``, ``back``,
    ``attention``, ``self_label`` (unweighted terms) and ``loss``.

  Raises:
    ValueError: when ``labels`` does not have ``C`` columns for ``C + 1`` model classes.
  """
  labels = jnp.asarray(labels, jnp.float32)
  num_classes = outputs["o"]["video_ca"].shape[-1] - 1
  if labels.ndim != 2 or labels.shape[1] != num_classes:
    raise ValueError(f"rskp_losses: labels must have shape [B, {num_classes}], got {labels.shape}")
  zeros = jnp.zeros_like(labels[:, :1])
  fore_target = jnp.concatenate([labels, zeros], axis=1)
  back_target = jnp.concatenate([labels, zeros + 1.0], axis=1)

  branch_weights = {"o": 1.0, "m": 1.0}
  if "r" in outputs:
    branch_weights["r"] = MEMORY_BRANCH_WEIGHT
  fore = sum(w * nce_loss(outputs[k]["video_ca"], fore_target) for k, w in branch_weights.items())
  back = sum(w * nce_loss(outputs[k]["video_cw"], back_target) for k, w in branch_weights.items())
  att = attention_loss(outputs["o"]["attention"], valid_length)

  target = outputs["m"]["frame_logits"]
  if "r" in outputs:
    mix = SELF_LABEL_MEMORY_MIX
    target = mix * outputs["r"]["frame_logits"] + (1.0 - mix) * target
  spl = self_label_loss(outputs["o"]["frame_logits"], target, valid_length)

  loss = FORE_WEIGHT * fore + BACK_WEIGHT * back + ATTENTION_WEIGHT * att + spl_weight * spl
  metrics = {"fore": fore, "back": back, "attention": att, "self_label": spl, "loss": loss}
  return loss, metrics
