"""The paper's ablations: Table 4 (what each pseudo-label component adds) and Table 3 (test-time
NMS vs soft-NMS vs fusion templates), over several seeds.

For each seed the warm-up (every epoch before ``config.schedule.pseudo_start``, which all
variants share) is trained once; each training variant then resumes from a copy of its last
checkpoint and runs the rest of the schedule:

| variant         | pseudo labels after ``pseudo_start``                                 |
|-----------------|----------------------------------------------------------------------|
| ``backbone``    | none (the RSKP losses only, same epochs)                             |
| ``linpro_nms``  | LinPro from hard-NMS boxes (``use_new_predictor=False``), plain labels  |
| ``linpro_fusion`` | LinPro from Gaussian weighted fusion, plain labels                 |
| ``delta``       | LinPro from fusion, plain then Δ labels (the full method)            |

Each trained model is evaluated under the test-time settings of the rows that use it
(``TEST_SETTINGS``). Results are cached in ``<workdir>/ablation.json`` and every training run is
resumable, so an interrupted ablation continues where it stopped.
"""

from __future__ import annotations

import gc
import json
import pathlib
import shutil

from absl import logging
import jax
import ml_collections
import numpy as np

from gaufuse_jax import evaluate_run
from gaufuse_jax._src import config_validation
from gaufuse_jax._src import devices
from gaufuse_jax._src import evaluation_loop
from gaufuse_jax._src import programs
from gaufuse_jax._src import input_pipeline
from gaufuse_jax import train
from gaufuse_jax._src import train_state as train_state_lib

# Test-time post-processing: name -> config.eval fields.
TEST_SETTINGS = {
    "nms": dict(suppression="nms"),
    "soft_nms": dict(suppression="soft_nms"),
    "fusion": dict(suppression="fusion", template="gaussian"),
    "fusion_laplace": dict(suppression="fusion", template="laplace"),
    "fusion_uniform": dict(suppression="fusion", template="uniform"),
    "fusion_student_t": dict(suppression="fusion", template="student_t"),
}

# (row label, training variant, test setting): the paper's Table 4 ...
TABLE4 = (
    ("Untrained model (fusion at test)", "untrained", "fusion"),
    ("Warm-up only (epoch pseudo_start, fusion at test)", "warmup", "fusion"),
    ("Backbone only (NMS at test)", "backbone", "nms"),
    ("+ LinPro from NMS boxes", "linpro_nms", "nms"),
    ("+ Gaussian fusion (train)", "linpro_fusion", "nms"),
    ("+ Δ labels", "delta", "nms"),
    ("+ Gaussian fusion at test (full method)", "delta", "fusion"),
    ("Backbone only, Gaussian fusion at test (reference line)", "backbone", "fusion"),
)
# ... and Table 3 (test-time post-processing of the full method).
TABLE3 = (
    ("NMS (0.25)", "delta", "nms"),
    ("soft-NMS", "delta", "soft_nms"),
    ("fusion, Gaussian template", "delta", "fusion"),
    ("fusion, Laplace template", "delta", "fusion_laplace"),
    ("fusion, uniform template", "delta", "fusion_uniform"),
    ("fusion, Student-t template", "delta", "fusion_student_t"),
)
# (label, method (variant, setting), baseline (variant, setting)): per-seed comparisons, as the
# paper's Table 5 (a backbone alone vs the same backbone with GauFuse's labels and fusion).
PAIRS = (
    ("GauFuse (Δ labels, fusion at test) - backbone alone (NMS at test)", ("delta", "fusion"),
     ("backbone", "nms")),
)
TRAINING_VARIANTS = ("backbone", "linpro_nms", "linpro_fusion", "delta")
METRICS = (
    "wtalc/mAP@0.1:0.7", "wtalc/mAP@0.5", "activitynet/mAP@0.5:0.05:0.95", "cmAP")


def variant_config(config: ml_collections.ConfigDict, variant: str,
                   seed: int) -> ml_collections.ConfigDict:
  """``config`` with ``seed`` and the schedule / pseudo-label edits of ``variant`` (one of
  ``"warmup"`` (stops at ``pseudo_start``) or ``TRAINING_VARIANTS``).

  Raises:
    ValueError: for an unknown variant.
  """
  c = ml_collections.ConfigDict(config.to_dict())
  c.seed = seed
  c.eval.every_epochs = 0  # evaluate at the end only
  s = c.schedule
  if variant == "warmup":
    s.num_epochs = s.pseudo_start
  elif variant == "backbone":
    s.generation_epochs, s.generation_temperatures = (), ()
  elif variant in ("linpro_nms", "linpro_fusion"):
    s.delta_start = s.num_epochs
    c.pseudo.localization.suppression = "nms" if variant == "linpro_nms" else "fusion"
  elif variant != "delta":
    raise ValueError(f"variant must be 'warmup' or one of {TRAINING_VARIANTS}, got {variant!r}")
  return c


