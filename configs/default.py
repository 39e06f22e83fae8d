r"""The embedded default: the README main command. Needs no files.

  python -m launch.train --config=configs/default.py --workdir=/tmp/gaufuse_default

A procedurally generated THUMOS14-like dataset (20 classes, THUMOS14 segment statistics,
sparse non-negative I3D-like features, D=128; ``gaufuse_jax.make_embedded_dataset``) and the
reference schedule scaled to 0.08 (28 epochs, generations at epochs 16, 18, 20, 21, 22, 24).

Expected result (seed 2, W-TALC protocol): avg mAP@0.1:0.7 42.38, ActivityNet avg 8.77, cmAP
94.43; about 2-3 minutes on 2 CPU cores, mostly compilation (README "Results").
"""

from configs import base
from gaufuse_jax._src import schedule


def get_config():
  c = base.get_config()
  c.seed = 0
  c.data.source = "embedded"
  c.data.dataset = "embedded"
  c.data.feature_dim = 128
  c.data.generator.num_train = 120
  c.data.generator.num_test = 100
  c.schedule = schedule.reference_schedule(0.08)
  c.schedule.lr_values = (1e-3, 8e-4, 4e-4, 1e-5, 5e-6)
  c.eval.every_epochs = 7
  c.checkpoint_every_epochs = 4
  return c
