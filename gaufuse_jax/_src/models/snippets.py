"""Snippet embeddings used only through products with small matrices, and a backward pass that
gathers their gradient in one matrix product.

After the embedding, RSKP (``model/main_branch.py:WSTAL``) uses the snippet embeddings ``x
[B, T, D]`` only through products with small matrices: projections ``x @ w^T`` on tokens and
class centres (``[B, T, M]``), pooling over time ``weights^T x`` (``[B, M, D]``) and the squared
norms ``||x_t||^2`` (``[B, T]``). Plain autodiff gives one ``[B, T, D]`` gradient contribution per
product (about twenty per training step) and sums them elementwise; :func:`low_rank_backward`
instead takes the gradient of each product's *output* (small) and forms

  ``dx = [g_1 | ... | weights_1 | ...] @ [w_1; ...; g'_1; ...] + 2 x * g_norm``

as one ``[B, T, sum M] x [B, sum M, D]`` product: the same gradient, with one ``[B, T, D]`` array
written instead of twenty.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

_KINDS = ("project", "pool", "norm", "array")


class Snippets:
  """Snippet embeddings ``x [B, T, D]`` seen through their products.

  Each method is one use of ``x``. Under :func:`low_rank_backward` every use adds a zero probe of
  its output's shape and records its small operand, so that the backward pass can recover the
  gradient of ``x`` from the gradients of the uses' outputs; outside it, the methods are plain
  products.
  """

  def __init__(self, x, probes=None):
    self.x = x
    self._probes = probes  # {kind: [probe, ...]} or None
    self.operands = {kind: [] for kind in _KINDS}  # what the backward multiplies the probes by
    self.shapes = {kind: [] for kind in _KINDS}  # output shapes (probes to create)
    self._sq_norm = None

  @property
  def shape(self):
    return self.x.shape

  @property
  def dtype(self):
    return self.x.dtype

  def _use(self, kind, out, operand):
    i = len(self.shapes[kind])
    self.shapes[kind].append(jax.ShapeDtypeStruct(out.shape, out.dtype))
    if self._probes is None:
      return out
    self.operands[kind].append(operand)
    return out + self._probes[kind][i]

  def project(self, w):
    """``x @ w^T``: float ``[B, T, M]`` for ``w [M, D]`` (shared) or ``[B, M, D]`` (per video)."""
    w = jnp.broadcast_to(w, self.x.shape[:1] + w.shape[-2:])
    return self._use("project", jnp.einsum("btd,bmd->btm", self.x, w), w)

  def pool(self, weights):
    """``weights^T x`` over time: float ``[B, M, D]`` for ``weights [B, T, M]``."""
    return self._use("pool", jnp.einsum("btm,btd->bmd", weights, self.x), weights)

  def squared_norm(self):
    """``||x_t||^2``: float ``[B, T]`` (computed once)."""
    if self._sq_norm is None:
      self._sq_norm = self._use("norm", jnp.sum(jnp.square(self.x), axis=-1), None)
    return self._sq_norm

  def array(self):
    """``x`` itself, ``[B, T, D]`` (a dense use: its gradient is added as is)."""
    return self._use("array", self.x, None)


def as_snippets(x) -> Snippets:
  """``x`` as :class:`Snippets` (unchanged if it already is one)."""
  return x if isinstance(x, Snippets) else Snippets(jnp.asarray(x))


def low_rank_backward(fn: Callable) -> Callable:
  """``fn(x, *args)`` with the gradient of ``x`` gathered in one product (module docstring).

  ``fn`` receives ``x`` as :class:`Snippets` and must use it only through its methods. The
  forward pass and every gradient are those of ``fn`` on ``x`` (the gradient of ``x`` is summed
  in another order, so it differs only by float rounding).

  Args:
    fn: ``fn(snippets, *args) -> outputs`` (any pytree of float arrays); ``args`` are pytrees of
      arrays (float ones get gradients). Every traced value ``fn`` uses must come through
      ``x`` or ``args`` (no closure over traced arrays).

  Returns:
    ``f(x, *args)`` with ``x`` a float ``[B, T, D]`` array, differentiable in ``x`` and ``args``.
  """

  def run(x, args, probes):
    snippets = Snippets(x, probes)
    out = fn(snippets, *args)
    return out, snippets.operands

  @jax.custom_vjp
  def f(x, *args):
    return fn(Snippets(x), *args)

  def fwd(x, *args):
    # A first pass only records the uses' shapes (its ops are unused: XLA drops them), in the
    # enclosing trace: jax.eval_shape would start a new one.
    recorder = Snippets(x)
    fn(recorder, *args)
    probes = {k: [jnp.zeros(s.shape, s.dtype) for s in recorder.shapes[k]] for k in _KINDS}
    # x is a primal too (not a closed-over constant, which the enclosing trace would leak); its
    # autodiff cotangent is never used, so XLA drops that computation.
    out, vjp, operands = jax.vjp(run, x, args, probes, has_aux=True)
    return out, (x, vjp, operands)

  def bwd(res, g_out):
    x, vjp, operands = res
    _, g_args, g = vjp(g_out)
    left = list(g["project"]) + list(operands["pool"])  # [B, T, M] each
    right = list(operands["project"]) + list(g["pool"])  # [B, M, D] each
    dx = jnp.zeros_like(x)
    if left:
      dx = jnp.einsum("btm,bmd->btd", jnp.concatenate(left, -1), jnp.concatenate(right, 1))
    for g_norm in g["norm"]:
      dx = dx + 2.0 * x * g_norm[..., None]
    for g_array in g["array"]:
      dx = dx + g_array
    return (dx,) + tuple(g_args)

  f.defvjp(fwd, bwd)
  return f
