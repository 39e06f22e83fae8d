"""Per-class memory bank of representative tokens (the authors' ``model/memory.py``, ``method.py``).

Each class ``c`` keeps the ``L`` (5) tokens with the best class-``c`` score seen so far, among the
EM tokens of the videos labelled with ``c``. The ``r`` branch of the model walks over the tokens
of a video's labelled classes. The bank is a pytree (``flax.struct.dataclass``) that lives in the
train state; all functions are pure, static-shaped and jit-able.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

DEFAULT_SLOTS = 5


@struct.dataclass
class MemoryBank:
  """Per-class token memory.

  Attributes:
    tokens: float ``[C, L, D]``, slots sorted by descending score; zeros in empty slots.
    scores: float ``[C, L]``, class score of each slot's token; ``-inf`` for empty slots.
  """

  tokens: jax.Array
  scores: jax.Array


def init_memory(num_classes: int, slots: int = DEFAULT_SLOTS, dim: int = 2048,
                dtype=jnp.float32) -> MemoryBank:
  """Empty bank: ``tokens`` zeros ``[C, L, D]``, ``scores`` ``-inf`` ``[C, L]``.

  Raises:
    ValueError: if a size is not positive.
  """
  for name, value in (("num_classes", num_classes), ("slots", slots), ("dim", dim)):
    if value <= 0:
      raise ValueError(f"init_memory: {name} must be positive, got {value}")
  return MemoryBank(tokens=jnp.zeros((num_classes, slots, dim), dtype),
                    scores=jnp.full((num_classes, slots), -jnp.inf, dtype))


def update_memory(bank: MemoryBank, tokens, token_scores, labels, video_mask) -> MemoryBank:
  """Insert the tokens of a batch of videos into the queues of their labelled classes.

  For each class ``c`` the candidates are the current ``L`` slots and every token of every valid
  video labelled with ``c``, scored by ``token_scores[..., c]``; the top ``L`` are kept
  (``lax.top_k``, vectorised over classes). As the top ``L`` of a union, one batched update equals
  applying the videos one at a time, so under ``pmap`` the gathered, flattened batch of all
  devices can be applied by every replica. This is the authors' ``Memory._update_queue``
  (``model/memory.py``) with the class indexing done right: their ``method.py:289`` takes
  ``np.where(labels == 1)[0]`` on a ``(1, C)`` array, i.e. row indices, so every video reads and
  updates class 0's queue only (``method.py``: ``np.where`` on the batch's label row). We do not
  copy that bug. Empty slots score
  ``-inf`` (the authors start from 0) and are never read.

  Args:
    bank: ``MemoryBank`` with ``tokens [C, L, D]``, ``scores [C, L]``.
    tokens: float ``[B, K, D]`` EM tokens (``RSKP`` output ``"tokens"``; no gradient is kept).
    token_scores: float ``[B, K, C + 1]`` token class probabilities (``"token_scores"``);
      the background column is ignored.
    labels: ``[B, C]`` multi-hot video labels (a class is labelled where ``labels > 0``).
    video_mask: bool ``[B]``, False for padded videos.

  Returns:
    The updated ``MemoryBank``.

  Raises:
    ValueError: on inconsistent shapes.
  """
  num_classes, slots, dim = bank.tokens.shape
  tokens = jax.lax.stop_gradient(jnp.asarray(tokens))
  token_scores = jax.lax.stop_gradient(jnp.asarray(token_scores))
  labels, video_mask = jnp.asarray(labels), jnp.asarray(video_mask)
  if tokens.ndim != 3 or tokens.shape[2] != dim:
    raise ValueError(f"update_memory: tokens must have shape [B, K, {dim}], got {tokens.shape}")
  b, k, _ = tokens.shape
  expected = {"token_scores": ((b, k, num_classes + 1), token_scores.shape),
              "labels": ((b, num_classes), labels.shape),
              "video_mask": ((b,), video_mask.shape)}
  for name, (want, got) in expected.items():
    if tuple(got) != want:
      raise ValueError(f"update_memory: {name} must have shape {list(want)}, got {tuple(got)}")

  use = (labels > 0) & video_mask[:, None].astype(bool)  # [B, C]
  new_scores = jnp.where(use[:, None, :], token_scores[..., :num_classes], -jnp.inf)
  new_scores = new_scores.reshape(b * k, num_classes).T.astype(bank.scores.dtype)  # [C, B*K]
  scores, idx = jax.lax.top_k(jnp.concatenate([bank.scores, new_scores], axis=1), slots)

  from_bank = jnp.take_along_axis(bank.tokens, jnp.minimum(idx, slots - 1)[..., None], axis=1)
  from_batch = tokens.reshape(b * k, dim)[jnp.clip(idx - slots, 0, b * k - 1)]
  picked = jnp.where((idx < slots)[..., None], from_bank, from_batch.astype(bank.tokens.dtype))
  picked = jnp.where(jnp.isfinite(scores)[..., None], picked, 0.0)
  return MemoryBank(tokens=picked, scores=scores)


def read_memory(bank: MemoryBank, labels, *, max_labels: int | None = None):
  """Memory tokens of each video's labelled classes, for the ``r`` branch of ``RSKP``.

  Args:
    bank: ``MemoryBank`` with ``tokens [C, L, D]``, ``scores [C, L]``.
    labels: ``[B, C]`` multi-hot video labels.
    max_labels: optional, at least the largest number of labels of any video (e.g. of the
      training set: a video with more labelled classes would lose the tokens of its last ones).
      The valid slots of each video are then moved to the front and only the first
      ``M = min(max_labels, C) * L`` kept, so the ``r`` branch walks over ``M`` tokens instead of
      ``C * L`` (the walk does not depend on the order of its tokens).

  Returns:
    ``(tokens [B, M, D], mask [B, M])`` with ``M = C * L`` without ``max_labels``: slot
    ``c * L + l`` is class ``c``'s slot ``l``, valid where the video is labelled with ``c`` and
    the slot is filled; with it, the same slots, valid ones first (in that order).

  Raises:
    ValueError: if ``labels`` is not ``[B, C]`` or ``max_labels`` < 1.
  """
  num_classes, slots, dim = bank.tokens.shape
  labels = jnp.asarray(labels)
  if labels.ndim != 2 or labels.shape[1] != num_classes:
    raise ValueError(f"read_memory: labels must have shape [B, {num_classes}], got {labels.shape}")
  if max_labels is not None and max_labels < 1:
    raise ValueError(f"read_memory: max_labels must be >= 1 or None, got {max_labels}")
  b = labels.shape[0]
  mask = ((labels[:, :, None] > 0) & jnp.isfinite(bank.scores)[None]).reshape(
      b, num_classes * slots)
  flat = bank.tokens.reshape(num_classes * slots, dim)
  if max_labels is None:
    return jnp.broadcast_to(flat[None], (b,) + flat.shape), mask
  keep = min(max_labels, num_classes) * slots
  order = jnp.argsort(~mask, axis=1, stable=True)[:, :keep]  # valid slots first
  return flat[order], jnp.take_along_axis(mask, order, axis=1)
