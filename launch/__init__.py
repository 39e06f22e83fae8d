"""Thin absl mains over the library (``python -m launch.<name>``), and what they share.

XLA:CPU's concurrency-optimized scheduler deadlocks the RSKP train step when several host
"devices" are forced (``--xla_force_host_platform_device_count=N``) on a small host; it is turned
off here, before jax is imported, whenever host devices are forced.
"""

import os

_FLAGS = os.environ.get("XLA_FLAGS", "")
if ("xla_force_host_platform_device_count" in _FLAGS
    and "xla_cpu_enable_concurrency_optimized_scheduler" not in _FLAGS):
  os.environ["XLA_FLAGS"] = _FLAGS + " --xla_cpu_enable_concurrency_optimized_scheduler=false"


def quiet_orbax(record) -> bool:
  """absl log filter: keeps orbax's per-save INFO lines out of the log (warnings still show)."""
  from absl import logging  # pylint: disable=import-outside-toplevel
  return record.levelno >= logging.converter.STANDARD_WARNING or "orbax" not in record.pathname


def start(argv) -> None:
  """What every main does first: refuses positional arguments, logs at INFO without orbax's
  per-save lines."""
  from absl import app  # pylint: disable=import-outside-toplevel
  from absl import logging  # pylint: disable=import-outside-toplevel
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.INFO)
  logging.get_absl_handler().addFilter(quiet_orbax)
