"""RSKP model: shapes, initialisation, padding invariance, numpy oracle of the reference
formulas."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gaufuse_jax._src.models.rskp import RSKP
from gaufuse_jax._src.models import rskp
from gaufuse_jax._src.models import snippets

C, D, K = 4, 16, 8
BRANCH_KEYS = ("frame_logits", "attention", "video_ca", "video_cw")


def _model(**kw):
  return RSKP(num_classes=C, feature_dim=D, **kw)


def _apply(model, *args, **kwargs):
  """Jitted ``model.apply`` (eager dispatch of the whole model is slow on a shared CPU)."""
  return jax.jit(model.apply, static_argnames="train")(*args, **kwargs)


def _params(model, seed=0, t=6):
  x = jnp.zeros((1, t, D))
  init = jax.jit(model.init, static_argnames="train")
  return init({"params": jax.random.key(seed)}, x, jnp.array([t]), train=False)


# ---------------------------------------------------- numpy oracle of the authors' model formulas
def _np_l2n(f):
  return f / (np.linalg.norm(f, axis=-1, keepdims=True) + 1e-9)


def _np_softmax(a, axis):
  e = np.exp(a - a.max(axis=axis, keepdims=True))
  return e / e.sum(axis=axis, keepdims=True)


def _np_sigmoid(a):
  return 1.0 / (1.0 + np.exp(-a))


def _np_random_walk(x, y, w):
  """`random_walk` of model/main_branch.py for one video (x [T, D], y [K, D])."""
  z = _np_softmax(_np_l2n(y) @ _np_l2n(x).T * 5.0, 0)  # [K, T]
  z_hat = z / (z.sum(-1, keepdims=True) + 1e-9)
  a = z.T @ z_hat
  inv = np.linalg.inv(np.eye(x.shape[0]) - w**2 * a)
  return (1 - w) * inv @ (w * z.T @ y + x)


def _np_prediction(x, ac, fg):
  """`PredictionModule` for one video; returns (ca_pred, cw_pred, att, frm_scr)."""
  xn, acn, fgn = _np_l2n(x), _np_l2n(ac), _np_l2n(fg)
  frm = xn @ acn.T * 20.0
  att = _np_sigmoid(xn @ fgn * 20.0)
  ca_w = att / (att.sum() + 1e-5)
  cw = _np_sigmoid(frm)
  cw_w = cw / (cw.sum(0, keepdims=True) + 1e-5)
  ca_feat = _np_l2n(ca_w @ x)
  cw_feat = _np_l2n(cw_w.T @ x)  # [C+1, D]
  ca_pred = _np_softmax(ca_feat @ acn.T * 20.0, -1)
  cw_pred = _np_softmax((cw_feat * acn).sum(-1) * 20.0, -1)
  return ca_pred, cw_pred, att, frm


def _np_forward(p, feats, memory=None):
  """WSTAL.forward (eval mode) + the memory branch of method.py, for one unpadded video."""
  x = np.maximum(feats @ p["embedding"]["kernel"] + p["embedding"]["bias"], 0.0)
  mu = p["mu"]
  xn = _np_l2n(x)
  for _ in range(2):
    z = _np_softmax(_np_l2n(mu) @ xn.T * 5.0, 0)
    mu = (z / (z.sum(-1, keepdims=True) + 1e-9)) @ x
  out = {"o": _np_prediction(x, p["class_centres"], p["fg_centre"]),
         "m": _np_prediction(_np_random_walk(x, mu, 0.5), p["class_centres"], p["fg_centre"]),
         "tokens": mu,
         "token_scores": _np_softmax(_np_l2n(mu) @ _np_l2n(p["class_centres"]).T * 20.0, -1)}
  if memory is not None:
    out["r"] = _np_prediction(_np_random_walk(x, memory, 0.5), p["class_centres"], p["fg_centre"])
  return out


def _assert_branch(ours, ref, rtol, atol):
  ca, cw, att, frm = ref
  np.testing.assert_allclose(ours["video_ca"], ca, rtol=rtol, atol=atol)
  np.testing.assert_allclose(ours["video_cw"], cw, rtol=rtol, atol=atol)
  np.testing.assert_allclose(ours["attention"], att, rtol=rtol, atol=atol)
  np.testing.assert_allclose(ours["frame_logits"], frm, rtol=rtol, atol=atol)


# ---------------------------------------------------------------- tests
def test_parameter_shapes_and_initialisation():
  params = _params(_model())["params"]
  assert params["mu"].shape == (K, D)
  assert params["class_centres"].shape == (C + 1, D)
  np.testing.assert_array_equal(params["fg_centre"], -params["class_centres"][-1])
  np.testing.assert_array_equal(params["embedding"]["bias"], np.zeros(D))
  # xavier uniform: |w| <= sqrt(6 / (fan_in + fan_out)), and not degenerate.
  for name, arr in (("mu", params["mu"]), ("class_centres", params["class_centres"]),
                    ("kernel", params["embedding"]["kernel"])):
    bound = np.sqrt(6.0 / sum(arr.shape))
    assert np.abs(arr).max() <= bound + 1e-7, name
    assert np.abs(arr).max() > 0.5 * bound, name


def test_output_shapes_with_and_without_memory():
  model = _model()
  params = _params(model)
  x = jax.random.normal(jax.random.key(1), (3, 11, D))
  vl = jnp.array([11, 5, 1])
  out = _apply(model, params, x, vl, train=False)
  assert set(out) == {"o", "m", "tokens", "token_scores"}
  for b in ("o", "m"):
    assert {k: out[b][k].shape for k in BRANCH_KEYS} == {
        "frame_logits": (3, 11, C + 1), "attention": (3, 11), "video_ca": (3, C + 1),
        "video_cw": (3, C + 1)}
    np.testing.assert_allclose(out[b]["video_ca"].sum(-1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(out[b]["video_cw"].sum(-1), 1.0, rtol=1e-5)
  assert out["tokens"].shape == (3, K, D)
  assert out["token_scores"].shape == (3, K, C + 1)
  np.testing.assert_allclose(out["token_scores"].sum(-1), 1.0, rtol=1e-5)
  mem = jax.random.normal(jax.random.key(2), (3, 7, D))
  out = _apply(model, params, x, vl, mem, train=False)
  assert out["r"]["frame_logits"].shape == (3, 11, C + 1)


def _pad(x, t, seed):
  """Pad [T0, D] to [t, D] with garbage (padding must be ignored whatever its content)."""
  junk = 10.0 * jax.random.normal(jax.random.key(seed), (t - x.shape[0], D))
  return jnp.concatenate([x, junk], 0)


def test_padding_changes_nothing():
  model = _model()
  params = _params(model)
  t0 = 9
  video = jax.random.normal(jax.random.key(3), (t0, D))
  mem = jax.random.normal(jax.random.key(4), (1, 10, D))
  mem_mask = jnp.array([[True, False, True, True, False, True, True, True, False, True]])
  base = _apply(model, params, video[None], jnp.array([t0]), mem, mem_mask, train=False)
  for t in (t0, 13, 32):
    out = _apply(model, params, _pad(video, t, t)[None], jnp.array([t0]), mem, mem_mask,
                      train=False)
    for b in ("o", "m", "r"):
      for key in ("frame_logits", "attention"):
        np.testing.assert_allclose(out[b][key][0, :t0], base[b][key][0], rtol=1e-4, atol=1e-5)
        np.testing.assert_array_equal(out[b][key][0, t0:], 0.0)
      for key in ("video_ca", "video_cw"):
        np.testing.assert_allclose(out[b][key], base[b][key], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(out["tokens"], base["tokens"], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(out["token_scores"], base["token_scores"], rtol=1e-4, atol=1e-6)


def test_matches_numpy_reference_formulas():
  """EM, random walk (with torch.inverse), prediction head and memory branch, in float64."""
  with jax.enable_x64(True):
    model = _model()
    params = jax.tree.map(lambda a: a.astype(jnp.float64), _params(model)["params"])
    x = jax.random.normal(jax.random.key(5), (2, 10, D), jnp.float64)
    vl = jnp.array([10, 6])
    mem = jax.random.normal(jax.random.key(6), (2, 6, D), jnp.float64)
    mem_mask = jnp.array([[True] * 6, [False, True, True, False, False, True]])
    out = _apply(model, {"params": params}, x, vl, mem, mem_mask, train=False)
    np_params = jax.tree.map(np.asarray, params)
    for i in range(2):
      n = int(vl[i])
      ref = _np_forward(np_params, np.asarray(x[i, :n]),
                        np.asarray(mem[i])[np.asarray(mem_mask[i])])
      for b in ("o", "m", "r"):
        ours = {k: np.asarray(v[i]) for k, v in out[b].items()}
        ours["frame_logits"], ours["attention"] = ours["frame_logits"][:n], ours["attention"][:n]
        _assert_branch(ours, ref[b], rtol=1e-9, atol=1e-10)
      for key in ("tokens", "token_scores"):
        np.testing.assert_allclose(out[key][i], ref[key], rtol=1e-9, atol=1e-12)


def test_random_walk_without_valid_tokens_is_scaled_identity():
  x = jax.random.normal(jax.random.key(7), (1, 5, D))
  mask = jnp.array([[True] * 4 + [False]])
  x = jnp.where(mask[..., None], x, 0.0)
  tokens = jax.random.normal(jax.random.key(8), (1, 3, D))
  out = rskp.random_walk(x, mask, tokens, jnp.zeros((1, 3), bool), walk_weight=0.5, scale=5.0)
  np.testing.assert_allclose(out.dense(), 0.5 * x, rtol=1e-6)


def dense_random_walk(x, mask, tokens, token_mask, *, walk_weight, scale):
  """The authors' walk: the dense ``[T, T]`` solve of ``model/main_branch.py:random_walk``."""
  w = walk_weight
  z, z_hat = rskp.token_assignment(tokens, token_mask, x, mask, scale=scale)
  affinity = jnp.einsum("bkt,bks->bts", z, z_hat)
  rhs = w * jnp.einsum("bkt,bkd->btd", z, tokens) + snippets.as_snippets(x).array()
  return (1.0 - w) * jnp.linalg.solve(jnp.eye(x.shape[1]) - w**2 * affinity, rhs)


