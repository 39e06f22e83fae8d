r"""ActivityNet 1.3 on W-TALC-format I3D features (200 classes; train = training, test =
validation; metric mAP@0.5:0.05:0.95).

  python -m launch.train --config=configs/activitynet13.py --workdir=runs/anet13 \
      --config.data.data_dir=/path/to/ActivityNet1.3 \
      --config.data.annotation_dir=../shared/data/activitynet1.3/ActivityNet1.3-Annotations

The authors released no ActivityNet code; this uses the THUMOS14 settings with the ActivityNet
metric as the best-checkpoint criterion. Expected result: the paper reports avg mAP 26.9 on
ActivityNet 1.3 (not reproduced here: no features on this machine).
"""

from configs import base


def get_config():
  c = base.get_config()
  c.data.source = "wtalc"
  c.data.dataset = "ActivityNet1.3"
  c.best_metric = "activitynet/mAP@0.5:0.05:0.95"
  c.eval.ambiguous_filter = False
  return c
