r"""The paper's Table 5 row for STPN + embedding on semi-synthetic THUMOS14 (as
``thumos14_synth.py``: real annotations, generated D=128 features, the schedule scaled to 1/10):
the backbone alone (``:backbone``) vs the backbone with GauFuse.

  python -m launch.train --config=configs/thumos14_synth_stpn.py --workdir=/tmp/th14_stpn
  python -m launch.ablate --config=configs/thumos14_synth_stpn.py --workdir=/tmp/t5_stpn \
      --seeds=0,1,2 --variants=backbone,delta --settings=nms,fusion

Expected result and time: README "Results", "Table 5: GauFuse as a plug-in".
"""

from configs import base
from configs import thumos14_synth


def get_config(method: str = "gaufuse"):
  c = thumos14_synth.get_config()
  return base.with_method(base.use_backbone(c, "stpn"), method)
