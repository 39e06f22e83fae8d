"""Backbones behind one interface (``gaufuse_jax.Backbone``): STPN + embedding and BaS-Net
(shapes, padding, a numpy port of BaS-Net's ``model.py`` / ``train.py``, STPN's equations), one
training step of each through the library's step, the registry's errors, and a user-defined
module trained end to end (pseudo labels included) without editing the library."""

import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

import gaufuse_jax
from configs import base
from configs import tiny
from gaufuse_jax import models
from gaufuse_jax import train
from gaufuse_jax._src import config_validation
from gaufuse_jax._src import programs
from gaufuse_jax._src import schedule as schedule_lib
from gaufuse_jax._src import steps
from gaufuse_jax._src import train_state as train_state_lib
from gaufuse_jax._src.data import embedded
import conftest

C, D = 3, 8
SMALL = {"stpn": dict(attention_dim=4), "basnet": dict(filter_dim=4)}


def _model(name):
  return models.get_backbone(name)(num_classes=C, feature_dim=D, **SMALL[name])


def _videos(lengths, t_pad, seed=0):
  """Random features ``[B, t_pad, D]`` with garbage (not zeros) past each video's length."""
  rng = np.random.default_rng(seed)
  return jnp.asarray(rng.normal(size=(len(lengths), t_pad, D)), jnp.float32), jnp.asarray(lengths)


@pytest.mark.parametrize("name", ["stpn", "basnet"])
def test_padding_and_batching_change_nothing(name):
  """Each video alone, unpadded, equals its row of a batch padded with garbage to a longer T:
  outputs, CAS, video scores, losses and pseudo-label loss, in training mode (dropout on: one
  key per video; without dropout the same code runs minus the masks)."""
  train_mode = True
  model = _model(name)
  lengths = [11, 5, 8]
  x, n = _videos(lengths, 16)
  keys = jax.random.split(jax.random.PRNGKey(3), 3)
  params = model.init(jax.random.PRNGKey(0), x, n, train=False)
  labels = jnp.asarray([[1, 0, 0], [0, 1, 1], [0, 0, 1]], jnp.float32)
  pseudo = jax.random.normal(jax.random.PRNGKey(4), (3, 16, C + 1))

  def everything(x, n, labels, pseudo, keys):
    out = model.apply(params, x, n, train=train_mode, dropout_keys=keys)
    cas, video = model.scores(out, frame_coef=0.8, video_coef=0.6)
    loss, terms = model.losses(out, labels, n, {"spl_weight": 1.0})
    valid = models.snippet_mask(n, x.shape[1])
    pl = model.pseudo_label_loss(out, pseudo, valid, frame_coef=0.8)
    return cas, video, loss, terms, pl, model.attention(out)

  batch = jax.jit(everything)(x, n, labels, pseudo, keys)
  assert batch[0].shape == (3, 16, C + 1) and batch[1].shape == (3, C + 1)
  assert set(batch[3]) == set(model.loss_terms)
  np.testing.assert_array_equal(np.asarray(batch[0][1, 5:]), 0.0)  # padded snippets
  assert np.all((np.asarray(batch[0]) >= 0) & (np.asarray(batch[0]) <= 1))
  for b, t in enumerate(lengths):
    alone = everything(x[b:b + 1, :t], n[b:b + 1], labels[b:b + 1], pseudo[b:b + 1, :t],
                       keys[b:b + 1])
    np.testing.assert_allclose(batch[0][b, :t], alone[0][0], rtol=1e-5, atol=1e-6)
    for i in (1, 2, 4, 5):
      np.testing.assert_allclose(np.asarray(batch[i])[b, ..., :t] if i == 5 else batch[i][b],
                                 alone[i][0], rtol=1e-5, atol=1e-6)
    for k in model.loss_terms:
      np.testing.assert_allclose(batch[3][k][b], alone[3][k][0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["stpn", "basnet"])
def test_an_empty_batch_slot_gives_finite_losses_and_gradients(name):
  """The last batch of an epoch pads with empty slots (no snippet, no label): their losses and
  the gradients stay finite (the step multiplies them by 0, and NaN * 0 is NaN)."""
  model = _model(name)
  x, n = _videos([9, 0], 12)
  labels = jnp.asarray([[1, 0, 1], [0, 0, 0]], jnp.float32)
  params = model.init(jax.random.PRNGKey(0), x, n, train=False)

  def total(params):
    out = model.apply(params, x, n, train=False)
    loss, _ = model.losses(out, labels, n, {"spl_weight": 1.0})
    return jnp.sum(loss * jnp.array([1.0, 0.0])), loss

  (_, loss), grads = jax.value_and_grad(total, has_aux=True)(params)
  assert np.all(np.isfinite(loss))
  assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))


