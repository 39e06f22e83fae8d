"""The backbone interface: what a WTAL model gives the rest of the library, so that any Flax module
can be trained, localized with and pseudo-labelled by GauFuse (paper §3: the pseudo labels are a
plug-in for weakly supervised backbones, Table 5).

A backbone is a Flax module subclassing :class:`Backbone`. The training step, the test-time step
and the pseudo-label step call only:

* ``__call__(features [B, T, D_in], valid_length [B], *, train, dropout_keys=None)`` -> an
  outputs dict of the model's own layout (a model with ``uses_memory`` also takes
  ``memory_tokens, memory_mask``, as ``RSKP``);
* :meth:`Backbone.losses`: the model's own loss terms per video;
* :meth:`Backbone.scores`: its test-time CAS rule, as a CAS over ``C + 1`` classes (the last one
  is background) and video scores, which localization and the pseudo labels take;
* :meth:`Backbone.pseudo_label_loss`: where the pseudo-label loss attaches;
* :meth:`Backbone.attention` (optional): its class-agnostic foreground score, for plots.

Every array is padded to ``T`` snippets with ``valid_length``; a backbone must give the valid
part of every output independently of ``T`` (zero its padded snippets, mask them out of sums).
Select one with ``config.model.backbone`` (a name of ``registry.register_backbone``, or
``"package.module:Class"``); the other ``config.model`` fields are the module's own.
"""

from __future__ import annotations

from typing import ClassVar

import jax
import jax.numpy as jnp
from flax import linen as nn

from gaufuse_jax._src import pseudo_labels as pl_lib


def snippet_mask(valid_length, num_snippets: int):
  """Validity mask of padded snippets.

  Args:
    valid_length: int array ``[B]``, number of valid snippets of each video.
    num_snippets: ``T``, the padded length.

  Returns:
    bool ``[B, T]``, True where ``t < valid_length``.
  """
  return jnp.arange(num_snippets)[None, :] < jnp.asarray(valid_length)[:, None]


def check_shape(owner: str, name: str, value, shape) -> None:
  """Raise ValueError unless ``value.shape`` matches ``shape`` (None = any size)."""
  ok = value.ndim == len(shape) and all(s is None or s == v for s, v in zip(shape, value.shape))
  if not ok:
    expected = "[" + ", ".join("*" if s is None else str(s) for s in shape) + "]"
    raise ValueError(f"{owner}: {name} must have shape {expected}, got {tuple(value.shape)}")


