r"""ActivityNet 1.3 on W-TALC-format I3D features (200 classes; train = training, test =
validation; metric mAP@0.5:0.05:0.95).

  python -m launch.train --config=configs/activitynet13.py --workdir=runs/anet13 \
      --config.data.data_dir=/path/to/ActivityNet1.3 \
      --config.data.annotation_dir=../shared/data/activitynet1.3/ActivityNet1.3-Annotations

The authors released no ActivityNet code; this uses the THUMOS14 settings with the ActivityNet
metric as the best-checkpoint criterion. For comparison, the paper reports avg mAP@0.5:0.05:0.95
28.8 on ActivityNet 1.3 (mAP@0.5 43.4, @0.75 28.8, @0.95 9.9: its ActivityNet 1.3 comparison
table as listed in Pilhyeon/Awesome-Weakly-Supervised-Temporal-Action-Localization; the
abstract's "+3.7% on ActivityNet1.3" over ASM-Loc's 25.1 agrees). No ActivityNet 1.2 result is
listed for it. Not reproduced here: no features on this machine.
"""

from configs import base


def get_config():
  c = base.get_config()
  c.data.source = "wtalc"
  c.data.dataset = "ActivityNet1.3"
  c.best_metric = "activitynet/mAP@0.5:0.05:0.95"
  c.eval.ambiguous_filter = False
  return c
