"""Thin absl mains over the library (``python -m launch.<name>``), and what they share.

``run(main)`` replaces ``app.run(main)``: a user's mistake (a bad config field or file, bad data,
a missing checkpoint) ends with one ``ERROR:`` message and exit code 1 instead of a traceback;
``GAUFUSE_TRACEBACK=1`` shows the traceback.

XLA:CPU's concurrency-optimized scheduler deadlocks the RSKP train step when several host
"devices" are forced (``--xla_force_host_platform_device_count=N``) on a small host; it is turned
off here, before jax is imported, whenever host devices are forced.
"""

import ast
import os
import sys

_FLAGS = os.environ.get("XLA_FLAGS", "")
if ("xla_force_host_platform_device_count" in _FLAGS
    and "xla_cpu_enable_concurrency_optimized_scheduler" not in _FLAGS):
  os.environ["XLA_FLAGS"] = _FLAGS + " --xla_cpu_enable_concurrency_optimized_scheduler=false"


def quiet_orbax(record) -> bool:
  """absl log filter: keeps orbax's per-save INFO lines out of the log (warnings still show)."""
  from absl import logging  # pylint: disable=import-outside-toplevel
  return record.levelno >= logging.converter.STANDARD_WARNING or "orbax" not in record.pathname


def log_to_file(workdir, name: str, *, create: bool = True) -> None:
  """Also writes the log to ``workdir/name`` (process 0 only; appended on a resume). Without
  ``create``, a missing ``workdir`` is left alone (read-only commands create nothing)."""
  import logging as std_logging  # pylint: disable=import-outside-toplevel
  import pathlib  # pylint: disable=import-outside-toplevel
  from absl import logging  # pylint: disable=import-outside-toplevel
  import jax  # pylint: disable=import-outside-toplevel
  if jax.process_index() != 0 or not (create or pathlib.Path(workdir).is_dir()):
    return
  pathlib.Path(workdir).mkdir(parents=True, exist_ok=True)
  handler = std_logging.FileHandler(pathlib.Path(workdir) / name)
  handler.setFormatter(logging.PythonFormatter())
  handler.addFilter(quiet_orbax)
  logging.get_absl_logger().addHandler(handler)


def start(argv) -> None:
  """What every main does first: refuses positional arguments, logs at INFO without orbax's
  per-save lines and without jax's probe of a TPU backend that is not there."""
  import logging as std_logging  # pylint: disable=import-outside-toplevel
  std_logging.getLogger("jax._src.xla_bridge").setLevel(std_logging.ERROR)
  from absl import app  # pylint: disable=import-outside-toplevel
  from absl import logging  # pylint: disable=import-outside-toplevel
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  logging.set_verbosity(logging.INFO)
  logging.get_absl_handler().addFilter(quiet_orbax)


# What a user's input can cause: bad config values and files, bad data, missing or incompatible
# checkpoints, unwritable paths (the library's errors subclass these).
USER_ERRORS = (ValueError, OSError, FloatingPointError, RuntimeError)


def _fail(message: str) -> None:
  if os.environ.get("GAUFUSE_TRACEBACK"):
    raise  # pylint: disable=misplaced-bare-raise
  print(f"ERROR: {message}\n(GAUFUSE_TRACEBACK=1 shows the traceback)", file=sys.stderr)
  sys.exit(1)


def _unknown_field(error, argv) -> str:
  """The message of ml_collections' error for a config field that does not exist: the field,
  the argument that names it, and the closest match when there is one."""
  text = error.args[0] if error.args and isinstance(error.args[0], str) else str(error)
  while len(text) > 1 and text[:1] == text[-1:] and text[:1] in "'\"":  # reprs around it
    try:
      text = ast.literal_eval(text)
    except (SyntaxError, ValueError):
      break
  name, _, hint = text.partition("\n")
  name = name.strip("'\"")
  given = [a.split("=")[0] for a in argv[1:] if name and f".{name}" in a.split("=")[0]]
  where = f" (in {given[0]})" if given else ""
  return f"no such config field {name!r}{where}" + (f". {hint.strip()}" if hint else "")


def run(main) -> None:
  """``absl.app.run(main)`` with a user's mistakes reported in one message (module docstring)."""
  from absl import app  # pylint: disable=import-outside-toplevel
  from absl import flags  # pylint: disable=import-outside-toplevel

  def parse(argv):
    try:
      return flags.FLAGS(argv)
    except flags.IllegalFlagValueError as e:  # a value that does not parse, a config file that
      message = str(e)                        # raised while it was loaded (with its traceback)
      if "Error whilst parsing config file" in message:
        message = (message.split(":", 1)[0] + ": "
                   + [line for line in message.splitlines() if line.strip()][-1])
      _fail(f"command line: {message}")
    except flags.Error:
      raise  # absl prints these with the usage
    except (AttributeError, KeyError) as e:  # config_flags: a mistyped config field
      _fail(f"command line: {_unknown_field(e, argv)}")
    except Exception as e:  # a config file that fails  # noqa
      _fail(f"command line: {e}")

  def checked_main(argv):
    try:
      main(argv)
    except USER_ERRORS as e:
      _fail(str(e))

  app.run(checked_main, flags_parser=parse)
