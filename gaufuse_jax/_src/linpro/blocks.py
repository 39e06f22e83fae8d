"""Decomposition of a problem's instance rows into independent blocks (connected components of
the rows' supports, packed by next fit) and the reduction of a block to an LP over snippet
classes (equivalent snippets share one variable)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from gaufuse_jax._src.linpro import constraints as constraints_lib
from gaufuse_jax._src.linpro import elastic_lp as elastic_lp_lib


def components(areas, valid):
  """Connected components of one problem's rows (supports overlapping, transitively).

  Rows are sorted by support start (``left_lo``, invalid rows last); a component is then a run
  of sorted rows. Returns ``order [K]`` (sorted row indices), ``starts [K]`` (bool, a sorted row
  opens a component), ``size [K]`` (rows in the component of each sorted row) and ``ok [K]``
  (the sorted row is valid).
  """
  num_rows = areas.shape[0]
  lo, hi = areas[:, 0], areas[:, 3]
  order = jnp.argsort(jnp.where(valid, lo, jnp.iinfo(jnp.int32).max), stable=True)
  lo, hi, ok = lo[order], hi[order], valid[order]
  reach = jax.lax.cummax(jnp.where(ok, hi, -1))
  starts = ok & (lo >= jnp.concatenate([jnp.full((1,), -1, reach.dtype), reach[:-1]]))
  component = jnp.maximum(jnp.cumsum(starts) - 1, 0)
  size = jax.ops.segment_sum(ok.astype(jnp.int32), component, num_rows)[component]
  return order, starts, jnp.where(ok, size, 0), ok


def size_tiers(num_rows, block_rows):
  """``(rows per block, smallest component)`` of each tier: components of ``min..rows`` rows."""
  sizes = sorted({min(block_rows * 2**i, num_rows) for i in range(3)} | {num_rows})
  return list(zip(sizes, [1] + [s + 1 for s in sizes[:-1]]))


def max_blocks(num_rows, block_rows, min_size):
  # Next fit: two consecutive blocks hold > block_rows rows; each block holds a component.
  return min(2 * -(-num_rows // block_rows) - 1, num_rows // min_size)


def pack_blocks(order, starts, size, in_tier, *, block_rows, num_blocks):
  """Packs one problem's components of one tier into blocks of ``block_rows`` rows, by next fit.

  ``order, starts, size`` are ``components``; ``in_tier [K]`` marks the sorted rows of the
  tier's components (all of at most ``block_rows`` rows). Blocks and the rows in them are in
  time order. Returns ``rows [num_blocks, block_rows]`` int32 row indices, ``K`` for empty slots.
  """
  num_rows = order.shape[0]

  def next_fit(carry, row):
    block, fill = carry
    is_start, row_size, row_in = row
    new = is_start & (fill > 0) & (fill + row_size > block_rows)
    block, fill = block + new, jnp.where(new, 0, fill)
    return (block, fill + row_in), (block, fill)

  _, (block, slot) = jax.lax.scan(next_fit, (jnp.int32(0), jnp.int32(0)),
                                  (starts & in_tier, size, in_tier))
  block = jnp.where(in_tier, block, num_blocks)  # rows of other tiers are dropped by the scatter
  rows = jnp.full((num_blocks, block_rows), num_rows, jnp.int32)
  return rows.at[block, slot].set(order.astype(jnp.int32), mode="drop")


def _class_representatives(codes):
  """``[P]`` index of the first column of ``codes [Kb, P]`` (values 0..2) equal to each column."""
  digits = 19  # 3**19 < 2**31: a column chunk of 19 codes is one exact int32 hash.
  num_rows, num_points = codes.shape
  words = -(-num_rows // digits)
  codes = jnp.pad(codes, ((0, words * digits - num_rows), (0, 0))).reshape(words, digits, -1)
  powers = (3**jnp.arange(digits, dtype=jnp.int32))[None, :, None]
  hashes = jnp.sum(codes * powers, axis=1)
  same = jnp.all(hashes[:, :, None] == hashes[:, None, :], axis=0)
  columns = jnp.arange(num_points, dtype=jnp.int32)
  # The first equal column, as argmax(same) would give, but cheaper on XLA:CPU.
  return jnp.min(jnp.where(same, columns[None, :], num_points), axis=1)


def reduce_block(areas, valid, scores, normalize):
  """Reduced elastic LP of one block of ``Kb`` rows (``areas [Kb, 4]``, ``valid``, ``scores``).

  Returns ``points [4Kb + 1]`` (sorted breakpoints, the last one repeated; region j is
  ``[points[j], points[j+1])``, so the last region is empty), ``representative [4Kb]`` (the class
  of each region: its first region with the same column of ``A``), ``size [4Kb]`` (snippets per
  class on representatives, 0 elsewhere) and the ``elastic_lp.ElasticLP`` over class masses,
  rows scaled to max |coefficient| 1 (masses stay in snippets).
  """
  dtype = scores.dtype
  top = jnp.max(jnp.where(valid, areas[:, 3], 0))
  # 4Kb regions, the last one empty: 4Kb + 2Kb variables (48 for Kb = 8) instead of the
  # 4Kb - 1 + 2Kb of the 4Kb breakpoints alone, a shape on which XLA:CPU's Newton steps are
  # faster (benchmarks/linpro.py; README Performance).
  points = jnp.sort(jnp.concatenate([jnp.where(valid[:, None], areas, top).ravel(), top[None]]))
  region_size = points[1:] - points[:-1]
  codes = jnp.where(valid[:, None], constraints_lib.area_codes(areas, points[:-1]), 0)
  representative = _class_representatives(codes)
  size = jax.ops.segment_sum(region_size, representative, region_size.shape[0]).astype(dtype)
  used = size > 0
  coef = constraints_lib.coefficients(areas, codes, normalize, dtype)
  coef = jnp.where(used[None, :], coef, 0.0)
  scale = jnp.max(jnp.abs(coef), axis=1)
  scale = jnp.where(scale > 0, scale, 1.0)
  coef, rhs = coef / scale[:, None], jnp.where(valid, scores, 0.0) / scale
  upper = jnp.where(used, size, 1.0)  # unused columns are empty: cost 1 keeps them at 0
  slack_upper = jnp.abs(rhs) + jnp.abs(coef) @ upper + 1.0
  return points, representative, size, elastic_lp_lib.ElasticLP(coef, rhs, upper, slack_upper)