def select_rows(rows, *, variants=(), settings=()) -> tuple:
  """The ``(label, variant, setting)`` rows whose training variant is in ``variants`` (the
  ``"untrained"`` and ``"warmup"`` rows always stay) and whose test setting is in ``settings``;
  an empty selection keeps everything.

  Raises:
    ValueError: naming an unknown variant or test setting.
  """
  for name, chosen, known in (("variant", variants, TRAINING_VARIANTS),
                              ("test setting", settings, tuple(TEST_SETTINGS))):
    unknown = sorted(set(chosen) - set(known))
    if unknown:
      raise ValueError(f"unknown {name} {unknown}: expected some of {known}")
  keep_variant = lambda v: not variants or v in variants or v in ("untrained", "warmup")
  return tuple(r for r in rows if keep_variant(r[1]) and (not settings or r[2] in settings))


def test_config(config: ml_collections.ConfigDict, setting: str) -> ml_collections.ConfigDict:
  """``config`` with the ``config.eval`` fields of ``TEST_SETTINGS[setting]``."""
  if setting not in TEST_SETTINGS:
    raise ValueError(f"test setting must be one of {tuple(TEST_SETTINGS)}, got {setting!r}")
  c = ml_collections.ConfigDict(config.to_dict())
  c.eval.localization.update(TEST_SETTINGS[setting])
  return c


def _needed(rows):
  """variant -> sorted test settings that the table rows ask of it."""
  needed = {}
  for _, variant, setting in rows:
    needed.setdefault(variant, set()).add(setting)
  return {v: sorted(s) for v, s in needed.items()}


def _initial_params(config, train_ds):
  """The parameters a run of ``config`` starts from (same key as ``train_and_evaluate``)."""
  model = programs.build_model(config, train_ds)
  state = train_state_lib.create_train_state(
      model, train_state_lib.make_optimizer(config), jax.random.PRNGKey(config.seed),
      num_videos=1, max_snippets=1, feature_dim=train_ds.feature_dim,
      num_classes=train_ds.num_classes, memory_slots=config.memory_slots)
  return model, state.params


def run_ablation(config: ml_collections.ConfigDict, workdir, seeds, *,
                 rows=TABLE4 + TABLE3) -> dict:
  """Trains the variants that ``rows`` need for every seed and evaluates them.

  Args:
    config: the base config (e.g. ``configs/thumos14_synth.py``); its schedule's
      ``pseudo_start`` splits the shared warm-up from the variants.
    workdir: the ablation's folder: ``seed<s>/<variant>/`` runs and ``ablation.json``.
    seeds: model seeds (initialisation, data order, crops); the data seed stays fixed.
    rows: (label, variant, test setting) rows, variants from ``"untrained"``, ``"warmup"`` and
      ``TRAINING_VARIANTS``.

  Returns:
    ``{variant: {setting: {seed (str): metrics}}}`` (also in ``<workdir>/ablation.json``).

  Raises:
    config_validation.ConfigError: bad fields of ``config``, before any work.
  """
  config_validation.validate_config(config)
  workdir = pathlib.Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  cache_path = workdir / "ablation.json"
  results = json.loads(cache_path.read_text()) if cache_path.exists() else {}
  train_ds, test_ds = input_pipeline.load_datasets(config.data)
  bucket_sizes = input_pipeline.bucket_sizes(config, train_ds, test_ds)

  def record(variant, setting, seed, metrics):
    slot = results.setdefault(variant, {}).setdefault(setting, {})
    slot[str(seed)] = {k: metrics[k] for k in METRICS}
    logging.info("ablation seed %d %s / %s: %s", seed, variant, setting, slot[str(seed)])
    cache_path.write_text(json.dumps(results, indent=1))

  def done(variant, setting, seed):
    return str(seed) in results.get(variant, {}).get(setting, {})

  def evaluate(cfg, model, params, variant, setting, seed):
    if not done(variant, setting, seed):
      tcfg = test_config(cfg, setting)
      metrics, _ = evaluation_loop.evaluate(tcfg, devices.replicate(params, tcfg), test_ds,
                                      p_eval=programs.make_eval_step(tcfg, model),
                                      bucket_sizes=bucket_sizes)
      record(variant, setting, seed, metrics)

  needed = _needed(rows)
  for seed in seeds:
    seed_dir = workdir / f"seed{seed}"
    if "untrained" in needed:
      cfg = variant_config(config, "delta", seed)
      model, params = _initial_params(cfg, train_ds)
      for setting in needed["untrained"]:
        evaluate(cfg, model, params, "untrained", setting, seed)
    for variant in ["warmup"] + [v for v in TRAINING_VARIANTS if v in needed]:
      # Every run evaluates with fusion at its end (TEST_SETTINGS["fusion"]): record that.
      cfg = test_config(variant_config(config, variant, seed), "fusion")
      run_dir = seed_dir / variant
      if variant != "warmup" and not (run_dir / "checkpoints").exists():
        shutil.copytree(seed_dir / "warmup" / "checkpoints", run_dir / "checkpoints")
      if not done(variant, "fusion", seed) or not (run_dir / "results").exists():
        record(variant, "fusion", seed, train.train_and_evaluate(cfg, run_dir))
      if not all(done(variant, s, seed) for s in needed.get(variant, ())):
        raw, _ = evaluate_run.restore_checkpoint(cfg, run_dir, "latest")
        model = programs.build_model(cfg, train_ds)
        for setting in needed[variant]:
          evaluate(cfg, model, raw["params"], variant, setting, seed)
      # Every run compiles its own programs, and their machine code stays mapped until released:
      # an ablation of many runs in one process would exhaust Linux's default vm.max_map_count
      # (65,530 mappings), and XLA then fails to compile ("Cannot allocate memory").
      jax.clear_caches()
      gc.collect()
  return results