def _walk_case(t, k, seed):
  """ReLU-like snippet features with 3 padded snippets, tokens, a token mask with one hole."""
  keys = jax.random.split(jax.random.key(seed), 2)
  mask = jnp.arange(t)[None] < t - 3
  x = jnp.where(mask[..., None], jax.nn.relu(jax.random.normal(keys[0], (1, t, D))), 0.0)
  tokens = jax.nn.relu(jax.random.normal(keys[1], (1, k, D)))
  token_mask = (jnp.arange(k) != 1)[None] if k > 2 else jnp.ones((1, k), bool)
  return x, mask, tokens, token_mask


# K = 1 and K > T with padding in the default run; the larger shapes with -m slow.
@pytest.mark.parametrize("t,k", [pytest.param(40, 8, marks=pytest.mark.slow), (12, 1), (9, 30),
                                 pytest.param(64, 100, marks=pytest.mark.slow)])
def test_low_rank_walk_equals_dense_solve_values_and_gradients(t, k):
  """Woodbury walk == dense [T, T] solve, in float64: the features, and the gradients of a
  head's outputs w.r.t. the snippets and the tokens (K = 1, K > T and padding included)."""
  with jax.enable_x64(True):
    x, mask, tokens, token_mask = (jnp.asarray(a, jnp.float64) if a.dtype != bool else a
                                   for a in _walk_case(t, k, seed=t + k))
    kw = dict(walk_weight=0.5, scale=5.0)
    centres = jax.random.normal(jax.random.key(1), (C + 1, D), jnp.float64)
    np.testing.assert_allclose(rskp.random_walk(x, mask, tokens, token_mask, **kw).dense(),
                               dense_random_walk(x, mask, tokens, token_mask, **kw),
                               rtol=1e-10, atol=1e-12)

    def head_loss(walk):
      def loss(x, tokens):
        out = rskp.prediction_head(walk(x, mask, tokens, token_mask, **kw), mask, centres,
                                   -centres[-1], scale=20.0)
        return (jnp.sum(jnp.sin(out["frame_logits"])) + jnp.sum(out["attention"] ** 2)
                + jnp.sum(jnp.log(out["video_ca"])) + jnp.sum(jnp.log(out["video_cw"])))
      return jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))

    (ours, ours_grads), (ref, ref_grads) = (head_loss(rskp.random_walk)(x, tokens),
                                            head_loss(dense_random_walk)(x, tokens))
    np.testing.assert_allclose(ours, ref, rtol=1e-10)
    for a, b in zip(ours_grads, ref_grads):
      np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-10)
    np.testing.assert_array_equal(ours_grads[0][0, t - 3:], 0.0)  # padding gets no gradient


