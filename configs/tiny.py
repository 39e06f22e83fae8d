r"""A tiny run for tests: a few videos and epochs, every phase of the schedule once.

  python -m launch.train --config=configs/tiny.py --workdir=/tmp/gaufuse_tiny

Expected result: finite metrics (the data is too small for the mAP to mean anything); about a
minute on 2 CPU cores, mostly compilation.
"""

from configs import base


def get_config():
  c = base.get_config()
  c.seed = 0
  c.batch_size = 4
  c.num_devices = 1
  c.data.source = "embedded"
  c.data.dataset = "embedded"
  c.data.feature_dim = 32
  c.data.generator.num_train = 12
  c.data.generator.num_test = 8
  c.data.generator.num_classes = 4
  s = c.schedule
  s.num_epochs = 8
  s.warmup_epochs = 1
  s.pseudo_start = 3
  s.generation_epochs = (3, 5, 6)
  s.generation_temperatures = (0.02, 0.002, 0.0016)
  s.delta_start = 5
  s.delta_scale_epochs = (5, 6)
  s.lr_boundaries = (4, 6)
  s.lr_values = (1e-3, 5e-4, 1e-4)
  # Caps large enough for this data: no recompilation to grow them.
  c.pseudo.localization.max_proposals = 128
  c.pseudo.localization.max_instances = 64
  c.eval.localization.max_proposals = 128
  c.eval.localization.max_instances = 32
  c.eval.every_epochs = 4
  c.checkpoint_every_epochs = 2
  return c
