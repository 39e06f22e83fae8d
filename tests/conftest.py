"""Shared pytest fixtures. Tests run on CPU; a 2-device host platform is forced so that pmap
tests can run (the flag must be set before jax initialises its backends)."""

import atexit
import dataclasses
import gc
import json
import os
import pathlib
import shutil
import tempfile

# XLA:CPU's concurrency-optimized scheduler deadlocks the RSKP train step when two host
# "devices" share two cores; turning it off costs nothing measurable here. The tests' tiny
# inputs make compilation most of their time: XLA's backend optimization level 0 cuts it by
# ~40% (linpro_labels at K=16: 6.6 -> 3.9 s), and the tests pass with the same tolerances. An
# XLA_FLAGS set outside replaces all three flags (keep the device count for the pmap tests).
CPU_FLAGS = ("--xla_cpu_enable_concurrency_optimized_scheduler=false "
             "--xla_backend_optimization_level=0")
os.environ.setdefault("XLA_FLAGS", f"--xla_force_host_platform_device_count=2 {CPU_FLAGS}")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# One persistent compilation cache for the session and its subprocesses: a program compiled in
# one test module is loaded, not compiled again, in the next (the in-memory caches are dropped
# after each module, see _release_compiled_programs).
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="gaufuse_jax_cache_")
  atexit.register(shutil.rmtree, os.environ["JAX_COMPILATION_CACHE_DIR"], True)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")

import jax  # noqa: E402
import ml_collections  # noqa: E402
import pytest  # noqa: E402

from configs import tiny  # noqa: E402
from gaufuse_jax._src import input_pipeline  # noqa: E402
from gaufuse_jax import train  # noqa: E402

SHARED_DATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"
NUM_EPOCHS = 4  # of the shared tiny run


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
  """Drops jax's compiled programs after each test module. Their machine code stays mapped
  until then, and the default run compiles enough programs in one process to exhaust Linux's
  default vm.max_map_count (65,530 mappings): XLA then crashes inside a compilation."""
  yield
  jax.clear_caches()
  gc.collect()


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
  """`../shared/data` beside the checkout (CI has it too); skip when absent."""
  if not SHARED_DATA.is_dir():
    pytest.skip(f"shared data folder not found at {SHARED_DATA}")
  return SHARED_DATA


def shared_config() -> ml_collections.ConfigDict:
  """configs/tiny.py in 4 epochs: warm-up epoch 0 (memory filled after it), memory branch from
  epoch 1, generations at the start of epochs 1 and 2, plain labels in epoch 2, Δ labels in
  epoch 3, a learning-rate step at epoch 2, evaluations after epochs 2 and 4, checkpoints after
  epochs 3 and 4 (intervals that do not divide: epoch 2 is saved as the best so far); one bucket
  (288 >= the longest video) so each step compiles once."""
  c = tiny.get_config()
  s = c.schedule
  s.num_epochs = NUM_EPOCHS
  s.warmup_epochs = 0
  s.pseudo_start = 1
  s.generation_epochs = (1, 2)
  s.generation_temperatures = (0.02, 0.002)
  s.delta_start = 2
  s.delta_scale_epochs = (2,)
  s.delta_scales = (2.0,)
  s.lr_boundaries = (2,)
  s.lr_values = (1e-3, 5e-4)
  c.eval.every_epochs = 2
  c.checkpoint_every_epochs = 3
  c.bucket_sizes = (288,)
  return c


@dataclasses.dataclass
class Run:
  config: ml_collections.ConfigDict
  workdir: pathlib.Path
  metrics: dict
  train_ds: object
  test_ds: object

  def log(self) -> list[dict]:
    return [json.loads(line) for line in (self.workdir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="session")
def run(tmp_path_factory) -> Run:
  """One tiny run of ``shared_config()``, trained once per session (test_train.py,
  test_notebooks.py); tests may read, resume and evaluate it, and write only under ``eval_*``."""
  config = shared_config()
  workdir = tmp_path_factory.mktemp("tiny_run")
  metrics = train.train_and_evaluate(config, str(workdir))
  train_ds, test_ds = input_pipeline.load_datasets(config.data)
  return Run(config, workdir, metrics, train_ds, test_ds)