def test_model_with_dense_walk_matches_at_thumos_length():
  """The whole model with the authors' dense walk and with ours, on a 2,208-snippet video
  (THUMOS14's longest training videos) in float32: outputs within 1e-4."""
  model, dense = _model(), _model(walk=dense_random_walk)
  params = _params(model)
  x = jax.nn.relu(jax.random.normal(jax.random.key(11), (1, 2208, D)))
  mem = jax.nn.relu(jax.random.normal(jax.random.key(12), (1, 10, D)))
  ours = _apply(model, params, x, jnp.array([2200]), mem, train=False)
  ref = _apply(dense, params, x, jnp.array([2200]), mem, train=False)
  for b in ("o", "m", "r"):
    for key in BRANCH_KEYS:
      np.testing.assert_allclose(ours[b][key], ref[b][key], rtol=1e-4, atol=1e-4)


def test_dropout_uses_dropout_rng_only_in_training():
  model = _model()
  params = _params(model)
  x = jax.random.normal(jax.random.key(9), (2, 8, D))
  vl = jnp.array([8, 4])

  def run(seed):
    return _apply(model, params, x, vl, train=True, rngs={"dropout": jax.random.key(seed)})

  a, b, c = run(0), run(0), run(1)
  np.testing.assert_array_equal(a["o"]["frame_logits"], b["o"]["frame_logits"])
  assert not np.allclose(a["o"]["frame_logits"], c["o"]["frame_logits"])
  eval_a = _apply(model, params, x, vl, train=False, rngs={"dropout": jax.random.key(0)})
  eval_b = _apply(model, params, x, vl, train=False)
  np.testing.assert_array_equal(eval_a["m"]["frame_logits"], eval_b["m"]["frame_logits"])


