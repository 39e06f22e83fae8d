"""active_map.map_active: the function on the active rows, the fill elsewhere, any chunk."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gaufuse_jax._src import active_map


def _fn(args):
  x, y = args  # [chunk, 3], [chunk]
  return {"sum": jnp.sum(x, axis=1) + y, "twice": 2 * x}


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 100])
def test_active_rows_computed_others_filled(chunk):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(7, 3)).astype(np.float32)
  y = rng.normal(size=7).astype(np.float32)
  active = np.array([0, 1, 1, 0, 1, 0, 1], bool)
  fill = {"sum": -5.0, "twice": 9.0}
  got = jax.jit(lambda a, m: active_map.map_active(_fn, a, m, chunk=chunk, fill=fill))(
      (x, y), active)
  np.testing.assert_allclose(got["sum"], np.where(active, x.sum(1) + y, -5.0), rtol=1e-6)
  np.testing.assert_allclose(got["twice"], np.where(active[:, None], 2 * x, 9.0))
  eager = active_map.map_active(_fn, (x, y), active, chunk=chunk, fill=fill)  # numpy inputs
  np.testing.assert_array_equal(eager["twice"], got["twice"])


def test_no_active_row_gives_the_fill():
  out = active_map.map_active(lambda a: a + 1.0, jnp.ones((4, 2)), jnp.zeros(4, bool), chunk=2)
  np.testing.assert_array_equal(out, 0.0)  # the default fill, not fn's 2.0


def test_chunk_must_be_positive():
  with pytest.raises(ValueError, match="chunk must be >= 1, got 0"):
    active_map.map_active(_fn, (np.ones((2, 3)), np.ones(2)), np.ones(2, bool), chunk=0)
