r"""THUMOS14 (reduced, 20 classes) with the authors' settings, on the real W-TALC I3D features.

  python -m launch.train --config=configs/thumos14.py --workdir=runs/thumos14 \
      --config.data.data_dir=/path/to/Thumos14reduced

``data_dir`` holds ``Thumos14reduced-I3D-JOINTFeatures.npy`` (W-TALC release) and the annotation
folder ``Thumos14reduced-Annotations`` (or pass ``--config.data.annotation_dir``). 350 epochs,
batch 10, the reference schedule; one GPU or more (pmap over all local devices).

Expected result (the authors' committed results log of this schedule): avg mAP@0.1:0.7 ≈ 48.1
under the W-TALC protocol with the ambiguous filter, cmAP ≈ 96.6. Not reproduced here: the
feature file is not available on this machine.
"""

from configs import base


def get_config():
  c = base.get_config()
  c.data.source = "wtalc"
  c.data.dataset = "Thumos14reduced"
  return c
