"""Mapping a batched function over the active rows of a padded batch only.

Most (video, class) pairs of a batch are inactive: their class fails the class gate, so they
have no proposal, no fused instance and no LinPro row. ``map_active`` runs a function on the
active rows, a fixed number at a time, in a loop that ends when none is left, so a batch costs
its active rows rather than all of them, with static shapes throughout (it jits, vmaps and runs
on device).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp


def map_active(fn: Callable, args, active, *, chunk: int, fill: Any = 0):
  """``fn`` on the rows of ``args`` where ``active``, ``chunk`` rows per call; ``fill`` elsewhere.

  Args:
    fn: maps a pytree of ``[chunk, ...]`` arrays (``args`` restricted to ``chunk`` rows) to a
      pytree of ``[chunk, ...]`` arrays; row ``i`` of the output may depend only on row ``i`` of
      the input (e.g. a ``vmap``).
    args: pytree of arrays with leading dim ``P`` (rows).
    active: ``[P]`` bool, the rows to compute.
    chunk: static rows per call of ``fn`` (capped at ``P``).
    fill: the value of the inactive rows: a scalar, or a pytree of scalars whose structure is a
      prefix of ``fn``'s output (e.g. one scalar for a whole dict).

  Returns:
    A pytree like ``fn``'s output with leading dim ``P``: ``fn``'s rows where ``active`` (in any
    order of the active rows: the same values), ``fill`` elsewhere. ``fn`` runs
    ``ceil(sum(active) / chunk)`` times; the last call's unused rows repeat row 0 and are dropped.

  Raises:
    ValueError: if ``chunk < 1``.
  """
  if chunk < 1:
    raise ValueError(f"map_active: chunk must be >= 1, got {chunk}")
  args, active = jax.tree.map(jnp.asarray, args), jnp.asarray(active, bool)
  num_rows = active.shape[0]
  chunk = min(chunk, num_rows)
  count = jnp.sum(active, dtype=jnp.int32)
  order = jnp.concatenate([jnp.argsort(~active, stable=True).astype(jnp.int32),
                           jnp.zeros(chunk, jnp.int32)])
  take = lambda index: jax.tree.map(lambda a: a[index], args)

  def body(i, out):
    index = jax.lax.dynamic_slice_in_dim(order, i * chunk, chunk)
    new = fn(take(index))
    index = jnp.where(i * chunk + jnp.arange(chunk) < count, index, num_rows)
    return jax.tree.map(lambda o, n: o.at[index].set(n, mode="drop"), out, new)

  shapes = jax.eval_shape(fn, take(jnp.arange(chunk)))
  init = jax.tree.map(  # fill: a prefix of the output's tree
      lambda f, sub: jax.tree.map(lambda s: jnp.full((num_rows,) + s.shape[1:], f, s.dtype), sub),
      fill, shapes)
  return jax.lax.fori_loop(0, -(-count // chunk), body, init)
