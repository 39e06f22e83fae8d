r"""Semi-synthetic THUMOS14 at real size: the authors' unscaled 350-epoch schedule (warm-up,
memory, 6 pseudo-label generations, Δ labels) on whole videos (14-2,615 snippets), D=512.

  python -m launch.train --config=configs/thumos14_synth_full.py --workdir=/tmp/th14_full \
      --config.seed=0

The real THUMOS14 annotations from ``../shared/data`` with generated features (as
``thumos14_synth.py``), the authors' learning rates and batch of 10 whole videos, evaluation every
25 epochs. Expected result (W-TALC avg mAP@0.1:0.7, final epoch, Gaussian fusion at test): about
10 (10.21 ± 2.54 over seeds 0-2: the backbone collapses during the warm-up on these generated
features); 17-20 min per seed on 2 CPU cores, 3.3-3.4 GB of memory. Details: README "Results",
section "The full schedule at real size".
"""

from configs import thumos14_synth
from gaufuse_jax._src import schedule


def get_config():
  c = thumos14_synth.get_config()
  c.data.feature_dim = 512
  c.max_snippets = 0                       # whole videos, as the authors train
  c.schedule = schedule.reference_schedule(1.0)
  c.eval.every_epochs = 25
  c.checkpoint_every_epochs = 25
  c.keep_checkpoint_every_epochs = 100  # epoch 200: the backbone before any pseudo label
  # Starting caps that hold THUMOS14's videos, so that they do not grow (recompile) mid-run.
  c.eval.localization.max_proposals, c.eval.localization.max_instances = 1024, 256
  c.pseudo.localization.max_proposals, c.pseudo.localization.max_instances = 1024, 256
  return c
