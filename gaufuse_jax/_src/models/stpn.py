"""STPN with an embedding layer (Nguyen et al., *Weakly Supervised Action Localization by Sparse
Temporal Pooling Network*, CVPR 2018; the "STPN + embedding" row of GauFuse's Table 5), in Flax.

An embedding (Dense + ReLU + dropout) feeds an attention module (Dense 256, ReLU, Dense 1,
sigmoid: ``lambda_t``, paper §3.1) and a linear classifier ``s_t = W x_t + b``. The video feature
is the attention-weighted mean of the snippets (eq. 1, normalised by ``sum_t lambda_t`` so that it
does not grow with the length), classified with a sigmoid; the loss is multi-label binary cross
entropy plus ``beta ||lambda||_1`` (eq. 2-3, ``beta = 1e-4``). The test-time CAS is the weighted
T-CAM ``psi_t^c = lambda_t sigmoid(s_t^c)`` (eq. 4).

GauFuse needs a background class: here it is ``1 - lambda_t`` (snippets the attention rejects),
with the video score ``1 - mean_t lambda_t``, and the pseudo labels attach to the snippet
distribution ``p_t = [lambda_t softmax(s_t), 1 - lambda_t]`` over ``C + 1`` classes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn

from gaufuse_jax._src.models.backbone import Backbone
from gaufuse_jax._src.models.backbone import masked
from gaufuse_jax._src.models.backbone import video_dropout

_EPS = 1e-6


class STPN(Backbone):
  """STPN + embedding (module docstring).

  Attributes:
    attention_dim: hidden width of the attention module (256 in the paper).
    dropout_rate: dropout after the embedding.
    sparsity_weight: ``beta`` of the attention sparsity loss (1e-4 in the paper).

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> model = STPN(num_classes=3, feature_dim=8)
    >>> x, n = jnp.ones((2, 5, 8)), jnp.array([5, 3])
    >>> params = model.init(jax.random.PRNGKey(0), x, n, train=False)
    >>> out = model.apply(params, x, n, train=False)
    >>> cas, video_scores = model.scores(out, frame_coef=1.0, video_coef=1.0)
    >>> cas.shape, video_scores.shape
    ((2, 5, 4), (2, 4))
  """

  attention_dim: int = 256
  dropout_rate: float = 0.5
  sparsity_weight: float = 1e-4

  loss_terms = ("classification", "sparsity")

  @nn.compact
  def __call__(self, features, valid_length, *, train: bool, dropout_keys=None) -> dict:
    """Forward pass.

    Args:
      features: float32 ``[B, T, D_in]`` snippet features.
      valid_length: int32 ``[B]``.
      train: enables dropout.
      dropout_keys: optional ``[B]`` PRNG keys, one per video (default: split from the
        ``"dropout"`` rng).

    Returns:
      dict: ``snippet_logits`` ``[B, T, C]`` (``s_t``), ``attention`` ``[B, T]`` (``lambda_t``)
      ``video_logits`` ``[B, C]`` and the snippet ``mask`` ``[B, T]``; padded snippets are 0.

    Raises:
      ValueError: on inconsistent shapes.
    """
    features, valid_length, mask = self.padded_inputs(features, valid_length)
    x = nn.relu(nn.Dense(self.feature_dim, name="embedding")(features))
    if train:
      x = video_dropout(x, self.per_video_keys(dropout_keys, x.shape[0]), self.dropout_rate)
    x = masked(x, mask)
    hidden = nn.relu(nn.Dense(self.attention_dim, name="attention_hidden")(x))
    attention = jnp.where(
        mask, jax.nn.sigmoid(nn.Dense(1, name="attention_out")(hidden)[..., 0]), 0.0)
    classifier = nn.Dense(self.num_classes, name="classifier")
    pooled = (jnp.einsum("bt,btd->bd", attention, x)
              / (jnp.sum(attention, axis=1, keepdims=True) + _EPS))
    return {"snippet_logits": masked(classifier(x), mask), "attention": attention,
            "video_logits": classifier(pooled), "mask": mask}

  def losses(self, outputs, labels, valid_length, hparams):
    """``BCE(sigmoid(video_logits), labels)`` summed over classes plus ``sparsity_weight *
    sum_t lambda_t`` (paper eq. 2-3), per video."""
    del valid_length, hparams
    logits, labels = outputs["video_logits"], jnp.asarray(labels, jnp.float32)
    bce = -jnp.sum(labels * jax.nn.log_sigmoid(logits) + (1.0 - labels) * jax.nn.log_sigmoid(
        -logits), axis=-1)
    sparsity = jnp.sum(outputs["attention"], axis=1)
    loss = bce + self.sparsity_weight * sparsity
    return loss, {"classification": bce, "sparsity": sparsity}

  def scores(self, outputs, *, frame_coef: float, video_coef: float):
    """``[lambda_t sigmoid(s_t), 1 - lambda_t]`` and ``[sigmoid(video_logits), 1 - mean_t
    lambda_t]`` (the weighted T-CAM of eq. 4, background appended; one branch, so the
    coefficients are unused)."""
    del frame_coef, video_coef
    attention = outputs["attention"]
    valid = outputs["mask"]
    cas = attention[..., None] * jax.nn.sigmoid(outputs["snippet_logits"])
    background = jnp.where(valid, 1.0 - attention, 0.0)
    count = jnp.maximum(jnp.sum(valid, axis=1), 1)
    video_bg = 1.0 - jnp.sum(attention, axis=1) / count
    return (jnp.concatenate([cas, background[..., None]], axis=-1),
            jnp.concatenate([jax.nn.sigmoid(outputs["video_logits"]), video_bg[:, None]], -1))

  def snippet_log_probs(self, outputs):
    """``log [lambda_t softmax(s_t), 1 - lambda_t]``, float ``[B, T, C + 1]``."""
    attention = jnp.clip(outputs["attention"], _EPS, 1.0 - _EPS)[..., None]
    fore = jnp.log(attention) + jax.nn.log_softmax(outputs["snippet_logits"], axis=-1)
    return jnp.concatenate([fore, jnp.log1p(-attention)], axis=-1)

  def attention(self, outputs):
    """``lambda_t``, float ``[B, T]``."""
    return outputs["attention"]
