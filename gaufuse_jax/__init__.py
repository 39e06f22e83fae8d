"""gaufuse_jax: weakly supervised temporal action localization with Gaussian weighted fusion,
LinPro and Δ pseudo labels (Zhou et al., CVPR 2023) on the RSKP backbone, in JAX/Flax.

The public API is re-exported here (as optax does); the modules hold the implementations.
Training is the application, not the library: ``from gaufuse_jax.train import
train_and_evaluate`` (``import gaufuse_jax`` does not load optax, orbax, tqdm or
ml_collections).
Inside the library segments are half-open ``[start, end)`` in snippets; seconds only at the
edges (data loading, results JSON).
"""

# Segment geometry.
from gaufuse_jax._src.segments import FPS
from gaufuse_jax._src.segments import FRAMES_PER_SNIPPET
from gaufuse_jax._src.segments import SECONDS_PER_SNIPPET
from gaufuse_jax._src.segments import outer_width
from gaufuse_jax._src.segments import overlap
from gaufuse_jax._src.segments import seconds_to_snippets
from gaufuse_jax._src.segments import snippets_to_seconds
# Proposals, suppression, fusion, localization (paper §3.1).
from gaufuse_jax._src.proposals import Proposals
from gaufuse_jax._src.proposals import generate_proposals
from gaufuse_jax._src.suppression import Detections
from gaufuse_jax._src.suppression import nms
from gaufuse_jax._src.suppression import soft_nms
from gaufuse_jax._src.fusion import gaussian_weighted_fusion
from gaufuse_jax._src.localization import LocalizationConfig
from gaufuse_jax._src.localization import localize
# LinPro and Δ pseudo labels (paper §3.2-3.3).
from gaufuse_jax._src.linpro import LinproSolution
from gaufuse_jax._src.linpro import linpro_assemble
from gaufuse_jax._src.linpro import linpro_constraints
from gaufuse_jax._src.linpro import linpro_labels
from gaufuse_jax._src.linpro import linpro_solve
from gaufuse_jax._src.pseudo_labels import PseudoLabelConfig
from gaufuse_jax._src.pseudo_labels import delta_pseudo_labels
from gaufuse_jax._src.pseudo_labels import assemble_pseudo_labels
from gaufuse_jax._src.pseudo_labels import generate_pseudo_labels
from gaufuse_jax._src.pseudo_labels import pseudo_label_loss
from gaufuse_jax._src.pseudo_labels import solve_pseudo_labels
# Evaluation.
from gaufuse_jax._src.evaluation import classification_map
from gaufuse_jax._src.evaluation import detection_map
from gaufuse_jax._src.evaluation import detections_from_padded
from gaufuse_jax._src.evaluation import precision_recall
from gaufuse_jax._src.results import format_map_table
from gaufuse_jax._src.results import results_json
from gaufuse_jax._src.results import validate_results_json
# Backbones, losses, memory.
from gaufuse_jax._src.models.backbone import Backbone
from gaufuse_jax._src.models.basnet import BaSNet
from gaufuse_jax._src.models.registry import get_backbone
from gaufuse_jax._src.models.registry import register_backbone
from gaufuse_jax._src.models.rskp import RSKP
from gaufuse_jax._src.models.stpn import STPN
from gaufuse_jax._src.losses import rskp_losses
from gaufuse_jax._src.memory import MemoryBank
from gaufuse_jax._src.memory import init_memory
from gaufuse_jax._src.memory import read_memory
from gaufuse_jax._src.memory import update_memory
# Data.
from gaufuse_jax._src.data import VideoDataset
from gaufuse_jax._src.data import iterate_batches
from gaufuse_jax._src.data import iterate_micro_batches
from gaufuse_jax._src.data import load_annotations
from gaufuse_jax._src.data import load_wtalc
from gaufuse_jax._src.data import make_embedded_dataset
from gaufuse_jax._src.data import make_semisynthetic_dataset
from gaufuse_jax._src.data import write_wtalc
from gaufuse_jax._src.data.errors import DataError
from gaufuse_jax._src.data.errors import MissingFileError

__all__ = (
    "FPS",
    "FRAMES_PER_SNIPPET",
    "SECONDS_PER_SNIPPET",
    "outer_width",
    "overlap",
    "seconds_to_snippets",
    "snippets_to_seconds",
    "Proposals",
    "generate_proposals",
    "Detections",
    "nms",
    "soft_nms",
    "gaussian_weighted_fusion",
    "LocalizationConfig",
    "localize",
    "LinproSolution",
    "linpro_assemble",
    "linpro_constraints",
    "linpro_labels",
    "linpro_solve",
    "PseudoLabelConfig",
    "delta_pseudo_labels",
    "assemble_pseudo_labels",
    "generate_pseudo_labels",
    "pseudo_label_loss",
    "solve_pseudo_labels",
    "classification_map",
    "detection_map",
    "detections_from_padded",
    "precision_recall",
    "format_map_table",
    "results_json",
    "validate_results_json",
    "Backbone",
    "BaSNet",
    "get_backbone",
    "register_backbone",
    "RSKP",
    "STPN",
    "rskp_losses",
    "MemoryBank",
    "init_memory",
    "read_memory",
    "update_memory",
    "VideoDataset",
    "iterate_batches",
    "iterate_micro_batches",
    "load_annotations",
    "load_wtalc",
    "make_embedded_dataset",
    "make_semisynthetic_dataset",
    "write_wtalc",
    "DataError",
    "MissingFileError",
)

__version__ = "0.1.0"
