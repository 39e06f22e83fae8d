"""Static sizes rounded up to a small ladder, so that a public function called eagerly on arrays
of many sizes (a loop over a dataset) compiles a bounded number of programs: XLA:CPU never frees
compiled code, and one program per size exhausts the process's memory mappings.

The padding and the slicing back are done on the host with numpy: an eager ``jax.numpy`` op
would itself compile one small program per input shape.
"""

from __future__ import annotations

import jax
import numpy as np

MINIMUM = 8


def bucket(n: int) -> int:
  """The smallest size ``>= n`` of the ladder ``MINIMUM * {1, 1.5} * 2**k`` (two sizes per
  octave: at most 1.5x padding; sizes from 1 to 4,096 fall into 19 buckets)."""
  size = MINIMUM
  while size < n:
    size = size * 3 // 2 if size & (size - 1) == 0 else size * 4 // 3
  return size


def is_traced(*trees) -> bool:
  """Whether any leaf is a tracer (the caller is being jitted or vmapped: sizes are static
  there already, and padding would only add work)."""
  return any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves(trees))


def host(x, dtype=None) -> np.ndarray:
  """``x`` as a host numpy array (``dtype``: e.g. the default float dtype of jax)."""
  return np.asarray(x, dtype)


def pad_to(x: np.ndarray, axis: int, size: int, value=0) -> np.ndarray:
  """Host array ``x`` padded with ``value`` along ``axis`` to ``size``."""
  widths = [(0, 0)] * x.ndim
  widths[axis] = (0, size - x.shape[axis])
  return np.pad(x, widths, constant_values=value)


def unpad(tree, fn):
  """``fn`` (a slice, a reshape) applied to every leaf of ``tree`` on the host, the result put
  back on the default device: no compiled slice or reshape per size."""
  return jax.tree.map(lambda x: jax.device_put(fn(np.asarray(x))), tree)
