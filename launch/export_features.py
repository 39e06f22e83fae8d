r"""Writes the features of one split of a config's data as a folder of <video>.npy files: the
input of launch.localize (e.g. to try it on a fresh clone with the embedded data).

  python -m launch.export_features --config=configs/default.py --split=test --out=/tmp/feats
  python -m launch.localize --config=configs/default.py --workdir=/tmp/gaufuse_default \
      --features=/tmp/feats --output=/tmp/detections.json
"""

import pathlib

from absl import flags
from ml_collections import config_flags
import numpy as np

import launch

from gaufuse_jax._src import config_validation
from gaufuse_jax._src import input_pipeline

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Config file (configs/*.py).", lock_config=True)
flags.DEFINE_enum("split", "test", ["train", "test"], "Which split to write.")
flags.DEFINE_string("out", None, "The folder to write <video>.npy files to (created).")
flags.mark_flags_as_required(["config", "out"])


def main(argv):
  launch.start(argv)
  config_validation.validate_config(FLAGS.config)
  train_ds, test_ds = input_pipeline.load_datasets(FLAGS.config.data)
  dataset = test_ds if FLAGS.split == "test" else train_ds
  out = pathlib.Path(FLAGS.out)
  out.mkdir(parents=True, exist_ok=True)
  for name, features in zip(dataset.video_names, dataset.features):
    np.save(out / f"{name}.npy", features)
  print(f"Wrote {len(dataset)} videos of {dataset.name} ({dataset.split}, [T, "
        f"{dataset.feature_dim}] float32) to {out}")


if __name__ == "__main__":
  launch.run(main)
