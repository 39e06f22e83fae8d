r"""The paper's ablations (Tables 3-5) over several seeds, printed as markdown tables.

  python -m launch.ablate --config=configs/thumos14_synth.py --workdir=/tmp/th14_ablation \
      --seeds=0,1,2 [--variants=backbone,delta] [--settings=nms,fusion]

Trains, per seed, the shared warm-up once and the four training variants from it (see
``gaufuse_jax.ablation``), evaluates each under the test-time settings of the tables, and writes
``<workdir>/ablation.json`` and ``<workdir>/ablation.md`` (with the per-seed differences of the
full method over the backbone alone: Table 5 for the config's backbone). Starting again resumes.
"""

import pathlib

from absl import app
from absl import flags
from ml_collections import config_flags

import launch

from gaufuse_jax import ablation

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Config file (configs/*.py).", lock_config=True)
flags.DEFINE_string("workdir", None,
                    "Directory of the ablation (one run folder per seed and variant).")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Model seeds.")
flags.DEFINE_list("variants", [], "Training variants to run (default: all of "
                  f"{', '.join(ablation.TRAINING_VARIANTS)}).")
flags.DEFINE_list("settings", [], "Test-time settings to evaluate (default: all of "
                  f"{', '.join(ablation.TEST_SETTINGS)}).")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  launch.start(argv)
  try:
    seeds = [int(s) for s in FLAGS.seeds]
  except ValueError as e:
    raise app.UsageError(f"--seeds must be integers, got {FLAGS.seeds}") from e
  try:
    rows = ablation.select_rows(ablation.TABLE4 + ablation.TABLE3, variants=FLAGS.variants,
                                settings=FLAGS.settings)
  except ValueError as e:
    raise app.UsageError(f"--variants / --settings: {e}") from e
  results = ablation.run_ablation(FLAGS.config, FLAGS.workdir, seeds, rows=rows)
  table = ablation.format_tables(results, keep=rows) + "\n" + ablation.format_paired(results)
  pathlib.Path(FLAGS.workdir, "ablation.md").write_text(table)
  print(table)


if __name__ == "__main__":
  launch.run(main)