def format_tables(results: dict, *, rows_by_title=None, metrics=METRICS, keep=None) -> str:
  """Markdown tables, one per title, of mean ± std over seeds (percent) of ``results`` (as
  ``run_ablation`` returns), with only the rows in ``keep`` when given (e.g. those of
  :func:`select_rows`). Cells without results read "n/a"."""
  rows_by_title = rows_by_title or {
      "Table 4: pseudo-label components": TABLE4,
      "Table 3: test-time post-processing of the full method": TABLE3}
  out = []
  for title, rows in rows_by_title.items():
    rows = [r for r in rows if keep is None or r in keep]
    if not rows:
      continue
    out += [f"**{title}**", "", "| | " + " | ".join(metrics) + " | seeds |",
            "|:--|" + "--:|" * (len(metrics) + 1)]
    for label, variant, setting in rows:
      per_seed = results.get(variant, {}).get(setting, {})
      cells = []
      for m in metrics:
        values = np.array([r[m] for r in per_seed.values()], np.float64)
        cells.append(f"{values.mean():.2f} ± {values.std():.2f}" if values.size else "n/a")
      out.append(f"| {label} | " + " | ".join(cells) + f" | {len(per_seed)} |")
    out.append("")
  return "\n".join(out)


def format_paired(results: dict, *, pairs=PAIRS, metrics=METRICS) -> str:
  """Markdown tables of the per-seed differences of each pair of ``pairs`` (method minus baseline,
  on the seeds that have both; percent), with their mean ± std; pairs without a common seed are
  left out."""
  out = []
  for label, (variant, setting), (base_variant, base_setting) in pairs:
    method = results.get(variant, {}).get(setting, {})
    baseline = results.get(base_variant, {}).get(base_setting, {})
    seeds = sorted(set(method) & set(baseline), key=int)
    if not seeds:
      continue
    out += [f"**Paired per-seed differences: {label}**", "",
            "| seed | " + " | ".join(metrics) + " |", "|--:|" + "--:|" * len(metrics)]
    diffs = {m: np.array([method[s][m] - baseline[s][m] for s in seeds]) for m in metrics}
    for i, s in enumerate(seeds):
      out.append(f"| {s} | " + " | ".join(
          f"{baseline[s][m]:.2f} -> {method[s][m]:.2f} ({diffs[m][i]:+.2f})" for m in metrics)
                 + " |")
    out.append("| mean ± std | " + " | ".join(
        f"{diffs[m].mean():+.2f} ± {diffs[m].std():.2f}" for m in metrics) + " |")
    out.append("")
  return "\n".join(out)
