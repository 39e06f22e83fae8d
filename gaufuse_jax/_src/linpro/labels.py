"""LinPro labels of padded problems: ``linpro_solve`` (T-independent pieces), ``linpro_assemble``
(the pieces laid out on ``T`` snippets) and ``linpro_labels`` (both)."""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gaufuse_jax._src import active_map
from gaufuse_jax._src import segments as segments_lib
from gaufuse_jax._src import shape_buckets
from gaufuse_jax._src.linpro import blocks as blocks_lib
from gaufuse_jax._src.linpro import constraints as constraints_lib
from gaufuse_jax._src.linpro import solvers as solvers_lib
from gaufuse_jax._src.linpro import tiers as tiers_lib


STATUS_SOLVED = 0  # all instance constraints hold (to tolerance): the LP optimum.
STATUS_RELAXED = 1  # infeasible LP: elastic solution, some rows violated (counted).
STATUS_FAILED = 2  # no certified solution: zero labels for the class.
_NO_PIECE = 2**31 - 1  # start of an unused piece of a LinproSolution: after every snippet


def _solution_pieces(tiers, blocks_per_problem, num_problems):
  """``LinproSolution`` leaves ``[P, M]`` from the regions of all tiers' blocks, without sorting.

  Each used region ``[points[j], points[j+1])`` of a block starts a piece with its label; each
  block end starts a piece of label 0 (the gap after it). Piece slots are fixed by tier, block
  rank within its problem (``blocks_per_problem[i]`` blocks at most in tier ``i``) and region;
  the gap pieces of all tiers take the first slots, so where a block's end and another block's
  first region start at one snippet, the region (the larger index) holds there. Blocks of one
  problem cover disjoint snippets, so the pieces are exact.
  """
  widths = [t.value.shape[1] for t in tiers]  # 4 Kb regions per block of each tier
  gap_slots = sum(blocks_per_problem)
  num_pieces = gap_slots + sum(n * w for n, w in zip(blocks_per_problem, widths))
  starts = jnp.full((num_problems + 1, num_pieces), _NO_PIECE, jnp.int32)
  values = jnp.zeros((num_problems + 1, num_pieces), tiers[0].value.dtype)
  gap_offset, region_offset = 0, gap_slots
  for tier, blocks, width in zip(tiers, blocks_per_problem, widths):
    problem = jnp.where(tier.used, tier.problem, num_problems)  # used blocks first, by problem
    rank = jnp.arange(problem.size) - jnp.searchsorted(problem, problem, side="left")
    region = tier.used[:, None] & (tier.points[:, 1:] > tier.points[:, :-1])
    slots = region_offset + rank[:, None] * width + jnp.arange(width)
    rows = jnp.where(region, problem[:, None], num_problems)
    starts = starts.at[rows, slots].set(tier.points[:, :-1].astype(jnp.int32))
    values = values.at[rows, slots].set(tier.value)
    starts = starts.at[problem, gap_offset + rank].set(tier.points[:, -1].astype(jnp.int32))
    gap_offset, region_offset = gap_offset + blocks, region_offset + blocks * width
  return starts[:num_problems], values[:num_problems]


def _problem_info(tiers, num_problems):
  """Per-problem diagnostics (``linpro_labels``) from the blocks of all tiers."""
  problem = jnp.concatenate([t.problem for t in tiers])
  used = jnp.concatenate([t.used for t in tiers])

  def per_problem(reduce, values, fill):  # values [NB] per block of every tier
    return reduce(jnp.where(used, jnp.concatenate(values), fill), problem,
                  num_segments=num_problems)

  certified = per_problem(jax.ops.segment_min, [t.certified.astype(jnp.int32) for t in tiers], 1)
  return {
      "ok": certified > 0,
      "num_violated_rows": per_problem(jax.ops.segment_sum,
                                       [jnp.sum(t.violated, axis=1) for t in tiers], 0),
      "max_violation": jnp.maximum(per_problem(
          jax.ops.segment_max, [jnp.max(t.violation, axis=1) for t in tiers], 0.0), 0.0),
      "iterations": jnp.maximum(per_problem(
          jax.ops.segment_max, [t.iterations for t in tiers], 0), 0),
      "block_rows": jnp.maximum(per_problem(
          jax.ops.segment_max,
          [jnp.full(t.used.shape, t.violated.shape[1], jnp.int32) for t in tiers], 0), 0),
  }


