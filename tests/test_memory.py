"""Per-class memory bank: hand-made updates, numpy oracle, batched == sequential, read masks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gaufuse_jax._src import memory


def _np_update(tokens_q, scores_q, tokens, token_scores, labels, video_mask):
  """Brute force: per class, sort current slots + tokens of valid labelled videos, keep top L."""
  num_classes, slots, _ = tokens_q.shape
  new_t, new_s = np.zeros_like(tokens_q), np.full_like(scores_q, -np.inf)
  for c in range(num_classes):
    cands = [(scores_q[c, l], tokens_q[c, l]) for l in range(slots) if np.isfinite(scores_q[c, l])]
    for b in range(tokens.shape[0]):
      if video_mask[b] and labels[b, c] > 0:
        cands += [(token_scores[b, k, c], tokens[b, k]) for k in range(tokens.shape[1])]
    cands.sort(key=lambda st: -st[0])
    for l, (s, t) in enumerate(cands[:slots]):
      new_s[c, l], new_t[c, l] = s, t
  return new_t, new_s


def test_init_memory_is_empty():
  bank = memory.init_memory(3, 5, 4)
  assert bank.tokens.shape == (3, 5, 4) and bank.scores.shape == (3, 5)
  np.testing.assert_array_equal(bank.tokens, 0.0)
  assert np.all(np.isneginf(bank.scores))
  with pytest.raises(ValueError, match="slots"):
    memory.init_memory(3, 0, 4)


def test_update_hand_made_tokens():
  bank = memory.init_memory(3, 2, 2)
  tokens = jnp.array([[[1.0, 0.0], [0.0, 1.0]], [[2.0, 0.0], [0.0, 2.0]]])
  scores = jnp.array([[[0.6, 0.1, 0.2, 0.1], [0.3, 0.4, 0.2, 0.1]],
                      [[0.5, 0.2, 0.1, 0.2], [0.1, 0.7, 0.1, 0.1]]])
  labels = jnp.array([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
  bank = memory.update_memory(bank, tokens, scores, labels, jnp.array([True, True]))
  # class 0: video 0 token 0 (0.6), video 1 token 0 (0.5); class 1: video 1 only (video 0's
  # token 1 scores 0.4 for class 1 but video 0 is not labelled with it); class 2 untouched.
  np.testing.assert_allclose(bank.scores[:2], [[0.6, 0.5], [0.7, 0.2]])
  np.testing.assert_array_equal(bank.tokens[:2], [[[1, 0], [2, 0]], [[0, 2], [2, 0]]])
  assert np.all(np.isneginf(bank.scores[2]))
  np.testing.assert_array_equal(bank.tokens[2], 0.0)

  # A padded video is ignored whatever its labels and scores; a class with no labelled video
  # keeps its slots bit for bit; a better token pushes out the worst slot.
  tokens2 = jnp.array([[[5.0, 5.0], [6.0, 6.0]], [[3.0, 3.0], [4.0, 4.0]]])
  scores2 = jnp.array([[[0.9, 0.9, 0.9, 0.0], [0.9, 0.9, 0.9, 0.0]],
                       [[0.55, 0.0, 0.0, 0.0], [0.01, 0.0, 0.0, 0.0]]])
  labels2 = jnp.array([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
  bank2 = memory.update_memory(bank, tokens2, scores2, labels2, jnp.array([False, True]))
  np.testing.assert_allclose(bank2.scores[0], [0.6, 0.55])
  np.testing.assert_array_equal(bank2.tokens[0], [[1, 0], [3, 3]])
  np.testing.assert_array_equal(bank2.tokens[1], bank.tokens[1])
  np.testing.assert_array_equal(bank2.scores[1], bank.scores[1])
  assert np.all(np.isneginf(bank2.scores[2]))


def test_empty_slots_stay_empty():
  bank = memory.init_memory(2, 3, 2)
  tokens = jnp.array([[[1.0, 2.0]]])  # one video, one token
  scores = jnp.array([[[0.3, 0.4, 0.3]]])
  bank = memory.update_memory(bank, tokens, scores, jnp.array([[0.0, 1.0]]), jnp.array([True]))
  np.testing.assert_allclose(bank.scores[1, 0], 0.4)
  np.testing.assert_array_equal(bank.tokens[1, 0], [1.0, 2.0])
  assert np.all(np.isneginf(bank.scores[1, 1:])) and np.all(np.isneginf(bank.scores[0]))
  np.testing.assert_array_equal(bank.tokens[1, 1:], 0.0)
  np.testing.assert_array_equal(bank.tokens[0], 0.0)


def _random_batch(rng, b, k, c, d):
  tokens = rng.normal(size=(b, k, d)).astype(np.float32)
  scores = rng.random((b, k, c + 1)).astype(np.float32)  # continuous: no ties
  labels = (rng.random((b, c)) < 0.4).astype(np.float32)
  mask = rng.random(b) < 0.8
  return tokens, scores, labels, mask


def test_batched_update_equals_sequential_and_oracle():
  rng = np.random.default_rng(0)
  c, slots, k, d = 4, 5, 3, 8
  update = jax.jit(memory.update_memory)
  bank_batched = bank_seq = memory.init_memory(c, slots, d)
  np_t, np_s = np.asarray(bank_batched.tokens), np.asarray(bank_batched.scores)
  for step in range(3):
    tokens, scores, labels, mask = _random_batch(rng, 6, k, c, d)
    bank_batched = update(bank_batched, tokens, scores, labels, mask)
    for i in range(6):
      bank_seq = update(bank_seq, tokens[i:i + 1], scores[i:i + 1], labels[i:i + 1], mask[i:i + 1])
    np_t, np_s = _np_update(np_t, np_s, tokens, scores, labels, mask)
    np.testing.assert_array_equal(bank_batched.scores, bank_seq.scores, err_msg=f"step {step}")
    np.testing.assert_array_equal(bank_batched.tokens, bank_seq.tokens, err_msg=f"step {step}")
    np.testing.assert_array_equal(bank_batched.scores, np_s, err_msg=f"step {step}")
    np.testing.assert_array_equal(bank_batched.tokens, np_t, err_msg=f"step {step}")
  assert np.isfinite(np.asarray(bank_batched.scores)).any()


def test_jit_equals_eager():
  rng = np.random.default_rng(1)
  bank = memory.init_memory(3, 2, 4)
  tokens, scores, labels, mask = _random_batch(rng, 4, 2, 3, 4)
  eager = memory.update_memory(bank, tokens, scores, labels, mask)
  jitted = jax.jit(memory.update_memory)(bank, tokens, scores, labels, mask)
  jax.tree.map(np.testing.assert_array_equal, eager, jitted)
  jax.tree.map(np.testing.assert_array_equal, memory.read_memory(eager, labels),
               jax.jit(memory.read_memory)(eager, labels))


def test_read_memory_masks_unlabelled_classes_and_empty_slots():
  bank = memory.MemoryBank(
      tokens=jnp.arange(3 * 2 * 2, dtype=jnp.float32).reshape(3, 2, 2),
      scores=jnp.array([[0.9, 0.8], [0.7, -jnp.inf], [-jnp.inf, -jnp.inf]]))
  labels = jnp.array([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
  tokens, mask = memory.read_memory(bank, labels)
  assert tokens.shape == (3, 6, 2)
  for b in range(3):
    np.testing.assert_array_equal(tokens[b], np.arange(12).reshape(6, 2))
  np.testing.assert_array_equal(mask, [[True, True, True, False, False, False],
                                       [False] * 6,
                                       [False, False, True, False, False, False]])
  # Compacted to 2 labelled classes per video: the valid slots first, in slot order.
  tokens, mask = memory.read_memory(bank, labels, max_labels=2)
  assert tokens.shape == (3, 4, 2)
  np.testing.assert_array_equal(mask, [[True, True, True, False], [False] * 4,
                                       [True, False, False, False]])
  np.testing.assert_array_equal(tokens[0, :3], np.arange(6).reshape(3, 2))
  np.testing.assert_array_equal(tokens[2, 0], [4.0, 5.0])
  with pytest.raises(ValueError, match="max_labels must be >= 1"):
    memory.read_memory(bank, labels, max_labels=0)


def test_bad_shapes_raise():
  bank = memory.init_memory(3, 2, 4)
  ok = dict(tokens=jnp.zeros((2, 5, 4)), token_scores=jnp.zeros((2, 5, 4)),
            labels=jnp.zeros((2, 3)), video_mask=jnp.ones(2, bool))
  for name, bad in (("tokens", jnp.zeros((2, 5, 3))), ("token_scores", jnp.zeros((2, 5, 3))),
                    ("labels", jnp.zeros((2, 4))), ("video_mask", jnp.ones(3, bool))):
    with pytest.raises(ValueError, match=name):
      memory.update_memory(bank, **(ok | {name: bad}))
  with pytest.raises(ValueError, match="labels"):
    memory.read_memory(bank, jnp.zeros((2, 4)))
