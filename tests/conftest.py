"""Shared pytest fixtures. Tests run on CPU; a 2-device host platform is forced so that pmap
tests can run (the flag must be set before jax initialises its backends)."""

import os
import pathlib

# XLA:CPU's concurrency-optimized scheduler deadlocks the RSKP train step when two host
# "devices" share two cores; turning it off costs nothing measurable here.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2 "
                      "--xla_cpu_enable_concurrency_optimized_scheduler=false")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import pytest  # noqa: E402

SHARED_DATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
  """`../shared/data` beside the checkout (CI has it too); skip when absent."""
  if not SHARED_DATA.is_dir():
    pytest.skip(f"shared data folder not found at {SHARED_DATA}")
  return SHARED_DATA
