"""Blocks of one size tier over all problems of a batch: packed, reduced and solved on a fixed
number of lanes, only the non-empty ones."""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from gaufuse_jax._src.linpro import blocks as blocks_lib
from gaufuse_jax._src.linpro import elastic_lp as elastic_lp_lib
from gaufuse_jax._src.linpro import solvers as solvers_lib


# Work of the blocks solved together (lanes of one batched interior-point step), in units of
# (rows per block)^3, the cost of a Newton step: 32 blocks of 8 rows, 4 of 16, 1 larger. Large
# enough to amortise the per-step overhead, small enough that the last blocks leave few lanes idle.
_CHUNK_WORK = 32 * 8**3


class TierResult(NamedTuple):
  """Solved blocks of one tier, ``NB`` blocks of ``Kb`` rows; blocks ``>= count`` are unused."""
  problem: jax.Array  # [NB] int32 problem of each block
  used: jax.Array  # [NB] bool
  points: jax.Array  # [NB, 4 Kb + 1] int32 sorted breakpoints, snippets
  value: jax.Array  # [NB, 4 Kb] label of each region [points[j], points[j + 1])
  certified: jax.Array  # [NB] bool
  iterations: jax.Array  # [NB] int32
  violation: jax.Array  # [NB, Kb] |row residual| in mass units, 0 on empty slots
  violated: jax.Array  # [NB, Kb] bool


