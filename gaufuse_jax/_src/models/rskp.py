"""RSKP backbone (Huang et al., CVPR 2022) as used by GauFuse, in Flax linen.

Reference: the authors' ``model/main_branch.py`` (of both
repositories). The model embeds the snippet features, refines ``K`` learned representative tokens
by EM, propagates the tokens' knowledge to the snippets with a random walk, and scores every
branch with cosine classifiers against ``C + 1`` class centres (the last one is background).

Cost: linear in the number of snippets T. The walk is solved exactly through a ``[K, K]`` system
(Woodbury) instead of the authors' ``[T, T]`` one, and the walked branches stay factored
(`WalkedFeatures`) through their heads.

Padding: videos are batched as ``[B, T, ...]`` with ``valid_length [B]``. Every padded snippet
(``t >= valid_length``) is zeroed after the embedding and masked out of every sum over time and
every token assignment (so out of the walk), so the valid part of each output does not depend on
``T``. Padded entries of ``frame_logits`` and ``attention`` are 0. Dropout draws one key per
video and does not depend on ``T`` either (``backbone.video_dropout``).
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from flax import linen as nn

from gaufuse_jax._src import losses as losses_lib
from gaufuse_jax._src import pseudo_labels as pl_lib
from gaufuse_jax._src.models import snippets as snippets_lib
from gaufuse_jax._src.models.backbone import Backbone
from gaufuse_jax._src.models.backbone import check_shape
from gaufuse_jax._src.models.backbone import video_dropout

# Epsilons of the authors' code (``model/main_branch.py``): L2 normalisation, EM / walk assignment
# normalisation over time, attention normalisation over time.
_NORM_EPS = 1e-9
_ASSIGN_EPS = 1e-9
_ATTENTION_EPS = 1e-5


def _inverse_norm(sq):
  """``1 / (sqrt(sq) + 1e-9)`` with a finite gradient at ``sq = 0``."""
  return 1.0 / (jnp.sqrt(jnp.maximum(sq, 1e-30)) + _NORM_EPS)


def l2_normalize(x):
  """``x / (||x||_2 + 1e-9)`` over the last axis (the authors' ``calculate_l1_norm``, which is L2).

  The norm is computed so that an all-zero vector (padding, dead ReLUs) maps to 0 with a finite
  gradient.
  """
  return x * _inverse_norm(jnp.sum(jnp.square(x), axis=-1, keepdims=True))


def masked_softmax(logits, mask, axis: int = -1):
  """Softmax of ``logits`` over ``axis`` restricted to ``mask``; 0 where masked.

  An all-masked slice gives all zeros (never NaN).
  """
  big_neg = jnp.finfo(logits.dtype).min
  top = jax.lax.stop_gradient(jnp.max(jnp.where(mask, logits, big_neg), axis=axis, keepdims=True))
  e = jnp.where(mask, jnp.exp(jnp.where(mask, logits - top, 0.0)), 0.0)
  return e / jnp.maximum(jnp.sum(e, axis=axis, keepdims=True), jnp.finfo(logits.dtype).tiny)


class WalkedFeatures(NamedTuple):
  """Snippet features ``x_tilde = scale * (x + z^T q)`` of a walked branch, kept factored.

  ``x_tilde`` is never formed by the model: every quantity a prediction head needs (projections
  on centres, norms, pooling over time) is computed from products of ``x`` with small matrices,
  so the whole walked branch costs O(T K D) and no elementwise pass over a ``[T, D]`` array.

  Attributes:
    x: the snippet embeddings ``[B, T, D]`` (``snippets.Snippets``).
    z: float ``[B, K, T]`` token assignment.
    q: float ``[B, K, D]`` token-side factor.
    scale: ``1 - w``.
  """
  x: snippets_lib.Snippets
  z: jax.Array
  q: jax.Array
  scale: float

  def dense(self):
    """The features as an array ``[B, T, D]``."""
    return self.scale * (self.x.array() + jnp.einsum("bkt,bkd->btd", self.z, self.q))


def _project(h, w):
  """``h @ w^T``: ``[B, T, M]`` for features ``h`` (array or `WalkedFeatures`), ``w [M, D]``."""
  if isinstance(h, WalkedFeatures):
    low = jnp.einsum("bkt,bkm->btm", h.z, jnp.einsum("bkd,md->bkm", h.q, w))
    return h.scale * (h.x.project(w) + low)
  return snippets_lib.as_snippets(h).project(w)


def _squared_norm(h):
  """``||h_t||^2``: ``[B, T]`` (expanded for `WalkedFeatures`; all terms are sums of products of
  non-negative ReLU features and token weights in RSKP, so no cancellation)."""
  if isinstance(h, WalkedFeatures):
    xq = jnp.swapaxes(h.x.project(h.q), 1, 2)  # [B, K, T]
    gram = jnp.einsum("bkd,bjd->bkj", h.q, h.q)
    zz = jnp.einsum("bkj,bjt->bkt", gram, h.z)
    return h.scale**2 * (h.x.squared_norm() + jnp.sum(h.z * (2.0 * xq + zz), axis=1))
  return snippets_lib.as_snippets(h).squared_norm()


def _pool(weights, h):
  """``weights^T h`` over time: ``[B, M, D]`` for ``weights [B, T, M]``."""
  if isinstance(h, WalkedFeatures):
    wz = jnp.einsum("btm,bkt->bmk", weights, h.z)
    return h.scale * (h.x.pool(weights) + jnp.einsum("bmk,bkd->bmd", wz, h.q))
  return snippets_lib.as_snippets(h).pool(weights)


def token_assignment(tokens, token_mask, x, mask, *, scale: float):
  """Soft assignment of snippets to tokens (``model/main_branch.py``, EM and ``random_walk``).

  Args:
    tokens: float ``[B, K, D]``.
    token_mask: bool ``[B, K]``, valid tokens.
    x: float ``[B, T, D]`` snippet embeddings (an array or ``snippets.Snippets``).
    mask: bool ``[B, T]``, valid snippets.
    scale: temperature multiplier of the cosine (5 in the reference).

  Returns:
    ``(z, z_hat)``, both float ``[B, K, T]``: ``z = softmax_k(scale * cos(token_k, x_t))`` over
    valid tokens, and ``z_hat = z / (sum_t z + 1e-9)`` over valid snippets; both 0 at padded
    snippets and invalid tokens.
  """
  x = snippets_lib.as_snippets(x)
  cos = jnp.swapaxes(x.project(l2_normalize(tokens)), 1, 2)
  cos = cos * _inverse_norm(x.squared_norm())[:, None, :]
  z = masked_softmax(scale * cos, token_mask[:, :, None], axis=1)
  z = jnp.where(mask[:, None, :], z, 0.0)
  z_hat = z / (jnp.sum(z, axis=-1, keepdims=True) + _ASSIGN_EPS)
  return z, z_hat


def em_refine(mu, x, mask, *, iterations: int, scale: float):
  """EM refinement of the representative tokens (``model/main_branch.py:WSTAL.EM``).

  Each iteration: ``z_hat`` from :func:`token_assignment`, then ``mu_k = sum_t z_hat[k, t] x_t``.

  Args:
    mu: float ``[B, K, D]`` initial tokens.
    x: float ``[B, T, D]`` snippet embeddings (an array or ``snippets.Snippets``).
    mask: bool ``[B, T]``.
    iterations: number of EM iterations (2).
    scale: cosine multiplier of the assignment softmax (5).

  Returns:
    float ``[B, K, D]`` refined tokens.
  """
  x = snippets_lib.as_snippets(x)
  token_mask = jnp.ones(mu.shape[:2], bool)
  for _ in range(iterations):
    _, z_hat = token_assignment(mu, token_mask, x, mask, scale=scale)
    mu = x.pool(jnp.swapaxes(z_hat, 1, 2))
  return mu


def random_walk(x, mask, tokens, token_mask, *, walk_weight: float,
                scale: float) -> WalkedFeatures:
  """Random-walk knowledge propagation (``model/main_branch.py:random_walk``), in linear time.

  ``x_tilde = (1 - w) (I - w^2 A)^{-1} (w z^T y + x)`` with ``A = z^T z_hat``. The authors solve
  the dense ``[T, T]`` system; ``A`` has rank at most ``K``, so the Woodbury identity gives the
  same vector exactly:

    ``(I - w^2 z^T z_hat)^{-1} r = r + w^2 z^T (I_K - w^2 z_hat z^T)^{-1} z_hat r``,

  hence ``x_tilde = (1 - w) (x + z^T q)`` with ``q = w y + w^2 (I_K - w^2 z_hat z^T)^{-1}
  (w z_hat z^T y + z_hat x)``: O(T K D + K^3) time, O(T K + K D) memory beyond ``x``; no
  ``[T, T]`` array. ``z_hat z^T`` is non-negative with rows summing to at most 1 (rows of
  ``z_hat`` sum to at most 1 over time, columns of ``z`` to 1 over valid tokens), so for ``w < 1``
  the ``[K, K]`` inverse is the Neumann series of ``w^2 z_hat z^T``, summed to float64 precision
  as a product of matrix squares (`_inverse_of_identity_minus`). Padded snippets have zero ``z``
  columns and invalid tokens zero ``z`` rows, so neither enters the system.

  Args:
    x: float ``[B, T, D]`` snippet embeddings, zero at padded snippets (an array or
      ``snippets.Snippets``).
    mask: bool ``[B, T]``.
    tokens: float ``[B, K, D]`` tokens ``y`` (EM tokens or memory tokens).
    token_mask: bool ``[B, K]``; with no valid token the result is ``(1 - w) x``.
    walk_weight: ``w`` (0.5).
    scale: cosine multiplier of the assignment softmax (5).

  Returns:
    `WalkedFeatures` (``.dense()`` gives the ``[B, T, D]`` array, zero at padded snippets).

  Raises:
    ValueError: unless ``0 <= walk_weight < 1``.
  """
  w = walk_weight
  if not 0.0 <= w < 1.0:
    raise ValueError(f"random_walk: walk_weight must be in [0, 1), got {w}")
  x = snippets_lib.as_snippets(x)
  z, z_hat = token_assignment(tokens, token_mask, x, mask, scale=scale)
  walk = jnp.einsum("bkt,bjt->bkj", z_hat, z)  # z_hat z^T, [B, K, K]
  projected = w * jnp.einsum("bkj,bjd->bkd", walk, tokens) + x.pool(jnp.swapaxes(z_hat, 1, 2))
  inverse = _inverse_of_identity_minus(w**2 * walk, bound=w**2)
  q = w * tokens + w**2 * jnp.einsum("bkj,bjd->bkd", inverse, projected)
  return WalkedFeatures(x=x, z=z, q=q, scale=1.0 - w)


def _inverse_of_identity_minus(a, *, bound: float):
  """``(I - a)^{-1}`` for ``a [B, K, K]`` with ``||a||_inf <= bound < 1``: the Neumann series
  ``sum_n a^n`` as the product ``(I + a)(I + a^2)(I + a^4)...`` with enough factors that the
  remainder is below ``bound^(2^f) / (1 - bound) < 1e-17`` (5 factors at ``bound = 0.25``); only
  ``[K, K]`` matrix products, so it is cheap and differentiable."""
  eye = jnp.eye(a.shape[-1], dtype=a.dtype)
  if bound == 0.0:
    return jnp.broadcast_to(eye, a.shape)
  factors = max(1, math.ceil(math.log2(math.log(1e-17 * (1.0 - bound)) / math.log(bound))))
  inverse, power = eye + a, a
  for _ in range(factors - 1):
    power = power @ power
    inverse = inverse + inverse @ power
  return inverse


def prediction_head(x, mask, class_centres, fg_centre, *, scale: float):
  """Cosine prediction module of one branch (``model/main_branch.py:PredictionModule``).

  Args:
    x: the branch's snippet features: float ``[B, T, D]`` or `WalkedFeatures` (the same
      numbers, computed without forming the array).
    mask: bool ``[B, T]``.
    class_centres: float ``[C + 1, D]`` (last = background).
    fg_centre: float ``[D]`` foreground centre.
    scale: logit scale (20).

  Returns:
    dict with ``frame_logits`` ``[B, T, C + 1]`` (``scale * cos(x_t, centre_c)``, 0 at padding),
    ``attention`` ``[B, T]`` (``sigmoid(scale * cos(x_t, fg))``, 0 at padding), ``video_ca``
    ``[B, C + 1]`` (class-agnostic attention-pooled video probabilities) and ``video_cw``
    ``[B, C + 1]`` (class-wise attention-pooled video probabilities).
  """
  centres = l2_normalize(class_centres)
  targets = jnp.concatenate([centres, l2_normalize(fg_centre)[None]], axis=0)  # [C + 2, D]
  cos = _project(x, targets) * _inverse_norm(_squared_norm(x))[..., None]
  frame_logits = jnp.where(mask[..., None], scale * cos[..., :-1], 0.0)
  attention = jnp.where(mask, jax.nn.sigmoid(scale * cos[..., -1]), 0.0)

  ca_weights = attention / (jnp.sum(attention, axis=1, keepdims=True) + _ATTENTION_EPS)
  cw_weights = jnp.where(mask[..., None], jax.nn.sigmoid(frame_logits), 0.0)
  cw_weights = cw_weights / (jnp.sum(cw_weights, axis=1, keepdims=True) + _ATTENTION_EPS)
  pooled = l2_normalize(_pool(jnp.concatenate([ca_weights[..., None], cw_weights], axis=-1), x))
  ca_feat, cw_feat = pooled[:, 0], pooled[:, 1:]
  return {
      "frame_logits": frame_logits,
      "attention": attention,
      "video_ca": jax.nn.softmax(scale * ca_feat @ centres.T, axis=-1),
      "video_cw": jax.nn.softmax(scale * jnp.sum(cw_feat * centres, axis=-1), axis=-1),
  }


class RSKP(Backbone):
  """RSKP / GauFuse WTAL model (``model/main_branch.py:WSTAL``).

  Parameters (as the reference initialises them): ``embedding`` Dense ``D_in -> D`` (xavier
  uniform, zero bias), ``mu`` ``[K, D]`` representative tokens (xavier), ``class_centres``
  ``[C + 1, D]`` (xavier; last row = background) and ``fg_centre`` ``[D]`` initialised to
  ``-class_centres[-1]``. Dropout (``train=True``) draws one key per video (``dropout_keys``, or
  split from the ``"dropout"`` rng). ``walk`` is the random-walk function: the exact
  linear-time :func:`random_walk` by default; any function with its signature that returns the
  walked features as a ``[B, T, D]`` array or `WalkedFeatures` (e.g. a dense ``[T, T]`` solve);
  it receives the embeddings as ``snippets.Snippets`` (``.array()`` gives the array).
  ``low_rank_backward`` gathers the gradient of the embeddings in one matrix product
  (``snippets.low_rank_backward``; the same gradient up to float rounding, much less memory
  traffic); False gives plain autodiff.
  """

  num_tokens: int = 8
  em_iterations: int = 2
  dropout_rate: float = 0.6
  walk_weight: float = 0.5
  logit_scale: float = 20.0
  token_scale: float = 5.0
  walk: Callable = random_walk
  low_rank_backward: bool = True

  uses_memory = True
  loss_terms = ("fore", "back", "attention", "self_label")

  def losses(self, outputs, labels, valid_length, hparams):
    """``losses.rskp_losses`` with the epoch's ``hparams["spl_weight"]`` (the authors'
    ``method.py``)."""
    return losses_lib.rskp_losses(outputs, labels, valid_length, spl_weight=hparams["spl_weight"])

  def scores(self, outputs, *, frame_coef: float, video_coef: float):
    """CAS and video scores (the authors' ``utils/utils.py:fuse_current_pred``,
    ``evaluation/eval.py:ss_eval``).

    ``cas [B, T, C+1] = (frame_coef softmax(o) + (1 - frame_coef) softmax(m)) * attention_o``
    and ``video_scores [B, C+1] = video_coef o_ca + (1 - video_coef) m_ca``, with ``frame_coef``
    0.85 at test and 0.8 for pseudo labels, ``video_coef`` 0.6.
    """
    o, m = outputs["o"], outputs["m"]
    probs = (frame_coef * jax.nn.softmax(o["frame_logits"], axis=-1)
             + (1.0 - frame_coef) * jax.nn.softmax(m["frame_logits"], axis=-1))
    cas = probs * o["attention"][..., None]
    return cas, video_coef * o["video_ca"] + (1.0 - video_coef) * m["video_ca"]

  def pseudo_label_loss(self, outputs, labels, valid, *, frame_coef: float):
    """``frame_coef`` times the loss on branch ``o``'s frame logits plus ``1 - frame_coef``
    times it on ``m``'s (the authors' ``utils/utils.py:compute_distloss``; 0.8)."""
    loss = lambda branch: pl_lib.pseudo_label_loss(outputs[branch]["frame_logits"], labels, valid)
    return frame_coef * loss("o") + (1.0 - frame_coef) * loss("m")

  def attention(self, outputs):
    """Branch ``o``'s attention ``[B, T]``."""
    return outputs["o"]["attention"]

  @nn.compact
  def __call__(self, features, valid_length, memory_tokens=None, memory_mask=None, *,
               train: bool, dropout_keys=None) -> dict:
    """Forward pass.

    Args:
      features: float32 ``[B, T, D_in]`` snippet features (``D_in = D = 2048`` for I3D).
      valid_length: int32 ``[B]``, valid snippets per video (the rest is padding).
      memory_tokens: optional float32 ``[B, M, D]`` memory tokens (see ``memory.read_memory``);
        no gradient flows into them.
      memory_mask: optional bool ``[B, M]``, valid memory tokens (all valid when None).
      train: enables dropout.
      dropout_keys: optional ``[B]`` PRNG keys, one per video (e.g. folded from the step and the
        video's dataset index, so that the mask does not depend on which videos share the
        batch); default: ``B`` keys split from the ``"dropout"`` rng.

    Returns:
      dict with branches ``"o"`` (embedded features), ``"m"`` (walk with the EM tokens) and,
      when ``memory_tokens`` is given, ``"r"`` (walk with the memory tokens); each a dict as
      returned by :func:`prediction_head`. Also ``"tokens"`` ``[B, K, D]`` EM-refined tokens
      and ``"token_scores"`` ``[B, K, C + 1]`` = ``softmax(logit_scale * cos(token, centres))``.

    Raises:
      ValueError: on inconsistent shapes.
    """
    features, valid_length, mask = self.padded_inputs(features, valid_length)
    b = features.shape[0]
    d, c1 = self.feature_dim, self.num_classes + 1
    xavier = nn.initializers.xavier_uniform()

    x = nn.Dense(d, kernel_init=xavier, bias_init=nn.initializers.zeros, name="embedding")(
        features)
    x = nn.relu(x)
    if train:
      x = video_dropout(x, self.per_video_keys(dropout_keys, b), self.dropout_rate)
    x = jnp.where(mask[..., None], x, 0.0)

    mu = self.param("mu", xavier, (self.num_tokens, d))
    class_centres = self.param("class_centres", xavier, (c1, d))
    fg_centre = self.param("fg_centre", lambda _: -class_centres[-1])

    memory = None
    if memory_tokens is not None:
      memory_tokens = jnp.asarray(memory_tokens)
      check_shape("RSKP", "memory_tokens", memory_tokens, (b, None, d))
      if memory_mask is None:
        memory_mask = jnp.ones(memory_tokens.shape[:2], bool)
      memory_mask = jnp.asarray(memory_mask, bool)
      check_shape("RSKP", "memory_mask", memory_mask, memory_tokens.shape[:2])
      memory = (jax.lax.stop_gradient(memory_tokens), memory_mask)
    elif memory_mask is not None:
      raise ValueError("RSKP: memory_mask given without memory_tokens")

    branches = self._branches
    if self.low_rank_backward:
      branches = snippets_lib.low_rank_backward(branches)
    return branches(x, mu, class_centres, fg_centre, memory, mask)

  def _branches(self, x, mu, class_centres, fg_centre, memory, mask):
    """Everything after the embedding: EM, walks and the heads of branches o, m (and r)."""
    b = mask.shape[0]

    def head(feats):
      return prediction_head(feats, mask, class_centres, fg_centre, scale=self.logit_scale)

    def walk(tokens, token_mask):
      return self.walk(x, mask, tokens, token_mask, walk_weight=self.walk_weight,
                       scale=self.token_scale)

    x = snippets_lib.as_snippets(x)
    tokens = em_refine(jnp.broadcast_to(mu, (b,) + mu.shape), x, mask,
                       iterations=self.em_iterations, scale=self.token_scale)
    token_logits = self.logit_scale * jnp.einsum(
        "bkd,cd->bkc", l2_normalize(tokens), l2_normalize(class_centres))
    out = {
        "o": head(x),
        "m": head(walk(tokens, jnp.ones((b, self.num_tokens), bool))),
        "tokens": tokens,
        "token_scores": jax.nn.softmax(token_logits, axis=-1),
    }
    if memory is not None:
      out["r"] = head(walk(*memory))
    return out