class LinproSolution(NamedTuple):
  """LinPro labels of problems as pieces, independent of the padded length ``T``.

  Piece ``j`` of a problem starts at snippet ``starts[j]`` with label ``values[j]``; snippet
  ``t`` takes the label of the piece with the largest ``(starts[j], j)`` among those with
  ``starts[j] <= t`` (pieces are in no particular order), 0 when there is none. Unused pieces
  start at ``2**31 - 1`` (never reached). ``linpro_assemble`` turns it into ``[..., T]`` labels.

  Attributes:
    starts: ``[..., M]`` int32 first snippet of each piece; ``M`` depends on the number of
      instance rows ``K`` only (one slot per region and block end of every block the
      decomposition may form).
    values: ``[..., M]`` float label of each piece, in ``[0, 1]``, finite.
  """
  starts: jax.Array
  values: jax.Array


@functools.partial(jax.jit, static_argnames=("outer_rule", "conventions", "normalize", "solver",
                                             "block_rows", "tol", "max_iter", "problem_chunk"))
def linpro_solve(segments, scores, valid, valid_length, *,
                 outer_rule: segments_lib.OuterRule = "gaufuse",
                 conventions: segments_lib.Conventions = "reference",
                 normalize: constraints_lib.Normalize = "sum", solver: solvers_lib.Solver = "ipm",
                 block_rows=8, tol=None, max_iter=None, problem_chunk=8):
  """The LinPro LPs of padded problems (paper eq. 5-6), solved; labels as ``LinproSolution``.

  The shapes of the result do not depend on the padded length ``T``, so one compiled program
  serves videos of every length (``linpro_assemble`` makes the ``[..., T]`` labels).
  ``linpro_labels`` documents the arguments (all but ``num_snippets``).

  Returns:
    ``(solution, info)``: ``LinproSolution`` with leaves ``[..., M]``; ``info`` as in
    ``linpro_labels`` without ``objective``.

  Raises:
    ValueError: for bad shapes or unknown options.
  """
  constraints_lib.check_options(outer_rule, normalize)
  solvers_lib.check_solver(solver)
  segments, scores, valid = constraints_lib.as_arrays(segments, scores, valid)
  constraints_lib.check_shapes(segments, scores, valid, "linpro_solve")
  if block_rows < 1:
    raise ValueError(f"linpro_solve: block_rows must be >= 1, got {block_rows}")
  batch_shape, num_rows = scores.shape[:-1], scores.shape[-1]
  valid_length = jnp.broadcast_to(jnp.asarray(valid_length, jnp.int32), batch_shape).reshape(-1)
  problems = (segments.reshape((-1, num_rows, 2)), scores.reshape((-1, num_rows)),
              valid.reshape((-1, num_rows)), valid_length)
  solve = functools.partial(
      _solve_problems, outer_rule=outer_rule, conventions=conventions, normalize=normalize,
      solver=solver, block_rows=block_rows,
      tol=solvers_lib.default_tolerance(solver, scores.dtype) if tol is None else tol,
      max_iter=solvers_lib.default_max_iter(solver) if max_iter is None else max_iter)
  # Problems without rows: no pieces, STATUS_SOLVED (0), nothing violated.
  fill = (LinproSolution(starts=_NO_PIECE, values=0), 0)
  solution, info = active_map.map_active(lambda p: solve(*p), problems,
                                         jnp.any(problems[2], axis=1), chunk=problem_chunk,
                                         fill=fill)
  return jax.tree.map(lambda v: v.reshape(batch_shape + v.shape[1:]), (solution, info))


def _solve_problems(segments, scores, valid, valid_length, *, outer_rule, conventions, normalize,
                    solver, block_rows, tol, max_iter):
  """``linpro_solve`` of ``P`` problems (``[P, K, 2]``, ``[P, K]``, ``[P, K]``, ``[P]``)."""
  num_problems, num_rows = scores.shape
  areas = jax.vmap(functools.partial(constraints_lib.instance_areas, outer_rule=outer_rule,
                                     conventions=conventions))(segments, valid, valid_length)
  components = jax.vmap(blocks_lib.components)(areas, valid)
  specs = blocks_lib.size_tiers(num_rows, block_rows)
  tiers = [tiers_lib.solve_tier(areas, valid, scores, components, block_rows=rows,
                                min_size=min_size, normalize=normalize, solver=solver, tol=tol,
                                max_iter=max_iter)
           for rows, min_size in specs]
  info = _problem_info(tiers, num_problems)
  ok = info.pop("ok")
  starts, values = _solution_pieces(
      tiers, [blocks_lib.max_blocks(num_rows, rows, min_size) for rows, min_size in specs],
      num_problems)
  values = jnp.where(ok[:, None] & jnp.isfinite(values), values, 0.0).astype(scores.dtype)
  num_violated = jnp.where(ok, info["num_violated_rows"], 0).astype(jnp.int32)
  info.update(
      status=jnp.where(ok, jnp.where(num_violated > 0, STATUS_RELAXED, STATUS_SOLVED),
                       STATUS_FAILED).astype(jnp.int32),
      num_violated_rows=num_violated,
      max_violation=jnp.where(ok, info["max_violation"], 0.0))
  return LinproSolution(starts, values), info


