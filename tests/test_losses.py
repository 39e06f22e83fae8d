"""RSKP losses: hand cases, numpy oracle of model/losses.py, batched == sum of single videos."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gaufuse_jax._src import losses
from gaufuse_jax._src.models.rskp import RSKP

C, D = 3, 16


def test_nce_hand_values():
  probs = jnp.array([[0.5, 0.25, 0.25], [0.2, 0.3, 0.5]])
  targets = jnp.array([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
  expected = [-(0.5 * np.log(0.5) + 0.5 * np.log(0.25)), 0.0]
  np.testing.assert_allclose(losses.nce_loss(probs, targets), expected, rtol=1e-6)
  # A zero probability never gives inf / NaN.
  assert np.isfinite(losses.nce_loss(jnp.array([0.0, 1.0]), jnp.array([1.0, 0.0])))


def _np_att_loss(att):
  """AttLoss(8) of model/losses.py on one unpadded video."""
  k = max(len(att) // 8, 1)
  s = np.sort(att)
  return s[:k].mean() - s[::-1][:k].mean()


def test_attention_loss_hand_values_and_padding():
  att = np.array([0.9, 0.1, 0.5, 0.3, 0.7, 0.2, 0.8, 0.6, 0.4, 0.05,
                  0.95, 0.15, 0.55, 0.35, 0.75, 0.25, 0.85, 0.65])
  # valid 10 -> k = 1: 0.05 - 0.9; valid 18 -> k = 2: mean(0.05, 0.1) - mean(0.95, 0.9).
  padded = np.concatenate([att[:10], [1.0] * 8, [0.0] * 6])[None]  # padding must be ignored
  full = np.concatenate([att, [1.0, 0.0, 1.0, 0.0, 1.0, 0.0]])[None]
  batch = jnp.asarray(np.concatenate([padded, full]))
  out = losses.attention_loss(batch, jnp.array([10, 18]))
  np.testing.assert_allclose(out, [0.05 - 0.9, 0.075 - 0.925], rtol=1e-6)
  rng = np.random.default_rng(0)
  for n in (1, 3, 16, 17, 24):
    a = rng.random(24)
    np.testing.assert_allclose(losses.attention_loss(jnp.asarray(a)[None], jnp.array([n])),
                               [_np_att_loss(a[:n])], rtol=1e-6)
  assert float(losses.attention_loss(jnp.ones((1, 4)), jnp.array([0]))[0]) == 0.0


def _np_log_softmax(a):
  a = a - a.max(-1, keepdims=True)
  return a - np.log(np.exp(a).sum(-1, keepdims=True))


def _np_self_label(pred, target, t=0.2):
  """CategoryCrossEntropy(0.2) of model/losses.py on one unpadded video."""
  soft = np.exp(_np_log_softmax(target / t))
  return -(soft * _np_log_softmax(pred / t)).sum(-1).mean()


def test_self_label_loss_oracle_padding_and_stop_gradient():
  rng = np.random.default_rng(1)
  pred = rng.normal(size=(2, 7, C + 1)) * 3
  target = rng.normal(size=(2, 7, C + 1)) * 3
  vl = jnp.array([7, 4])
  out = losses.self_label_loss(jnp.asarray(pred), jnp.asarray(target), vl)
  np.testing.assert_allclose(out, [_np_self_label(pred[0], target[0]),
                                   _np_self_label(pred[1, :4], target[1, :4])], rtol=1e-5)
  # hand case: uniform prediction -> log(C + 1) whatever the target.
  uniform = losses.self_label_loss(jnp.zeros((1, 3, C + 1)), jnp.asarray(target[:1, :3]),
                                   jnp.array([3]))
  np.testing.assert_allclose(uniform, [np.log(C + 1)], rtol=1e-6)
  grad_target = jax.grad(lambda t: losses.self_label_loss(jnp.asarray(pred), t, vl).sum())(
      jnp.asarray(target))
  np.testing.assert_array_equal(grad_target, 0.0)
  assert float(losses.self_label_loss(jnp.ones((1, 3, C + 1)), jnp.ones((1, 3, C + 1)),
                                      jnp.array([0]))[0]) == 0.0


def _random_outputs(rng, b, t, with_r):
  def probs():
    return np.asarray(jax.nn.softmax(jnp.asarray(rng.normal(size=(b, C + 1)))))

  def branch():
    return {"frame_logits": rng.normal(size=(b, t, C + 1)) * 5, "attention": rng.random((b, t)),
            "video_ca": probs(), "video_cw": probs()}

  return {k: branch() for k in (("o", "m", "r") if with_r else ("o", "m"))}


@pytest.mark.parametrize("with_r", [False, True])
def test_rskp_losses_match_numpy_oracle(with_r):
  rng = np.random.default_rng(2 + with_r)
  out = _random_outputs(rng, 3, 9, with_r)
  labels = np.array([[1, 0, 0], [0, 1, 1], [0, 0, 0]], np.float32)
  vl = np.array([9, 5, 2])
  loss, metrics = losses.rskp_losses(jax.tree.map(jnp.asarray, out), jnp.asarray(labels),
                                     jnp.asarray(vl), spl_weight=0.5)
  for i in range(3):
    n = vl[i]
    f = np.append(labels[i], 0.0)
    bk = np.append(labels[i], 1.0)

    def nce(p, y):
      return -(y / (y.sum() + 1e-8) * np.log(p)).sum()

    weights = {"o": 1.0, "m": 1.0, "r": 0.5} if with_r else {"o": 1.0, "m": 1.0}
    fore = sum(w * nce(out[k]["video_ca"][i], f) for k, w in weights.items())
    back = sum(w * nce(out[k]["video_cw"][i], bk) for k, w in weights.items())
    att = _np_att_loss(out["o"]["attention"][i, :n])
    target = out["m"]["frame_logits"][i, :n]
    if with_r:
      target = 0.2 * out["r"]["frame_logits"][i, :n] + 0.8 * target
    spl = _np_self_label(out["o"]["frame_logits"][i, :n], target)
    expected = {"fore": fore, "back": back, "attention": att, "self_label": spl,
                "loss": fore + 0.2 * back + 0.1 * att + 0.5 * spl}
    for key, value in expected.items():
      np.testing.assert_allclose(metrics[key][i], value, rtol=1e-5, err_msg=key)
  np.testing.assert_array_equal(loss, metrics["loss"])


def test_rskp_losses_rejects_bad_labels():
  out = jax.tree.map(jnp.asarray, _random_outputs(np.random.default_rng(4), 2, 5, False))
  with pytest.raises(ValueError, match="labels"):
    losses.rskp_losses(out, jnp.zeros((2, C + 1)), jnp.array([5, 5]), spl_weight=1.0)


def test_padded_batch_sum_equals_single_video_losses():
  """A padded batch of 10 videos, summed, is the reference's 10 accumulated single-video losses."""
  model = RSKP(num_classes=C, feature_dim=D)
  rng = np.random.default_rng(5)
  lengths = [17, 1, 17, 1, 17, 17, 1, 17, 1, 17]  # 2 distinct shapes: 2 compilations
  t_max = max(lengths)
  feats = rng.normal(size=(10, t_max, D)).astype(np.float32)
  labels = np.zeros((10, C), np.float32)
  labels[np.arange(10), rng.integers(0, C, 10)] = 1.0
  labels[3, :] = 1.0
  mem = rng.normal(size=(10, 6, D)).astype(np.float32)
  mem_mask = rng.random((10, 6)) < 0.7
  params = jax.jit(model.init, static_argnames="train")(
      {"params": jax.random.key(0)}, jnp.asarray(feats[:1]), jnp.array([t_max]), train=False)

  @jax.jit
  def total(p, x, lab, vl, m, mm):
    out = model.apply(p, x, vl, m, mm, train=False)
    return jnp.sum(losses.rskp_losses(out, lab, vl, spl_weight=0.5)[0])

  grad_fn = jax.value_and_grad(total)
  batch_loss, batch_grad = grad_fn(params, feats, labels, jnp.array(lengths), mem, mem_mask)
  single_loss, single_grad = 0.0, jax.tree.map(jnp.zeros_like, params)
  for i, n in enumerate(lengths):
    value, grad = grad_fn(params, feats[i:i + 1, :n], labels[i:i + 1], jnp.array([n]),
                          mem[i:i + 1], mem_mask[i:i + 1])
    single_loss += value
    single_grad = jax.tree.map(jnp.add, single_grad, grad)
  np.testing.assert_allclose(batch_loss, single_loss, rtol=1e-5)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5),
               batch_grad, single_grad)