def _map_chunks(fn, args, count, chunk):
  """``vmap(fn)(*args)`` on the first ``count`` entries of ``args`` (arrays ``[NB, ...]``, ``NB`` a
  multiple of ``chunk``), ``chunk`` at a time in a loop of dynamic length; zeros elsewhere."""
  total = jax.tree.leaves(args)[0].shape[0]
  take = lambda start: jax.tree.map(
      lambda a: jax.lax.dynamic_slice_in_dim(a, start, chunk), args)

  def body(i, out):
    new = jax.vmap(fn)(*take(i * chunk))
    return jax.tree.map(lambda o, n: jax.lax.dynamic_update_slice_in_dim(o, n, i * chunk, 0),
                        out, new)

  shapes = jax.eval_shape(jax.vmap(fn), *take(0))
  init = jax.tree.map(lambda s: jnp.zeros((total,) + s.shape[1:], s.dtype), shapes)
  return jax.lax.fori_loop(0, -(-count // chunk), body, init)



def solve_pool(lps, count, *, lanes, solver, tol, max_iter):
  """Solves the first ``count`` block LPs of ``lps`` (an ``elastic_lp.ElasticLP`` of
  ``[NB, ...]`` arrays).

  ``lanes`` blocks are solved at once, one batched step at a time; a lane whose block passes the
  certificate (or runs out of steps) stores it and takes the next block. A batch so costs the sum
  of its blocks' Newton steps, not ``lanes`` times its slowest block's. Solvers other than
  ``"ipm"`` solve a block in one step. Returns ``x [NB, n]``, ``iterations [NB]`` int32 and
  ``certified [NB]`` bool, zeros for blocks ``>= count``.
  """
  num_blocks = lps.rhs.shape[0]
  start, step, one_shot = solvers_lib.solver_steps(solver, tol, max_iter)
  step = jax.vmap(step)
  certificate = jax.vmap(functools.partial(elastic_lp_lib.certificate, tol=tol))

  def load(block):
    lp = jax.tree.map(lambda a: a[jnp.minimum(block, num_blocks - 1)], lps)
    return lp, jax.vmap(start)(lp)

  def body(carry):
    block, lp, state, it, taken, out = carry
    state, it = step(lp, state, it)
    certified = certificate(lp, state[0], state[1])
    done = (block < count) & (certified | (it >= max_iter) | one_shot)
    out = tuple(o.at[jnp.where(done, block, num_blocks)].set(v, mode="drop")
                for o, v in zip(out, (state[0], it, certified)))
    new = taken + jnp.cumsum(done, dtype=jnp.int32) - 1
    new_lp, new_state = load(new)
    pick = lambda n, o: jnp.where(done.reshape(done.shape + (1,) * (o.ndim - 1)), n, o)
    return (jnp.where(done, jnp.where(new < count, new, num_blocks), block),
            jax.tree.map(pick, new_lp, lp), jax.tree.map(pick, new_state, state),
            jnp.where(done, 0, it), taken + jnp.sum(done, dtype=jnp.int32), out)

  block = jnp.arange(lanes, dtype=jnp.int32)
  block = jnp.where(block < count, block, num_blocks)
  lp, state = load(block)
  out = (jnp.zeros((num_blocks,) + state[0].shape[1:], state[0].dtype),
         jnp.zeros(num_blocks, jnp.int32), jnp.zeros(num_blocks, bool))
  init = (block, lp, state, jnp.zeros(lanes, jnp.int32), jnp.int32(lanes), out)
  return jax.lax.while_loop(lambda c: jnp.any(c[0] < count), body, init)[-1]


def _block_labels(points, representative, size, lp, x, valid, *, tol):
  """Region labels ``[4Kb]`` and row diagnostics ``[Kb]`` of one block (rows ``valid``) from
  the solution ``x`` of its ``blocks.reduce_block`` LP."""
  num_regions = size.shape[0]
  mass = jnp.clip(x[:num_regions], 0.0, lp.upper)
  covered = jnp.any(lp.matrix != 0, axis=0)  # regions in no area (gaps) get exactly 0
  value = jnp.where(covered & (size > 0), mass / jnp.where(size > 0, size, 1.0), 0.0)
  violation = jnp.where(valid, jnp.abs(lp.matrix @ mass - lp.rhs), 0.0)
  violated = valid & (violation > 10.0 * tol * (1.0 + jnp.abs(lp.rhs)))
  return points, value[representative], violation, violated


def solve_tier(areas, valid, scores, components, *, block_rows, min_size, normalize, solver,
                tol, max_iter):
  """Packs the components of ``min_size..block_rows`` rows of all problems into blocks and solves
  the non-empty ones (``solve_pool`` on ``_CHUNK_WORK // block_rows**3`` lanes): no solver work
  for empty problems, no packing or solver work for empty tiers."""
  num_problems, num_rows = valid.shape
  order, starts, component_size, ok = components
  num_blocks = blocks_lib.max_blocks(num_rows, block_rows, min_size)
  chunk = max(1, min(_CHUNK_WORK // block_rows**3, num_problems * num_blocks))
  total = -(-(num_problems * num_blocks) // chunk) * chunk

  def solve(in_tier):
    rows = jax.vmap(functools.partial(blocks_lib.pack_blocks, block_rows=block_rows,
                                      num_blocks=num_blocks))(order, starts, component_size,
                                                              in_tier)
    rows = rows.reshape(-1, block_rows)
    problem = jnp.repeat(jnp.arange(num_problems, dtype=jnp.int32), num_blocks)
    nonempty = jnp.any(rows < num_rows, axis=1)
    count = jnp.sum(nonempty, dtype=jnp.int32)
    first = jnp.argsort(~nonempty, stable=True)  # non-empty blocks first, in problem order
    rows = jnp.pad(rows[first], ((0, total - rows.shape[0]), (0, 0)), constant_values=num_rows)
    problem = jnp.pad(problem[first], (0, total - problem.shape[0]))
    pad = lambda v: jnp.concatenate([v, jnp.zeros_like(v[:, :1])], axis=1)  # row K: empty slot
    p = problem[:, None]
    blocks = (pad(areas)[p, rows], pad(valid)[p, rows], pad(scores)[p, rows])
    reduce_block = functools.partial(blocks_lib.reduce_block, normalize=normalize)
    points, representative, size, lps = _map_chunks(reduce_block, blocks, count, chunk)
    x, iterations, certified = solve_pool(lps, count, lanes=chunk, solver=solver, tol=tol,
                                           max_iter=max_iter)
    points, value, violation, violated = _map_chunks(
        functools.partial(_block_labels, tol=tol),
        (points, representative, size, lps, x, blocks[1]), count, chunk)
    return TierResult(problem, jnp.arange(total) < count, points, value, certified, iterations,
                       violation, violated)

  empty = lambda in_tier: jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype),
                                       jax.eval_shape(solve, in_tier))
  in_tier = ok & (component_size >= min_size) & (component_size <= block_rows)
  return jax.lax.cond(jnp.any(in_tier), solve, empty, in_tier)