@functools.partial(jax.jit, static_argnames=("num_snippets",))
def linpro_assemble(solution: LinproSolution, valid_length, *, num_snippets):
  """``[..., T]`` snippet labels of a ``LinproSolution`` (``linpro_solve``).

  Args:
    solution: ``LinproSolution`` with leaves ``[..., M]``.
    valid_length: ``[...]`` int (broadcast), real snippets ``L``; labels at ``t >= L`` are 0.
    num_snippets: static ``T``.

  Returns:
    ``[..., T]`` labels, the dtype of ``solution.values``.
  """
  batch_shape = solution.starts.shape[:-1]
  starts = solution.starts.reshape((-1, solution.starts.shape[-1]))
  values = solution.values.reshape(starts.shape)
  valid_length = jnp.broadcast_to(jnp.asarray(valid_length, jnp.int32), batch_shape).reshape(-1)
  num_problems, num_pieces = starts.shape
  # Each snippet position marks the largest piece index starting there; a snippet takes the piece
  # of the last mark at or before it (a parallel prefix max: XLA:CPU lowers jax.lax.cummax to a
  # reduce_window, 3-4x slower here).
  span = num_snippets + 1
  flat = jnp.where(starts < span, jnp.arange(num_problems)[:, None] * span + starts,
                   num_problems * span)
  mark = jnp.full((num_problems * span,), -1, jnp.int32).at[flat.ravel()].max(
      jnp.broadcast_to(jnp.arange(num_pieces, dtype=jnp.int32), starts.shape).ravel(),
      mode="drop").reshape(num_problems, span)[:, :num_snippets]
  t = jnp.arange(num_snippets, dtype=jnp.int32)
  last = jax.lax.associative_scan(jnp.maximum, jnp.where(mark >= 0, t, -1), axis=1)
  piece = jnp.take_along_axis(mark, jnp.maximum(last, 0), axis=1)
  labels = jnp.take_along_axis(values, jnp.maximum(piece, 0), axis=1)
  labels = jnp.where((last >= 0) & (t[None, :] < valid_length[:, None]), labels, 0.0)
  return labels.reshape(batch_shape + (num_snippets,))


