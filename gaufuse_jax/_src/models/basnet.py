"""BaS-Net, background suppression (Lee, Uh and Byun, *Background Suppression Network for Weakly-
supervised Temporal Action Localization*, AAAI 2020; the authors' ``BaSNet-pytorch/model.py``,
``train.py``), in Flax: the background-modelling family of GauFuse's Table 5.

A CAS module (Conv1d ``D_in -> D`` and ``D -> D``, kernels 3, LeakyReLU each, dropout 0.7,
Conv1d ``D -> C + 1``, kernel 1, no bias; the last class is background; ``D = 2048``) scores
two branches: the base branch on the features and the suppression branch on ``w_t x_t``, where
the filter module (Conv1d ``D_in -> 512``, LeakyReLU, Conv1d ``512 -> 1``, sigmoid; kernels 1)
gives the foreground weight ``w_t``.
Video scores are the softmax of the top-``k`` mean of each branch's CAS (``k = T // 8`` of each
video's own length; the authors crop every training video to 750 snippets, ``k = 93``). Loss:
binary cross entropy of the base scores against ``[y, 1]`` and of the suppression scores
against ``[y, 0]`` (labels normalised to sum 1), plus ``1e-4 sum_t w_t``. At test the CAS is
the suppression branch's, min-max normalised over time per class.

Padding: the input and every hidden layer are zeroed past ``valid_length`` before a kernel-3
convolution reads them, as PyTorch's zero padding does at the video's end, so the valid part
does not depend on ``T``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn

from gaufuse_jax._src.models.backbone import Backbone
from gaufuse_jax._src.models.backbone import masked
from gaufuse_jax._src.models.backbone import top_k_mean
from gaufuse_jax._src.models.backbone import video_dropout

_TOP_K_FRACTION = 8  # k = T // 8 (``r_act``)


def minmax_norm(cas, mask):
  """Each class's CAS rescaled over the valid snippets of its video (``BaSNet-pytorch/utils.py:
  minmax_norm``): ``clip((x - relu(min)) / (relu(max) - relu(min)), 0, 1)``, the divisor 1 where it
  is not positive; 0 at padded snippets.

  Args:
    cas: float ``[B, T, C']`` logits.
    mask: bool ``[B, T]``.

  Returns:
    float ``[B, T, C']`` in ``[0, 1]``.
  """
  m = mask[..., None]
  top = jax.nn.relu(jnp.max(jnp.where(m, cas, -jnp.inf), axis=1, keepdims=True))
  bottom = jax.nn.relu(jnp.min(jnp.where(m, cas, jnp.inf), axis=1, keepdims=True))
  delta = jnp.where(top - bottom > 0, top - bottom, 1.0)
  return masked(jnp.clip((cas - bottom) / delta, 0.0, 1.0), mask)


class BaSNet(Backbone):
  """BaS-Net (module docstring).

  Attributes:
    filter_dim: hidden width of the filter module (512).
    dropout_rate: dropout in the CAS module (0.7).
    norm_weight: ``alpha`` of the foreground-weight L1 loss (1e-4).

  Examples:
    >>> import jax, jax.numpy as jnp
    >>> model = BaSNet(num_classes=3, feature_dim=8, filter_dim=4)
    >>> x, n = jnp.ones((2, 5, 8)), jnp.array([5, 3])
    >>> params = model.init(jax.random.PRNGKey(0), x, n, train=False)
    >>> out = model.apply(params, x, n, train=False)
    >>> cas, video_scores = model.scores(out, frame_coef=1.0, video_coef=1.0)
    >>> cas.shape, video_scores.shape
    ((2, 5, 4), (2, 4))
  """

  filter_dim: int = 512
  dropout_rate: float = 0.7
  norm_weight: float = 1e-4

  loss_terms = ("base", "suppression", "norm")

  @nn.compact
  def __call__(self, features, valid_length, *, train: bool, dropout_keys=None) -> dict:
    """Forward pass.

    Args:
      features: float32 ``[B, T, D_in]`` snippet features.
      valid_length: int32 ``[B]``.
      train: enables dropout (one draw per branch).
      dropout_keys: optional ``[B]`` PRNG keys, one per video (default: split from the
        ``"dropout"`` rng).

    Returns:
      dict: ``cas_base`` and ``cas_supp`` ``[B, T, C + 1]`` logits, ``score_base`` and
      ``score_supp`` ``[B, C + 1]`` video probabilities, ``weights`` ``[B, T]`` (``w_t``) and the
      snippet ``mask`` ``[B, T]``; padded snippets are 0.

    Raises:
      ValueError: on inconsistent shapes.
    """
    features, valid_length, mask = self.padded_inputs(features, valid_length)
    x = masked(features, mask)
    hidden = nn.leaky_relu(nn.Conv(self.filter_dim, (1,), name="filter_1")(x))
    weights = jnp.where(mask, jax.nn.sigmoid(nn.Conv(1, (1,), name="filter_2")(hidden)[..., 0]),
                        0.0)
    conv_1 = nn.Conv(self.feature_dim, (3,), padding="SAME", name="cas_1")
    conv_2 = nn.Conv(self.feature_dim, (3,), padding="SAME", name="cas_2")
    classify = nn.Conv(self.num_classes + 1, (1,), use_bias=False, name="cas_3")
    if train:
      dropout_keys = self.per_video_keys(dropout_keys, x.shape[0])

    def branch(inputs, index):
      h = masked(nn.leaky_relu(conv_1(inputs)), mask)
      h = nn.leaky_relu(conv_2(h))
      if train:
        keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(dropout_keys, index)
        h = video_dropout(h, keys, self.dropout_rate)
      cas = masked(classify(h), mask)
      return cas, jax.nn.softmax(top_k_mean(cas, valid_length, _TOP_K_FRACTION), axis=-1)

    cas_base, score_base = branch(x, 0)
    cas_supp, score_supp = branch(weights[..., None] * x, 1)
    return {"cas_base": cas_base, "score_base": score_base, "cas_supp": cas_supp,
            "score_supp": score_supp, "weights": weights, "mask": mask}

  def losses(self, outputs, labels, valid_length, hparams):
    """``BCE(score_base, [y, 1]) + BCE(score_supp, [y, 0]) + 1e-4 sum_t w_t`` per video, each
    target normalised to sum 1 (an all-zero target, an empty batch slot's, stays 0), the BCE
    averaged over classes with its logs clamped at -100 as ``torch.nn.BCELoss``
    (``BaSNet-pytorch/train.py:BaS_Net_loss``)."""
    del hparams
    labels = jnp.asarray(labels, jnp.float32)
    ones = jnp.ones_like(labels[:, :1])

    def bce(probs, target):  # an empty batch slot has no label: its target stays 0, not NaN
      target = target / jnp.maximum(jnp.sum(target, axis=-1, keepdims=True), 1.0)
      log_p, log_q = jnp.maximum(jnp.log(probs), -100.0), jnp.maximum(jnp.log1p(-probs), -100.0)
      return -jnp.mean(target * log_p + (1.0 - target) * log_q, axis=-1)

    base = bce(outputs["score_base"], jnp.concatenate([labels, ones], axis=-1))
    supp = bce(outputs["score_supp"], jnp.concatenate([labels, 0.0 * ones], axis=-1))
    del valid_length  # padded snippets have w_t = 0
    norm = jnp.sum(outputs["weights"], axis=1)
    return base + supp + self.norm_weight * norm, {"base": base, "suppression": supp,
                                                   "norm": norm}

  def scores(self, outputs, *, frame_coef: float, video_coef: float):
    """The min-max normalised suppression-branch CAS (``BaSNet-pytorch/test.py`` with
    ``utils.py:minmax_norm``) and its video scores; the background column and score come from
    the base branch (the suppression branch is trained to score no background). One test
    branch, so the coefficients are unused."""
    del frame_coef, video_coef
    mask = outputs["mask"]
    cas = jnp.concatenate([outputs["cas_supp"][..., :-1], outputs["cas_base"][..., -1:]], -1)
    video = jnp.concatenate([outputs["score_supp"][:, :-1], outputs["score_base"][:, -1:]], -1)
    return minmax_norm(cas, mask), video

  def snippet_log_probs(self, outputs):
    """``log_softmax(cas_base)``, float ``[B, T, C + 1]``: the pseudo labels attach to the base
    branch, the one whose background class the video loss trains as present (the suppression
    branch is trained to score none, which background pseudo labels would contradict); the two
    branches share the CAS module, so the labels reach the test-time CAS too."""
    return jax.nn.log_softmax(outputs["cas_base"], axis=-1)

  def attention(self, outputs):
    """The filter's foreground weights ``w_t``, float ``[B, T]``."""
    return outputs["weights"]