def _conv1d_same(x, kernel, bias):
  """PyTorch ``Conv1d(padding=(k-1)//2)`` on one video ``[T, Din]`` with a flax kernel
  ``[k, Din, Dout]``."""
  k = kernel.shape[0]
  padded = np.pad(x, (((k - 1) // 2, k // 2), (0, 0)))
  out = sum(padded[i:i + len(x)] @ kernel[i] for i in range(k))
  return out if bias is None else out + bias


def _basnet_port(p, x, label, alpha=1e-4):
  """BaSNet-pytorch ``model.py:BaS_Net.forward`` (eval mode) and ``train.py:BaS_Net_loss`` on
  one unpadded video, in numpy."""
  leaky = lambda v: np.where(v > 0, v, 0.01 * v)
  sigmoid = lambda v: 1 / (1 + np.exp(-v))
  softmax = lambda v: np.exp(v - v.max()) / np.exp(v - v.max()).sum()
  w = sigmoid(_conv1d_same(leaky(_conv1d_same(x, p["filter_1"]["kernel"], p["filter_1"]["bias"])),
                           p["filter_2"]["kernel"], p["filter_2"]["bias"]))  # [T, 1]

  def cas_module(v):
    h = leaky(_conv1d_same(v, p["cas_1"]["kernel"], p["cas_1"]["bias"]))
    h = leaky(_conv1d_same(h, p["cas_2"]["kernel"], p["cas_2"]["bias"]))
    return _conv1d_same(h, p["cas_3"]["kernel"], None)

  k = len(x) // 8
  cas_base, cas_supp = cas_module(x), cas_module(w * x)
  score_base = softmax(np.mean(-np.sort(-cas_base, axis=0)[:k], axis=0))
  score_supp = softmax(np.mean(-np.sort(-cas_supp, axis=0)[:k], axis=0))

  def bce(prob, target):
    target = target / target.sum()
    return -np.mean(target * np.maximum(np.log(prob), -100)
                    + (1 - target) * np.maximum(np.log(1 - prob), -100))

  loss = (bce(score_base, np.append(label, 1.0)) + bce(score_supp, np.append(label, 0.0))
          + alpha * np.abs(w).sum())
  return cas_supp, score_supp, loss


def _minmax_norm_port(act_map):
  """BaSNet-pytorch ``utils.py:minmax_norm`` over time ``[T, C]``."""
  max_val, min_val = np.maximum(act_map.max(0), 0), np.maximum(act_map.min(0), 0)
  delta = max_val - min_val
  delta[delta <= 0] = 1
  return np.clip((act_map - min_val) / delta, 0, 1)


def test_basnet_matches_a_numpy_port_of_the_authors_code():
  model = _model("basnet")
  lengths = [24, 17]
  x, n = _videos(lengths, 24, seed=1)
  params = model.init(jax.random.PRNGKey(1), x, n, train=False)
  out = model.apply(params, x, n, train=False)
  labels = np.array([[1, 0, 0], [0, 1, 1]], np.float32)
  loss, _ = model.losses(out, labels, n, {})
  cas, _ = model.scores(out, frame_coef=0.8, video_coef=0.6)
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), params["params"])
  for b, t in enumerate(lengths):
    cas_supp, score_supp, port_loss = _basnet_port(p, np.asarray(x[b, :t], np.float64), labels[b])
    np.testing.assert_allclose(out["cas_supp"][b, :t], cas_supp, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out["score_supp"][b], score_supp, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(loss[b], port_loss, rtol=1e-4)
    np.testing.assert_allclose(cas[b, :t, :C], _minmax_norm_port(cas_supp)[:, :C], atol=1e-4)
    np.testing.assert_array_equal(cas[b, t:], 0.0)


def test_stpn_follows_its_equations():
  """Attention-weighted pooling (eq. 1), BCE + beta * L1 (eq. 2-3), weighted T-CAM (eq. 4) and
  a background column that makes the snippet distribution sum to 1."""
  model = _model("stpn")
  x, n = _videos([9], 9, seed=2)
  params = model.init(jax.random.PRNGKey(2), x, n, train=False)
  out = model.apply(params, x, n, train=False)
  p = jax.tree.map(np.asarray, params["params"])
  dense = lambda v, name: v @ p[name]["kernel"] + p[name]["bias"]
  sigmoid = lambda v: 1 / (1 + np.exp(-v))
  emb = np.maximum(dense(np.asarray(x[0]), "embedding"), 0)
  att = sigmoid(dense(np.maximum(dense(emb, "attention_hidden"), 0), "attention_out"))[:, 0]
  np.testing.assert_allclose(out["attention"][0], att, rtol=1e-5)
  video_logits = dense((att @ emb) / (att.sum() + 1e-6), "classifier")
  np.testing.assert_allclose(out["video_logits"][0], video_logits, rtol=1e-4, atol=1e-6)
  y = np.array([1.0, 0.0, 1.0])
  prob = sigmoid(video_logits)
  expected = -np.sum(y * np.log(prob) + (1 - y) * np.log(1 - prob)) + 1e-4 * att.sum()
  np.testing.assert_allclose(model.losses(out, y[None], n, {})[0][0], expected, rtol=1e-5)
  cas, video = model.scores(out, frame_coef=0.8, video_coef=0.6)
  np.testing.assert_allclose(cas[0, :, :C], att[:, None] * sigmoid(dense(emb, "classifier")),
                             rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(cas[0, :, C], 1 - att, rtol=1e-5)
  np.testing.assert_allclose(video[0, C], 1 - att.mean(), rtol=1e-5)
  np.testing.assert_allclose(np.exp(model.snippet_log_probs(out)).sum(-1)[0], 1.0, rtol=1e-5)


@pytest.mark.parametrize("name", ["stpn", "basnet", "user"])
def test_one_train_step_uses_the_backbone_loss_and_the_pseudo_labels(name):
  """One optimizer step of the library's training step: finite loss terms of the backbone,
  changed parameters, and a pseudo-label term that changes the update; ``user`` is a module
  defined in this file, selected as ``"module:Class"``."""
  if name == "user":
    config = tiny.get_config()
    config.model = ml_collections.ConfigDict({"backbone": f"{__name__}:TinyBackbone"})
  else:
    config = base.use_backbone(tiny.get_config(), name)
    config.model.update(SMALL[name])
  ds, _ = embedded.make_embedded_dataset(seed=0, num_train=4, num_test=1, num_classes=C,
                                         feature_dim=D)
  model = programs.build_model(config, ds)
  assert type(model).__name__ == {"stpn": "STPN", "basnet": "BaSNet", "user": "TinyBackbone"}[name]
  tx = train_state_lib.make_optimizer(config)
  t_max = int(ds.lengths.max())
  state = train_state_lib.create_train_state(
      model, tx, jax.random.PRNGKey(0), num_videos=4, max_snippets=t_max, feature_dim=D,
      num_classes=C, memory_slots=2)
  labels = jax.random.uniform(jax.random.PRNGKey(5), state.generations.shape[1:])
  state = state.replace(generations=jnp.stack([labels, 0 * labels]))
  batch = next(gaufuse_jax.iterate_batches(ds, batch_size=4, seed=0, epoch=0,
                                           bucket_sizes=(t_max,)))
  one_device = jax.pmap(
      lambda s, b, h: steps.train_step(s, b, h, model=model, tx=tx, use_memory=False,
                                       pseudo_frame_coef=0.8),
      axis_name=steps.AXIS, devices=jax.local_devices()[:1])
  put = lambda tree: jax.tree.map(lambda a: np.asarray(a)[None], tree)
  step = lambda s, b, h: jax.tree.map(lambda a: a[0], one_device(put(s), b, put(h)))
  plan = schedule_lib.epoch_plan(config.schedule, config.schedule.num_epochs - 1, memory=False)
  hparams = plan.step_hparams()
  assert plan.label_mode == schedule_lib.LABEL_DELTA and hparams["pseudo_weight"] > 0
  new, metrics = step(state, batch, hparams)
  assert set(metrics) == {"loss", "num_videos", "pseudo", *model.loss_terms}
  assert all(np.isfinite(float(v)) for v in metrics.values()) and float(metrics["pseudo"]) != 0
  moved = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), new.params, state.params)
  assert min(jax.tree.leaves(moved)) > 0
  without = step(state, batch, dict(hparams, pseudo_weight=np.float32(0.0)))[0]
  assert not all(jax.tree.leaves(jax.tree.map(jnp.array_equal, new.params, without.params)))


class TinyBackbone(gaufuse_jax.Backbone):
  """A user's backbone: one Dense layer scores every snippet over ``C + 1`` classes."""

  hidden: int = 16
  loss_terms = ("video_ce",)

  @nn.compact
  def __call__(self, features, valid_length, *, train, dropout_keys=None):
    mask = models.snippet_mask(valid_length, features.shape[1])
    h = nn.relu(nn.Dense(self.hidden)(features))
    logits = models.masked(nn.Dense(self.num_classes + 1)(h), mask)
    video = jax.nn.softmax(models.top_k_mean(logits, valid_length, 8), axis=-1)
    return {"logits": logits, "video": video, "mask": mask}

  def losses(self, outputs, labels, valid_length, hparams):
    target = jnp.concatenate([labels, jnp.ones_like(labels[:, :1])], -1)
    target = target / jnp.sum(target, -1, keepdims=True)
    ce = -jnp.sum(target * jnp.log(outputs["video"] + 1e-8), -1)
    return ce, {"video_ce": ce}

  def scores(self, outputs, *, frame_coef, video_coef):
    cas = models.masked(jax.nn.softmax(outputs["logits"], -1), outputs["mask"])
    return cas, outputs["video"]

  def snippet_log_probs(self, outputs):
    return jax.nn.log_softmax(outputs["logits"], -1)


@pytest.mark.slow  # the default run trains a user's backbone end to end in plug_in.ipynb
def test_a_user_backbone_trains_end_to_end_with_gaufuse(tmp_path):
  """A module defined here, registered by name, trained by ``train_and_evaluate`` through every
  phase of the schedule (its memory phases skipped): pseudo labels generated and used."""
  gaufuse_jax.register_backbone("test_tiny_backbone", TinyBackbone)
  config = conftest.shared_config()
  config.model = ml_collections.ConfigDict({"backbone": "test_tiny_backbone", "hidden": 8})
  metrics = train.train_and_evaluate(config, str(tmp_path))
  assert np.isfinite(metrics["wtalc/mAP@0.1:0.7"])
  log = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
  assert max(r.get("pseudo/instances", 0) for r in log) > 0
  assert max(r.get("train/pseudo", 0) for r in log) > 0
  assert all("train/fore" not in r for r in log) and any("train/video_ce" in r for r in log)


def test_the_registry_and_the_config_name_the_backbone():
  assert models.get_backbone("gaufuse_jax._src.models.stpn:STPN") is gaufuse_jax.STPN
  with pytest.raises(ValueError, match=r"config\.model\.backbone: expected one of .*'basnet'"):
    models.get_backbone("stpm")
  with pytest.raises(ValueError, match="cannot import 'numpy:nope'"):
    models.get_backbone("numpy:nope")
  with pytest.raises(ValueError, match="is not a subclass of gaufuse_jax.Backbone"):
    models.get_backbone("flax.linen:Dense")
  with pytest.raises(TypeError, match="is not a subclass"):
    gaufuse_jax.register_backbone("dense", nn.Dense)
  with pytest.raises(ValueError, match="'rskp' is already RSKP"):
    gaufuse_jax.register_backbone("rskp", TinyBackbone)
  config = base.use_backbone(tiny.get_config(), "stpn")
  config.model.num_tokens = 8  # an RSKP field
  config.model.dropout_rate = 1.5
  with pytest.raises(config_validation.ConfigError, match=r"(?s)2 bad config field.*"
                     r"config\.model\.num_tokens: expected a field of the STPN backbone.*"
                     r"config\.model\.dropout_rate"):
    config_validation.validate_config(config, data=False)
  config = base.use_backbone(tiny.get_config(), f"{__name__}:TinyBackbone")
  assert config.model.to_dict() == {"backbone": f"{__name__}:TinyBackbone", "hidden": 16}
  config_validation.validate_config(config, data=False)
  config.model = ml_collections.ConfigDict({"backbone": "stpm"})
  with pytest.raises(config_validation.ConfigError, match=r"config\.model\.backbone: expected a "
                     r"registered name \[.*'stpn'.*\] or an importable .*found 'stpm'"):
    config_validation.validate_config(config, data=False)


class _NoBackground(TinyBackbone):
  def scores(self, outputs, *, frame_coef, video_coef):
    cas, video = super().scores(outputs, frame_coef=frame_coef, video_coef=video_coef)
    return cas[..., :-1], video


class _WrongTerms(TinyBackbone):
  loss_terms = ("video_ce", "sparsity")


class _Broken(TinyBackbone):
  def snippet_log_probs(self, outputs):
    return outputs["log_probs"]


@pytest.mark.parametrize("cls, message", [
    (_NoBackground, r"scores\(\) CAS must be a float array of shape \[2, 16, 4\] for B=2 videos, "
                    r"T=16 snippets, C\+1=4 classes; found float32\[2, 16, 3\]"),
    (_WrongTerms, r"losses\(\) must return \(loss, terms\) with a term for each of loss_terms "
                  r"\('video_ce', 'sparsity'\), found \['video_ce'\]"),
    (_Broken, r"a forward pass, .* failed: KeyError: 'log_probs'"),
])
def test_a_wrong_user_backbone_is_named_before_any_work(cls, message, tmp_path):
  config = tiny.get_config()
  config.model = ml_collections.ConfigDict({"backbone": f"{__name__}:{cls.__name__}"})
  ds, _ = embedded.make_embedded_dataset(seed=0, num_train=2, num_test=1, num_classes=C,
                                         feature_dim=D)
  with pytest.raises(ValueError, match=rf"backbone {cls.__name__}: {message}"):
    programs.build_model(config, ds)
  # A run is refused by the config check, before any data or file (2 classes there).
  with pytest.raises(config_validation.ConfigError, match=r"config\.model\.backbone: expected a "
                     r"backbone that gives what the library reads"):
    train.train_and_evaluate(config, str(tmp_path / "run"))
  assert not (tmp_path / "run").exists()