def linpro_labels(segments, scores, valid, valid_length, *, num_snippets,
                  outer_rule: segments_lib.OuterRule = "gaufuse",
                  conventions: segments_lib.Conventions = "reference",
                  normalize: constraints_lib.Normalize = "sum",
                  solver: solvers_lib.Solver = "ipm", block_rows=8, tol=None, max_iter=None,
                  problem_chunk=8):
  """LinPro snippet labels of padded problems (paper eq. 5-6, with equivalent snippets averaged).

  Args:
    segments: ``[..., K, 2]`` float fused instances ``(start, end)`` in snippets; any leading
      batch dims (e.g. ``[B videos, C classes]``) are independent problems.
    scores: ``[..., K]`` float instance scores (the fused outer-inner contrast); may be negative.
    valid: ``[..., K]`` bool, False for padding rows.
    valid_length: ``[...]`` int (broadcast), real snippets ``L`` per problem; labels at
      ``t >= L`` are 0.
    num_snippets: static ``T``.
    outer_rule: ``"gaufuse"`` or ``"wtalc"`` (see ``constraints.instance_areas``).
    conventions: ``"reference"`` (default) or ``"exact"`` (see ``constraints.instance_areas``).
    normalize: ``"sum"`` (default, authors' code) or ``"mean"`` (paper text); see
      ``constraints.linpro_constraints``.
    solver: ``"ipm"`` (default), ``"qpax"``, ``"mpax"`` or ``"jaxopt"`` (module docstring).
    block_rows: static rows per block for the connected components of up to that many rows
      (cost ``O(block_rows^2)`` per row and Newton step); components of up to 2x, 4x
      ``block_rows`` and ``K`` rows are packed into blocks of that size (``info["block_rows"]``).
      Only non-empty blocks are solved: problems without valid rows cost nothing.
    tol: relative tolerance (stopping and acceptance); default ``solvers.default_tolerance``.
    max_iter: iteration limit; default ``solvers.default_max_iter``.
    problem_chunk: static number of problems solved together. Problems with valid rows are
      taken ``problem_chunk`` at a time in a loop that stops when none is left, so a batch
      costs its problems with rows (e.g. the classes that pass the class gate), not all of
      them; the labels do not depend on it.

  Returns:
    ``labels``: ``[..., T]`` float (float32, float64 with x64), in ``[0, 1]``, finite; equal on
      equivalent snippets.
    ``info``: dict of ``[...]`` arrays: ``status`` (int32 ``STATUS_SOLVED`` / ``STATUS_RELAXED``
      / ``STATUS_FAILED``), ``num_violated_rows`` (int32), ``max_violation`` (float, label mass
      in snippets), ``objective`` (float, ``sum_t labels``), ``iterations`` (int32, max over
      blocks), ``block_rows`` (int32, largest block size used; 0 without valid rows).

  Called outside ``jit`` / ``vmap``, the number of problems and ``T`` are padded to
  ``shape_buckets.bucket`` sizes (padding changes nothing) and one jitted program per bucket
  runs, so a loop over videos of many lengths compiles a bounded number of programs (the
  instance cap ``K`` is kept: it shapes the block decomposition).

  Raises:
    ValueError: for bad shapes or unknown options.

  Examples:
    One instance ``[3, 6)`` of score 1.5 in a video of 10 snippets: the least label mass whose
    inner sum minus outer sum is 1.5 is 0.5 on each inner snippet.

    >>> import jax.numpy as jnp
    >>> from gaufuse_jax import linpro_labels
    >>> labels, info = linpro_labels(jnp.array([[3.0, 6.0]]), jnp.array([1.5]),
    ...                              jnp.array([True]), 10, num_snippets=10)
    >>> [round(v, 3) for v in labels.tolist()], int(info["status"])
    ([0.0, 0.0, 0.0, 0.5, 0.5, 0.5, 0.0, 0.0, 0.0, 0.0], 0)
  """
  options = dict(outer_rule=outer_rule, conventions=conventions, normalize=normalize,
                 solver=solver, block_rows=block_rows, tol=tol, max_iter=max_iter,
                 problem_chunk=problem_chunk)
  if shape_buckets.is_traced(segments, scores, valid, valid_length):
    return _labels(segments, scores, valid, valid_length, num_snippets=num_snippets, **options)
  float_dtype = jnp.result_type(float)
  segments, scores = shape_buckets.host(segments, float_dtype), shape_buckets.host(scores,
                                                                                  float_dtype)
  valid = shape_buckets.host(valid, bool)
  constraints_lib.check_shapes(segments, scores, valid, "linpro_labels")
  batch_shape = scores.shape[:-1]
  valid_length = np.broadcast_to(shape_buckets.host(valid_length, np.int32), batch_shape)
  num_problems = valid_length.size
  pad = lambda x, value=0: shape_buckets.pad_to(
      x.reshape((num_problems,) + x.shape[len(batch_shape):]), 0,
      shape_buckets.bucket(num_problems), value)
  labels, info = _labels_jit(pad(segments), pad(scores), pad(valid, False), pad(valid_length),
                             num_snippets=shape_buckets.bucket(num_snippets), **options)
  labels = shape_buckets.unpad(
      labels, lambda x: x[:num_problems, :num_snippets].reshape(batch_shape + (num_snippets,)))
  return labels, shape_buckets.unpad(info, lambda x: x[:num_problems].reshape(batch_shape))


def _labels(segments, scores, valid, valid_length, *, num_snippets, **options):
  solution, info = linpro_solve(segments, scores, valid, valid_length, **options)
  labels = linpro_assemble(solution, valid_length, num_snippets=num_snippets)
  return labels, dict(info, objective=jnp.sum(labels, axis=-1))


_labels_jit = jax.jit(_labels, static_argnames=(
    "num_snippets", "outer_rule", "conventions", "normalize", "solver", "block_rows", "tol",
    "max_iter", "problem_chunk"))
