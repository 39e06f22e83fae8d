"""RSKP backbone (Huang et al., CVPR 2022) as used by GauFuse, in Flax linen.

Reference: the authors' ``model/main_branch.py`` (of both
repositories). The model embeds the snippet features, refines ``K`` learned representative tokens
by EM, propagates the tokens' knowledge to the snippets with a random walk, and scores every
branch with cosine classifiers against ``C + 1`` class centres (the last one is background).

Padding: videos are batched as ``[B, T, ...]`` with ``valid_length [B]``. Every padded snippet
(``t >= valid_length``) is zeroed after the embedding and masked out of every sum over time, every
token assignment and the random-walk matrix, so the valid part of each output does not depend on
``T``. Padded entries of ``frame_logits`` and ``attention`` are 0.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn

# Epsilons of the authors' code (``model/main_branch.py``): L2 normalisation, EM / walk assignment
# normalisation over time, attention normalisation over time.
_NORM_EPS = 1e-9
_ASSIGN_EPS = 1e-9
_ATTENTION_EPS = 1e-5


def snippet_mask(valid_length, num_snippets: int):
  """Validity mask of padded snippets.

  Args:
    valid_length: int array ``[B]``, number of valid snippets of each video.
    num_snippets: ``T``, the padded length.

  Returns:
    bool ``[B, T]``, True where ``t < valid_length``.
  """
  return jnp.arange(num_snippets)[None, :] < jnp.asarray(valid_length)[:, None]


def l2_normalize(x):
  """``x / (||x||_2 + 1e-9)`` over the last axis (the authors' ``calculate_l1_norm``, which is L2).

  The norm is computed so that an all-zero vector (padding, dead ReLUs) maps to 0 with a finite
  gradient.
  """
  sq = jnp.sum(jnp.square(x), axis=-1, keepdims=True)
  return x / (jnp.sqrt(jnp.maximum(sq, 1e-30)) + _NORM_EPS)


def masked_softmax(logits, mask, axis: int = -1):
  """Softmax of ``logits`` over ``axis`` restricted to ``mask``; 0 where masked.

  An all-masked slice gives all zeros (never NaN).
  """
  big_neg = jnp.finfo(logits.dtype).min
  top = jax.lax.stop_gradient(jnp.max(jnp.where(mask, logits, big_neg), axis=axis, keepdims=True))
  e = jnp.where(mask, jnp.exp(jnp.where(mask, logits - top, 0.0)), 0.0)
  return e / jnp.maximum(jnp.sum(e, axis=axis, keepdims=True), jnp.finfo(logits.dtype).tiny)


def token_assignment(tokens, token_mask, x, mask, *, scale: float):
  """Soft assignment of snippets to tokens (``model/main_branch.py``, EM and ``random_walk``).

  Args:
    tokens: float ``[B, K, D]``.
    token_mask: bool ``[B, K]``, valid tokens.
    x: float ``[B, T, D]`` snippet embeddings.
    mask: bool ``[B, T]``, valid snippets.
    scale: temperature multiplier of the cosine (5 in the reference).

  Returns:
    ``(z, z_hat)``, both float ``[B, K, T]``: ``z = softmax_k(scale * cos(token_k, x_t))`` over
    valid tokens, and ``z_hat = z / (sum_t z + 1e-9)`` over valid snippets; both 0 at padded
    snippets and invalid tokens.
  """
  cos = jnp.einsum("bkd,btd->bkt", l2_normalize(tokens), l2_normalize(x))
  z = masked_softmax(scale * cos, token_mask[:, :, None], axis=1)
  z = jnp.where(mask[:, None, :], z, 0.0)
  z_hat = z / (jnp.sum(z, axis=-1, keepdims=True) + _ASSIGN_EPS)
  return z, z_hat


def em_refine(mu, x, mask, *, iterations: int, scale: float):
  """EM refinement of the representative tokens (``model/main_branch.py:WSTAL.EM``).

  Each iteration: ``z_hat`` from :func:`token_assignment`, then ``mu_k = sum_t z_hat[k, t] x_t``.

  Args:
    mu: float ``[B, K, D]`` initial tokens.
    x: float ``[B, T, D]`` snippet embeddings.
    mask: bool ``[B, T]``.
    iterations: number of EM iterations (2).
    scale: cosine multiplier of the assignment softmax (5).

  Returns:
    float ``[B, K, D]`` refined tokens.
  """
  token_mask = jnp.ones(mu.shape[:2], bool)
  for _ in range(iterations):
    _, z_hat = token_assignment(mu, token_mask, x, mask, scale=scale)
    mu = jnp.einsum("bkt,btd->bkd", z_hat, x)
  return mu


def random_walk(x, mask, tokens, token_mask, *, walk_weight: float, scale: float):
  """Random-walk knowledge propagation (``model/main_branch.py:random_walk``).

  ``x_tilde = (1 - w) (I - w^2 A)^{-1} (w z^T y + x)`` with ``A = z^T z_hat`` (``[T, T]``),
  computed with ``jnp.linalg.solve``. Padded snippets have zero rows and columns in ``A`` and zero
  right-hand sides, so the system is block diagonal and the valid block is solved on its own.

  Args:
    x: float ``[B, T, D]`` snippet embeddings (zero at padded snippets).
    mask: bool ``[B, T]``.
    tokens: float ``[B, K, D]`` tokens ``y`` (EM tokens or memory tokens).
    token_mask: bool ``[B, K]``; with no valid token the result is ``(1 - w) x``.
    walk_weight: ``w`` (0.5).
    scale: cosine multiplier of the assignment softmax (5).

  Returns:
    float ``[B, T, D]``, zero at padded snippets.
  """
  w = walk_weight
  z, z_hat = token_assignment(tokens, token_mask, x, mask, scale=scale)
  affinity = jnp.einsum("bkt,bks->bts", z, z_hat)
  eye = jnp.eye(x.shape[1], dtype=x.dtype)
  rhs = w * jnp.einsum("bkt,bkd->btd", z, tokens) + x
  return (1.0 - w) * jnp.linalg.solve(eye - w**2 * affinity, rhs)


def prediction_head(x, mask, class_centres, fg_centre, *, scale: float):
  """Cosine prediction module of one branch (``model/main_branch.py:PredictionModule``).

  Args:
    x: float ``[B, T, D]`` snippet features of the branch.
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
  xn = l2_normalize(x)
  frame_logits = scale * jnp.einsum("btd,cd->btc", xn, centres)
  attention = jax.nn.sigmoid(scale * xn @ l2_normalize(fg_centre))
  attention = jnp.where(mask, attention, 0.0)
  frame_logits = jnp.where(mask[..., None], frame_logits, 0.0)

  ca_weights = attention / (jnp.sum(attention, axis=1, keepdims=True) + _ATTENTION_EPS)
  cw_weights = jnp.where(mask[..., None], jax.nn.sigmoid(frame_logits), 0.0)
  cw_weights = cw_weights / (jnp.sum(cw_weights, axis=1, keepdims=True) + _ATTENTION_EPS)
  ca_feat = l2_normalize(jnp.einsum("bt,btd->bd", ca_weights, x))
  cw_feat = l2_normalize(jnp.einsum("btc,btd->bcd", cw_weights, x))
  return {
      "frame_logits": frame_logits,
      "attention": attention,
      "video_ca": jax.nn.softmax(scale * ca_feat @ centres.T, axis=-1),
      "video_cw": jax.nn.softmax(scale * jnp.sum(cw_feat * centres, axis=-1), axis=-1),
  }


def _check(name, value, shape):
  """Raise ValueError unless ``value.shape`` matches ``shape`` (None = any size)."""
  ok = value.ndim == len(shape) and all(s is None or s == v for s, v in zip(shape, value.shape))
  if not ok:
    expected = "[" + ", ".join("*" if s is None else str(s) for s in shape) + "]"
    raise ValueError(f"RSKP: {name} must have shape {expected}, got {tuple(value.shape)}")


class RSKP(nn.Module):
  """RSKP / GauFuse WTAL model (``model/main_branch.py:WSTAL``).

  Parameters (as the reference initialises them): ``embedding`` Dense ``D_in -> D`` (xavier
  uniform, zero bias), ``mu`` ``[K, D]`` representative tokens (xavier), ``class_centres``
  ``[C + 1, D]`` (xavier; last row = background) and ``fg_centre`` ``[D]`` initialised to
  ``-class_centres[-1]``. Dropout draws from the ``"dropout"`` rng when ``train=True``.
  """

  num_classes: int = 20
  feature_dim: int = 2048
  num_tokens: int = 8
  em_iterations: int = 2
  dropout_rate: float = 0.6
  walk_weight: float = 0.5
  logit_scale: float = 20.0
  token_scale: float = 5.0

  @nn.compact
  def __call__(self, features, valid_length, memory_tokens=None, memory_mask=None, *,
               train: bool) -> dict:
    """Forward pass.

    Args:
      features: float32 ``[B, T, D_in]`` snippet features (``D_in = D = 2048`` for I3D).
      valid_length: int32 ``[B]``, valid snippets per video (the rest is padding).
      memory_tokens: optional float32 ``[B, M, D]`` memory tokens (see ``memory.read_memory``);
        no gradient flows into them.
      memory_mask: optional bool ``[B, M]``, valid memory tokens (all valid when None).
      train: enables dropout.

    Returns:
      dict with branches ``"o"`` (embedded features), ``"m"`` (walk with the EM tokens) and,
      when ``memory_tokens`` is given, ``"r"`` (walk with the memory tokens); each a dict as
      returned by :func:`prediction_head`. Also ``"tokens"`` ``[B, K, D]`` EM-refined tokens
      and ``"token_scores"`` ``[B, K, C + 1]`` = ``softmax(logit_scale * cos(token, centres))``.

    Raises:
      ValueError: on inconsistent shapes.
    """
    features, valid_length = jnp.asarray(features), jnp.asarray(valid_length)
    _check("features", features, (None, None, None))
    b, t, _ = features.shape
    _check("valid_length", valid_length, (b,))
    d, c1 = self.feature_dim, self.num_classes + 1
    xavier = nn.initializers.xavier_uniform()

    mask = snippet_mask(valid_length, t)
    x = nn.Dense(d, kernel_init=xavier, bias_init=nn.initializers.zeros, name="embedding")(
        features)
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(nn.relu(x))
    x = jnp.where(mask[..., None], x, 0.0)

    mu = self.param("mu", xavier, (self.num_tokens, d))
    class_centres = self.param("class_centres", xavier, (c1, d))
    fg_centre = self.param("fg_centre", lambda _: -class_centres[-1])

    def head(feats):
      return prediction_head(feats, mask, class_centres, fg_centre, scale=self.logit_scale)

    def walk(tokens, token_mask):
      return random_walk(x, mask, tokens, token_mask, walk_weight=self.walk_weight,
                         scale=self.token_scale)

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
    if memory_tokens is not None:
      memory_tokens = jnp.asarray(memory_tokens)
      _check("memory_tokens", memory_tokens, (b, None, d))
      if memory_mask is None:
        memory_mask = jnp.ones(memory_tokens.shape[:2], bool)
      memory_mask = jnp.asarray(memory_mask, bool)
      _check("memory_mask", memory_mask, memory_tokens.shape[:2])
      out["r"] = head(walk(jax.lax.stop_gradient(memory_tokens), memory_mask))
    elif memory_mask is not None:
      raise ValueError("RSKP: memory_mask given without memory_tokens")
    return out
