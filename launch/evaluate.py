r"""Evaluates a checkpoint of a run: mAP tables, results JSON and (optionally) plots.

  python -m launch.evaluate --config=configs/default.py --workdir=/tmp/gaufuse_default \
      [--checkpoint=best|latest|<epoch>] [--split=test] [--plots=4]

Writes ``<workdir>/eval_<step>/results/<split>.{json,md}`` and, with --plots, PNGs of a few
videos (CAS, attention, pseudo labels of training videos, proposals, detections vs GT) and of
mAP vs tIoU in ``<workdir>/eval_<step>/plots``.
"""

from absl import flags
from ml_collections import config_flags

import launch

from gaufuse_jax import evaluate_run

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "The run's config file.", lock_config=True)
flags.DEFINE_string("workdir", None, "The run directory (holds checkpoints/).")
flags.DEFINE_string("checkpoint", "best", "'best', 'latest' or an epoch number.")
flags.DEFINE_enum("split", "test", ["train", "test"], "Which split to evaluate.")
flags.DEFINE_integer("plots", 0, "Number of videos to plot (0: none).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  launch.start(argv)
  launch.log_to_file(FLAGS.workdir, "evaluate.log", create=False)
  evaluate_run.evaluate_checkpoint(FLAGS.config, FLAGS.workdir, checkpoint=FLAGS.checkpoint,
                                   split=FLAGS.split, num_plots=FLAGS.plots)


if __name__ == "__main__":
  launch.run(main)