def test_jit_equals_eager_and_gradients_are_finite():
  model = _model()
  params = _params(model)
  x = jax.random.normal(jax.random.key(10), (2, 12, D))
  vl = jnp.array([12, 3])
  mem = jax.random.normal(jax.random.key(11), (2, 5, D))
  mem_mask = jnp.array([[True] * 5, [False] * 5])

  def f(p):
    return model.apply(p, x, vl, mem, mem_mask, train=True, rngs={"dropout": jax.random.key(0)})

  eager, jitted = f(params), jax.jit(f)(params)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), eager, jitted)

  def scalar(p):
    out = f(p)
    return sum(jnp.sum(out[b]["frame_logits"]) + jnp.sum(jnp.log(out[b]["video_ca"]))
               for b in ("o", "m", "r"))

  grads = jax.jit(jax.grad(scalar))(params)
  assert all(bool(jnp.all(jnp.isfinite(g))) for g in jax.tree.leaves(grads))
  assert float(jnp.abs(grads["params"]["mu"]).sum()) > 0


def test_bad_shapes_raise():
  model = _model()
  params = _params(model)
  x = jnp.zeros((2, 5, D))
  with pytest.raises(ValueError, match="valid_length"):
    model.apply(params, x, jnp.array([5]), train=False)
  with pytest.raises(ValueError, match="memory_tokens"):
    model.apply(params, x, jnp.array([5, 5]), jnp.zeros((2, 3, D + 1)), train=False)
  with pytest.raises(ValueError, match="memory_mask"):
    model.apply(params, x, jnp.array([5, 5]), jnp.zeros((2, 3, D)), jnp.ones((2, 4), bool),
                train=False)
  with pytest.raises(ValueError, match="features"):
    model.apply(params, jnp.zeros((5, D)), jnp.array([5]), train=False)


