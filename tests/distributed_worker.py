r"""One "host" of the two-process training test (``tests/test_distributed.py``).

  JAX_PLATFORMS=cpu python tests/distributed_worker.py PORT PROCESS_ID WORKDIR OUT_DIR

Starts ``jax.distributed`` on localhost (2 processes, gloo collectives between CPU processes),
then runs ``train.train_and_evaluate`` on ``distributed_config()`` (``config.distributed=True``;
its ``initialize()`` call is skipped: already initialized). Writes to ``OUT_DIR``:

* ``state_<I>_<step>.npz``: the parameters and pseudo labels (``generations``) this process
  passes to each checkpoint save: its own in-memory copy, whatever orbax writes;
* ``metrics_<I>.json``: the final test metrics ``train_and_evaluate`` returned;
* ``writes_<I>.json``: the files under ``WORKDIR`` this process opened for writing from Python
  (an audit hook; orbax's tensorstore writes from C++ and is not seen), relative to it.
"""

import argparse
import json
import os
import pathlib
import sys

import jax
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # the repository root
import conftest  # noqa: E402  (tests/ is on the path: this file's folder, or pytest's)
from gaufuse_jax._src import checkpointing  # noqa: E402
from gaufuse_jax import train  # noqa: E402


def distributed_config():
  """The shared tiny run of ``conftest.shared_config`` (4 epochs, every phase, a checkpoint
  after each) with ``config.distributed=True``; its batch of 4 is per process, so each step
  sees 8 videos over both."""
  c = conftest.shared_config()
  c.distributed = True
  c.checkpoint_every_epochs = 1
  return c


def _record_writes_under(workdir: pathlib.Path, writes: set) -> None:
  """Adds to ``writes`` every path under ``workdir`` that Python opens for writing."""
  def audit(event, args):
    if event != "open" or args[0] is None or isinstance(args[0], int):
      return
    mode, flags = args[1], args[2]
    writing = (set(mode) & set("wax+")) if isinstance(mode, str) else (
        flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT))
    path = pathlib.Path(os.fsdecode(args[0])).absolute()
    if writing and path.is_relative_to(workdir):
      writes.add(str(path.relative_to(workdir)))
  sys.addaudithook(audit)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("port", type=int)
  parser.add_argument("process_id", type=int)
  parser.add_argument("workdir", type=pathlib.Path)
  parser.add_argument("out", type=pathlib.Path)
  args = parser.parse_args()
  pid, out, workdir = args.process_id, args.out, args.workdir.absolute()
  writes = set()
  _record_writes_under(workdir, writes)

  save = checkpointing.Checkpointer.save

  def recording_save(self, step, state, metrics=None):
    leaves = jax.tree_util.tree_flatten_with_path(state.params)[0]
    np.savez(out / f"state_{pid}_{step}.npz", generations=np.asarray(state.generations),
             **{jax.tree_util.keystr(k): np.asarray(v) for k, v in leaves})
    save(self, step, state, metrics)
  checkpointing.Checkpointer.save = recording_save

  jax.distributed.initialize(coordinator_address=f"localhost:{args.port}", num_processes=2,
                             process_id=pid)
  metrics = train.train_and_evaluate(distributed_config(), str(workdir))
  (out / f"metrics_{pid}.json").write_text(json.dumps(metrics))
  (out / f"writes_{pid}.json").write_text(json.dumps(sorted(writes)))


if __name__ == "__main__":
  main()
