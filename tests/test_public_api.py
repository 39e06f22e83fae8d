"""The public API: ``import gaufuse_jax`` is light and ``__all__`` lists what it exports."""

import subprocess
import sys

import gaufuse_jax

TRAINING_STACK = ("optax", "orbax", "tqdm", "ml_collections", "tensorboardX")


def test_import_does_not_load_the_training_stack():
  """People who import the fusion and pseudo-label functions do not pay for our training stack
  (a fresh interpreter: this test process has imported everything already)."""
  out = subprocess.run(
      [sys.executable, "-c",
       "import sys, gaufuse_jax; print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"],
      capture_output=True, text=True, check=True)
  loaded = set(out.stdout.split())
  assert "jax" in loaded and "gaufuse_jax" in loaded
  assert not loaded & set(TRAINING_STACK), sorted(loaded & set(TRAINING_STACK))


def test_all_lists_exactly_the_public_names():
  public = {n for n in vars(gaufuse_jax) if not n.startswith("_")}
  modules = {n for n in public if type(getattr(gaufuse_jax, n)).__name__ == "module"}
  assert set(gaufuse_jax.__all__) == public - modules
  assert len(gaufuse_jax.__all__) == len(set(gaufuse_jax.__all__))
  assert "generate_pseudo_labels" in gaufuse_jax.__all__ and "linpro_solve" in gaufuse_jax.__all__
