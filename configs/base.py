"""The authors' settings (``options.py``), the base of every other config.

Not a run on its own: it has no data source. See thumos14.py for the real-feature run.
"""

import dataclasses

import ml_collections

from gaufuse_jax import LocalizationConfig
from gaufuse_jax import get_backbone
from gaufuse_jax._src import schedule
from gaufuse_jax._src.models import registry

METHODS = ("gaufuse", "backbone")


def localization_settings(*, omit=(), **overrides) -> ml_collections.ConfigDict:
  """The fields of ``gaufuse_jax.LocalizationConfig`` (its defaults: the authors' class gate,
  CAS thresholds, OIC outer rule, conventions, overlap and template) with ``overrides``, minus
  ``omit``; each settable from the command line, e.g.
  ``--config.eval.localization.suppression=nms``."""
  values = dataclasses.asdict(LocalizationConfig(**overrides))
  # None (default): chosen by the suppression; a bool from the command line.
  values["merge_duplicates"] = ml_collections.FieldReference(overrides.get("merge_duplicates"),
                                                             field_type=bool)
  return ml_collections.ConfigDict({k: v for k, v in values.items() if k not in omit})


# Each backbone's own test-time CAS rule, where it differs from the authors' RSKP settings: the
# CAS thresholds and class gate of the localization (tests and pseudo labels alike).
BACKBONE_LOCALIZATION = {
    # BaSNet-pytorch config.py (act_thresh) and main.py (class_th) on its min-max normalised CAS.
    "basnet": dict(thresholds=tuple(round(0.025 * i, 3) for i in range(10)), class_threshold=0.25),
}


def use_backbone(c: ml_collections.ConfigDict, backbone: str) -> ml_collections.ConfigDict:
  """``c`` with ``config.model`` for ``backbone`` (a name of ``gaufuse_jax.register_backbone`` or
  ``"package.module:Class"``): its name and its own fields with defaults (the backbone paper's
  settings), each settable from the command line (e.g. ``--config.model.dropout_rate=0.5``), and
  the localization settings of its own CAS rule (``BACKBONE_LOCALIZATION``)."""
  cls = get_backbone(backbone)
  defaults = {f.name: f.default for f in dataclasses.fields(cls)
              if f.default is not dataclasses.MISSING}
  c.model = ml_collections.ConfigDict(
      {"backbone": backbone, **{k: defaults[k] for k in registry.backbone_fields(cls)
                                if k in defaults}})
  for localization in (c.eval.localization, c.pseudo.localization):
    localization.update(BACKBONE_LOCALIZATION.get(backbone, {}))
  return c


def with_method(c: ml_collections.ConfigDict, method: str) -> ml_collections.ConfigDict:
  """``c`` for ``method``: ``"gaufuse"`` (unchanged: the backbone with GauFuse's pseudo labels and
  test-time fusion) or ``"backbone"`` (the backbone alone: no pseudo-label generation, NMS at
  test; the paper's Table 5 baseline). Configs take it as their argument:
  ``--config=configs/thumos14_stpn.py:backbone``.

  Raises:
    ValueError: an unknown ``method``.
  """
  if method not in METHODS:
    raise ValueError(f"config argument: expected a method in {METHODS}, got {method!r}")
  if method == "backbone":
    c.schedule.generation_epochs, c.schedule.generation_temperatures = (), ()
    c.eval.localization.suppression = "nms"
  return c


def get_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 2                       # the reference seed
  c.distributed = False            # True: jax.distributed.initialize() (multi-host / TPU pod)
  c.num_devices = 0                # local devices to pmap over; 0 = all
  c.batch_size = 10                # global per process; the reference accumulates 10 videos
  c.micro_batch_size = 1           # videos per device per accumulated micro-batch, each padded
                                   # to its own length; 0 = the whole batch padded together
  c.max_snippets = 0               # > 0: train on seeded random crops of at most this length
  c.bucket_sizes = ()              # padded lengths T_pad; () = picked from the data:
  c.bucket_growth = 1.5            # training: rungs growing by this factor (one program each)
  c.inference_buckets = 4          # whole videos (evaluation, pseudo labels, memory init): this
                                   # many sizes, fitted to the sorted batches of the data
  c.memory_slots = 5               # tokens per class in the memory bank
  c.checkpoint_every_epochs = 5
  c.keep_checkpoint_every_epochs = 0  # > 0: also keep the checkpoints of its multiples
  c.best_metric = "wtalc/mAP@0.1:0.7"
  c.grow_caps = True               # double max_proposals / max_instances instead of dropping
  c.resume_override = False        # True: resume a run under another config or data (recorded)

  c.data = ml_collections.ConfigDict()
  c.data.source = "wtalc"          # "wtalc" (feature files), "semisynthetic", "embedded"
  c.data.dataset = "Thumos14reduced"
  c.data.data_dir = ""             # folder holding <dataset>-I3D-JOINTFeatures.npy
  c.data.annotation_dir = ""       # default: <data_dir>/<dataset>-Annotations or data_dir
  c.data.fps = 25.0
  c.data.frames_per_snippet = 16.0
  c.data.exclude_videos = ()       # e.g. ("video_test_0000270", "video_test_0001496")
  c.data.feature_dim = 2048
  c.data.max_length_ratio = 2.0    # snippets per video vs duration*fps/frames_per_snippet; 0: off
  c.data.seed = 0                  # generated data only
  c.data.generator = ml_collections.ConfigDict()  # extra generator arguments (generated data)

  c.model = ml_collections.ConfigDict()  # the backbone and its own fields (gaufuse_jax.models)
  c.model.backbone = "rskp"        # "rskp", "stpn", "basnet", a registered name, "pkg.mod:Class"
  c.model.num_tokens = 8
  c.model.em_iterations = 2
  c.model.dropout_rate = 0.6
  c.model.walk_weight = 0.5
  c.model.logit_scale = 20.0
  c.model.token_scale = 5.0

  c.optimizer = ml_collections.ConfigDict()
  c.optimizer.b1 = 0.9
  c.optimizer.b2 = 0.99
  c.optimizer.eps = 1e-8
  c.optimizer.weight_decay = 5e-4  # coupled L2, as torch.optim.Adam

  c.schedule = schedule.reference_schedule(1.0)

  c.pseudo = ml_collections.ConfigDict()  # pseudo_labels.PseudoLabelConfig, plus the teacher
  c.pseudo.frame_coef = 0.8
  c.pseudo.video_coef = 0.6
  c.pseudo.teacher_dropout = False  # the authors' teacher is never put in eval mode: dropout on
  c.pseudo.outer_rule = "gaufuse"  # outer areas of the LP rows (linpro.instance_areas)
  c.pseudo.normalize = "sum"
  c.pseudo.solver = "ipm"
  # The fusion temperature of each generation is config.schedule.generation_temperatures.
  c.pseudo.localization = localization_settings(
      max_proposals=256,   # starting caps per (video, class); they double whenever a batch
      max_instances=32,    # would drop anything (c.grow_caps)
      suppression="fusion",  # "nms": LinPro from NMS boxes (the paper's Table 4 ablation)
      omit=("temperature",))

  c.eval = ml_collections.ConfigDict()
  c.eval.every_epochs = 5
  c.eval.frame_coef = 0.85
  c.eval.video_coef = 0.6
  c.eval.ambiguous_filter = True
  c.eval.localization = localization_settings(
      temperature=0.2, max_proposals=256, max_instances=64,
      suppression="fusion")  # "fusion", "nms", "soft_nms"
  return c
