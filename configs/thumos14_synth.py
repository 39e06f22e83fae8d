r"""Semi-synthetic THUMOS14: the real THUMOS14 annotations (videos, lengths, segments, labels)
from ``../shared/data`` with generated I3D-like features
(``gaufuse_jax.make_semisynthetic_dataset``).

  python -m launch.train --config=configs/thumos14_synth.py --workdir=/tmp/th14_synth

Reduced for 2 CPU cores: D=128 features and the reference schedule scaled to 1/10 (35 epochs).
Expected result (W-TALC avg mAP@0.1:0.7, full method with Gaussian fusion at test): about 61
(61.14 ± 0.89 over seeds 0-1); 5-8 min per run on one CPU core. Details: README "Results",
section "Semi-synthetic THUMOS14 and the paper's ablations".
"""

import pathlib

from configs import base
from gaufuse_jax._src import schedule

_SHARED = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data" / "thumos14"


def get_config():
  c = base.get_config()
  c.seed = 0
  c.data.source = "semisynthetic"
  c.data.dataset = "Thumos14reduced"
  c.data.annotation_dir = str(_SHARED / "Thumos14reduced-Annotations")
  c.data.feature_dim = 128
  c.max_snippets = 768
  c.schedule = schedule.reference_schedule(0.1)
  c.schedule.lr_values = (1e-3, 8e-4, 4e-4, 1e-5, 5e-6)
  return c
