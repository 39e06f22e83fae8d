r"""Localizes actions in videos without annotations: features -> ActivityNet-format JSON.

  python -m launch.localize --config=configs/default.py --workdir=/tmp/gaufuse_default \
      --features=/path/to/features_folder_or_file.npy --output=/tmp/detections.json

--features is a folder of per-video ``<video>.npy`` files ``[T, D]`` or one ``.npy`` file
(one video, named by the file). Segments in the output are in seconds
(``config.data.frames_per_snippet / config.data.fps`` per snippet).
"""

from absl import flags
from ml_collections import config_flags

import launch

from gaufuse_jax import evaluate_run

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "The run's config file.", lock_config=True)
flags.DEFINE_string("workdir", None, "The run directory (holds checkpoints/).")
flags.DEFINE_string("checkpoint", "best", "'best', 'latest' or an epoch number.")
flags.DEFINE_string("features", None, "A folder of <video>.npy files or one .npy file.")
flags.DEFINE_string("output", None, "Where to write the results JSON.")
flags.mark_flags_as_required(["config", "workdir", "features", "output"])


def main(argv):
  launch.start(argv)
  evaluate_run.localize_features(FLAGS.config, FLAGS.workdir, FLAGS.features, FLAGS.output,
                                 checkpoint=FLAGS.checkpoint)


if __name__ == "__main__":
  launch.run(main)
