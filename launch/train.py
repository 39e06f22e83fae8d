r"""Trains and evaluates a GauFuse model.

  python -m launch.train --config=configs/default.py --workdir=/tmp/gaufuse_default
  python -m launch.train --config=configs/thumos14.py --workdir=runs/th14 \
      --config.data.data_dir=/path/to/Thumos14reduced

Starting again with the --workdir of an existing run resumes it. The log also goes to
<workdir>/train.log. Any config field can be set with --config.<field>=<value>; print them all with
  python -c "from configs import default; print(default.get_config())"
"""

from absl import flags
from ml_collections import config_flags

import launch

from gaufuse_jax import train
from gaufuse_jax._src import config_validation

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Config file (configs/*.py).", lock_config=True)
flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and results.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  launch.start(argv)
  config_validation.validate_config(FLAGS.config)  # before the log file creates --workdir
  launch.log_to_file(FLAGS.workdir, "train.log")
  train.train_and_evaluate(FLAGS.config, FLAGS.workdir)


if __name__ == "__main__":
  launch.run(main)