def top_k_mean(x, valid_length, fraction: int):
  """Mean of the ``k = max(valid_length // fraction, 1)`` largest valid values over time.

  The video-level pooling of W-TALC-style backbones (e.g. BaS-Net's ``model.py``).

  Args:
    x: float ``[B, T, C]``.
    valid_length: int ``[B]``.
    fraction: ``k = valid_length // fraction`` (at least 1).

  Returns:
    float ``[B, C]``; 0 for a video without valid snippets.
  """
  valid_length = jnp.asarray(valid_length)
  mask = snippet_mask(valid_length, x.shape[1])[..., None]
  k = jnp.maximum(valid_length // fraction, 1)
  top = -jnp.sort(-jnp.where(mask, x, -jnp.inf), axis=1)
  take = jnp.arange(x.shape[1])[None, :, None] < jnp.minimum(k, valid_length)[:, None, None]
  return jnp.sum(jnp.where(take, top, 0.0), axis=1) / k[:, None]


class Backbone(nn.Module):
  """Base class of the WTAL models the library trains (module docstring).

  Attributes:
    num_classes: ``C``, action classes (:meth:`scores` adds background as class ``C``).
    feature_dim: ``D``, the width of the model's embedding.
    uses_memory: class attribute; True when ``__call__`` takes ``memory_tokens`` and
      ``memory_mask`` and the outputs hold ``"tokens"`` / ``"token_scores"`` for the memory bank
      (``memory.update_memory``; only RSKP).
    loss_terms: class attribute; the names of the per-video terms of :meth:`losses` that are
      logged (``train/<name>``).
  """

  num_classes: int = 20
  feature_dim: int = 2048

  uses_memory: ClassVar[bool] = False
  loss_terms: ClassVar[tuple[str, ...]] = ()

  def padded_inputs(self, features, valid_length):
    """``(features, valid_length, mask)``: the inputs as arrays with their shapes checked
    (``[B, T, D_in]`` and ``[B]``; ValueError naming the model otherwise) and the snippet mask
    ``[B, T]``."""
    name = type(self).__name__
    features, valid_length = jnp.asarray(features), jnp.asarray(valid_length)
    check_shape(name, "features", features, (None, None, None))
    check_shape(name, "valid_length", valid_length, features.shape[:1])
    return features, valid_length, snippet_mask(valid_length, features.shape[1])

  def per_video_keys(self, dropout_keys, batch_size: int):
    """``dropout_keys`` (one PRNG key per video), or ``batch_size`` keys split from the
    ``"dropout"`` rng when None."""
    if dropout_keys is None:
      dropout_keys = jax.random.split(self.make_rng("dropout"), batch_size)
    return dropout_keys

  def losses(self, outputs, labels, valid_length, hparams):
    """The model's own objective per video (no pseudo-label term).

    Args:
      outputs: the dict returned by ``__call__``.
      labels: float32 ``[B, C]`` multi-hot video labels.
      valid_length: int32 ``[B]``.
      hparams: the epoch's traced scalars (``schedule.EpochPlan.step_hparams``: e.g.
        ``spl_weight``); a model uses the ones it needs.

    Returns:
      ``(loss [B], terms)`` with ``terms`` a dict of float ``[B]`` arrays named as
      ``loss_terms``.
    """
    raise NotImplementedError(f"{type(self).__name__} must define losses()")

  def scores(self, outputs, *, frame_coef: float, video_coef: float):
    """The test-time CAS rule.

    Args:
      outputs: the dict returned by ``__call__``.
      frame_coef, video_coef: weight of the first branch in the snippet / video score mix of a
        model with two branches (RSKP: 0.85 / 0.6 at test, 0.8 / 0.6 for pseudo labels); a
        one-branch model ignores them.

    Returns:
      ``(cas, video_scores)``: float ``[B, T, C + 1]`` snippet scores in ``[0, 1]`` (background
      last, 0 at padded snippets) and float ``[B, C + 1]`` video scores in ``[0, 1]``.
    """
    raise NotImplementedError(f"{type(self).__name__} must define scores()")

  def pseudo_label_loss(self, outputs, labels, valid, *, frame_coef: float):
    """The pseudo-label loss per video (paper eq. 7-8; the default attaches it to
    :meth:`snippet_log_probs`).

    Args:
      outputs: the dict returned by ``__call__``.
      labels: float ``[B, T, C + 1]`` pseudo labels (plain or Δ).
      valid: bool ``[B, T]``.
      frame_coef: weight of the first branch (``config.pseudo.frame_coef``), as in
        :meth:`scores`.

    Returns:
      float ``[B]``.
    """
    del frame_coef
    return pl_lib.pseudo_label_cross_entropy(self.snippet_log_probs(outputs), labels, valid)

  def snippet_log_probs(self, outputs):
    """Float ``[B, T, C + 1]`` snippet class log-probabilities (background last), the target of
    the default :meth:`pseudo_label_loss`."""
    raise NotImplementedError(f"{type(self).__name__} must define snippet_log_probs() or "
                              "pseudo_label_loss()")

  def attention(self, outputs):
    """Float ``[B, T]`` class-agnostic foreground score, or None when the model has none."""
    del outputs
    return None


def masked(x, mask):
  """``x`` with padded snippets zeroed: ``[B, T, ...]`` with ``mask [B, T]``."""
  return jnp.where(mask.reshape(mask.shape + (1,) * (x.ndim - 2)), x, 0.0)


def video_dropout(x, keys, rate: float):
  """Inverted dropout with one PRNG key per video, so that a video gets the same mask in any
  batch, padded to any length (threefry is partitionable: the draw of ``[t, d]`` does not depend
  on ``T``).

  Args:
    x: float ``[B, T, D]``.
    keys: ``[B]`` PRNG keys (new-style or ``uint32 [B, 2]``).
    rate: drop probability in ``[0, 1)``.

  Returns:
    float ``[B, T, D]``: ``x / (1 - rate)`` where kept, 0 elsewhere.
  """
  if rate == 0.0:
    return x
  keep = jax.vmap(lambda k: jax.random.bernoulli(k, 1.0 - rate, x.shape[1:]))(keys)
  return jnp.where(keep, x / (1.0 - rate), 0.0)


# The epoch hyper-parameters a backbone's ``losses`` may read (``schedule.EpochPlan``).
_HPARAMS = {"learning_rate": 1e-3, "spl_weight": 1.0, "pseudo_weight": 1.0, "label_mode": 0,
            "delta_scale": 0.0}


def check_backbone(model: Backbone, feature_dim: int) -> None:
  """Checks that ``model`` gives what the library reads, on abstract values (nothing runs or
  compiles): two padded videos through ``init``, ``__call__`` (train and test), ``losses``,
  ``scores``, ``pseudo_label_loss`` and ``attention``.

  Raises:
    TypeError: ``model`` is not a :class:`Backbone`.
    ValueError: naming the method whose output has the wrong structure, shape or dtype, or whose
      call failed (with its error).
  """
  if not isinstance(model, Backbone):
    raise TypeError(f"{type(model).__name__} is not a subclass of gaufuse_jax.Backbone")
  name, b, t, c1 = type(model).__name__, 2, 16, model.num_classes + 1
  features = jax.ShapeDtypeStruct((b, t, feature_dim), jnp.float32)
  lengths = jnp.array([t, t // 2], jnp.int32)
  labels = jnp.ones((b, c1 - 1), jnp.float32)

  def run(features):
    params = model.init(jax.random.PRNGKey(0), features, lengths, train=False)
    out = model.apply(params, features, lengths, train=True,
                      dropout_keys=jax.random.split(jax.random.PRNGKey(1), b))
    loss, terms = model.losses(out, labels, lengths, _HPARAMS)
    cas, video = model.scores(out, frame_coef=0.8, video_coef=0.6)
    pseudo = model.pseudo_label_loss(out, jnp.zeros((b, t, c1)), snippet_mask(lengths, t),
                                     frame_coef=0.8)
    return loss, terms, cas, video, pseudo, model.attention(out)

  try:
    loss, terms, cas, video, pseudo, attention = jax.eval_shape(run, features)
  except Exception as e:  # the user's code: name the model, keep the cause
    raise ValueError(f"backbone {name}: a forward pass, losses, scores or pseudo-label loss on "
                     f"2 videos of [{t}, {feature_dim}] features failed: "
                     f"{type(e).__name__}: {e}") from e
  expected = {"losses() loss": (loss, (b,)), "scores() CAS": (cas, (b, t, c1)),
              "scores() video scores": (video, (b, c1)), "pseudo_label_loss()": (pseudo, (b,))}
  if attention is not None:
    expected["attention()"] = (attention, (b, t))
  if not isinstance(terms, dict) or not set(model.loss_terms) <= set(terms):
    raise ValueError(f"backbone {name}: losses() must return (loss, terms) with a term for each "
                     f"of loss_terms {tuple(model.loss_terms)}, found "
                     f"{sorted(terms) if isinstance(terms, dict) else type(terms).__name__}")
  expected.update({f"losses() term {k!r}": (terms[k], (b,)) for k in model.loss_terms})
  for what, (value, shape) in expected.items():
    if getattr(value, "shape", None) != shape or not jnp.issubdtype(value.dtype, jnp.floating):
      found = (f"{value.dtype}{list(value.shape)}" if hasattr(value, "shape")
               else type(value).__name__)
      raise ValueError(f"backbone {name}: {what} must be a float array of shape {list(shape)} "
                       f"for B={b} videos, T={t} snippets, C+1={c1} classes; found {found}")