def test_low_rank_backward_gives_the_autodiff_gradients():
  """The model's gradients with ``low_rank_backward`` (one product gathers the embeddings'
  gradient) equal plain autodiff, in float64: all parameters, memory branch on, dropout on, a
  padded video, and the forward outputs unchanged."""
  with jax.enable_x64(True):
    fast, plain = _model(), _model(low_rank_backward=False)
    params = jax.tree.map(lambda a: a.astype(jnp.float64), _params(fast)["params"])
    x = jax.random.normal(jax.random.key(21), (2, 12, D), jnp.float64)
    vl = jnp.array([12, 7])
    mem = jax.nn.relu(jax.random.normal(jax.random.key(22), (2, 6, D), jnp.float64))
    mem_mask = jnp.array([[True] * 6, [True, False, True, True, False, False]])
    keys = jax.random.split(jax.random.key(23), 2)

    def loss(model):
      def fn(p):
        out = model.apply({"params": p}, x, vl, mem, mem_mask, train=True, dropout_keys=keys)
        total = sum(jnp.sum(jnp.sin(out[b]["frame_logits"])) + jnp.sum(out[b]["attention"] ** 2)
                    + jnp.sum(jnp.log(out[b]["video_ca"])) + jnp.sum(jnp.log(out[b]["video_cw"]))
                    for b in ("o", "m", "r"))
        return total + jnp.sum(out["token_scores"] ** 2) + jnp.sum(jnp.cos(out["tokens"])), out
      return jax.jit(jax.value_and_grad(fn, has_aux=True))(params)

    (v_fast, out_fast), g_fast = loss(fast)
    (v_plain, out_plain), g_plain = loss(plain)
    np.testing.assert_allclose(v_fast, v_plain, rtol=1e-12)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14),
                 out_fast, out_plain)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-11),
                 g_fast, g_plain)
    assert float(jnp.abs(g_fast["embedding"]["kernel"]).max()) > 1e-3  # the check has teeth


def test_low_rank_backward_of_each_use():
  """Each use of ``snippets.Snippets`` (projection on shared and per-video matrices, pooling,
  squared norm, the array itself) gets the autodiff gradient, alone and combined."""
  with jax.enable_x64(True):
    ks = jax.random.split(jax.random.key(31), 4)
    x = jax.random.normal(ks[0], (2, 5, 3), jnp.float64)
    w_shared = jax.random.normal(ks[1], (4, 3), jnp.float64)
    w_video = jax.random.normal(ks[2], (2, 2, 3), jnp.float64)
    weights = jax.random.normal(ks[3], (2, 5, 4), jnp.float64)
    uses = {
        "project": lambda s, w1, w2, a: jnp.sum(jnp.sin(s.project(w1))) + jnp.sum(s.project(w2)**2),
        "pool": lambda s, w1, w2, a: jnp.sum(jnp.tanh(s.pool(a * jnp.cos(s.project(w1))))),
        "norm": lambda s, w1, w2, a: jnp.sum(jnp.sqrt(s.squared_norm() + 1.0)),
        "array": lambda s, w1, w2, a: jnp.sum(jnp.exp(s.array()) * a[..., :1]),
    }
    single = list(uses.values())
    uses["all"] = lambda *args: sum(f(*args) for f in single)
    for name, use in uses.items():
      ours = jax.grad(snippets.low_rank_backward(use), argnums=(0, 1, 2, 3))(
          x, w_shared, w_video, weights)
      ref = jax.grad(lambda *a: use(snippets.Snippets(a[0]), *a[1:]), argnums=(0, 1, 2, 3))(
          x, w_shared, w_video, weights)
      for a, b in zip(ours, ref):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12, err_msg=name)
