r"""BaS-Net (Lee et al., AAAI 2020; background modelling) on the real THUMOS14 W-TALC I3D
features, with GauFuse's pseudo labels and test-time fusion (the paper's Table 5 row);
``:backbone`` gives the backbone alone (no pseudo labels, NMS at test).

  python -m launch.train --config=configs/thumos14_basnet.py --workdir=runs/th14_basnet \
      --config.data.data_dir=/path/to/Thumos14reduced
  python -m launch.train --config=configs/thumos14_basnet.py:backbone \
      --workdir=runs/th14_basnet_bb \
      --config.data.data_dir=/path/to/Thumos14reduced

The reference schedule and optimizer of ``thumos14.py`` (350 epochs); the model fields, CAS
thresholds and class gate are the BaS-Net paper's (``gaufuse_jax.BaSNet``). Expected result:
not measured (the feature file is not available on this machine); the semi-synthetic Table 5 is
``thumos14_synth_basnet.py``.
"""

from configs import base
from configs import thumos14


def get_config(method: str = "gaufuse"):
  c = thumos14.get_config()
  return base.with_method(base.use_backbone(c, "basnet"), method)
