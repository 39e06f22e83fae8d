r"""STPN + embedding (Nguyen et al., CVPR 2018) on the real THUMOS14 W-TALC I3D features, with
GauFuse's pseudo labels and test-time fusion (the paper's Table 5 row); ``:backbone`` gives the
backbone alone (no pseudo labels, NMS at test).

  python -m launch.train --config=configs/thumos14_stpn.py --workdir=runs/th14_stpn \
      --config.data.data_dir=/path/to/Thumos14reduced
  python -m launch.train --config=configs/thumos14_stpn.py:backbone --workdir=runs/th14_stpn_bb \
      --config.data.data_dir=/path/to/Thumos14reduced

The reference schedule and optimizer of ``thumos14.py`` (350 epochs); the model fields are the
STPN paper's (``gaufuse_jax.STPN``). Expected result: not measured (the feature file is not
available on this machine); the semi-synthetic Table 5 is ``thumos14_synth_stpn.py``.
"""

from configs import base
from configs import thumos14


def get_config(method: str = "gaufuse"):
  c = thumos14.get_config()
  return base.with_method(base.use_backbone(c, "stpn"), method)
