r"""The embedded default: the README main command. Needs no files; ~minutes on 2 CPU cores.

  python -m launch.train --config=configs/default.py --workdir=/tmp/gaufuse_default

A procedurally generated THUMOS14-like dataset (20 classes, THUMOS14 segment statistics,
sparse non-negative I3D-like features, D=128; ``gaufuse_jax.data.embedded``) and the reference
schedule scaled to 1/10 (35 epochs, generations at epochs 20, 23, 24, 26, 28, 30).

Expected result: printed in the mAP table at the end (see README "Results").
"""

from configs import base
from gaufuse_jax import schedule


def get_config():
  c = base.get_config()
  c.seed = 0
  c.data.source = "embedded"
  c.data.dataset = "embedded"
  c.data.feature_dim = 128
  c.data.generator.num_train = 160
  c.data.generator.num_test = 160
  c.schedule = schedule.reference_schedule(0.1)
  c.schedule.lr_values = (1e-3, 8e-4, 4e-4, 1e-5, 5e-6)
  c.eval.every_epochs = 5
  c.checkpoint_every_epochs = 5
  return c
