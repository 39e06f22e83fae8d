"""gaufuse_jax: weakly supervised temporal action localization with Gaussian weighted fusion,
LinPro and Δ pseudo labels (Zhou et al., CVPR 2023) on the RSKP backbone, in JAX/Flax.

The public API is re-exported here (as optax does); the modules hold the implementations.
Inside the library segments are half-open ``[start, end)`` in snippets; seconds only at the
edges (data loading, results JSON).
"""

# Segment geometry.
from gaufuse_jax.segments import FPS
from gaufuse_jax.segments import FRAMES_PER_SNIPPET
from gaufuse_jax.segments import SECONDS_PER_SNIPPET
from gaufuse_jax.segments import outer_width
from gaufuse_jax.segments import overlap
from gaufuse_jax.segments import seconds_to_snippets
from gaufuse_jax.segments import snippets_to_seconds
# Proposals, suppression, fusion, localization (paper §3.1).
from gaufuse_jax.proposals import Proposals
from gaufuse_jax.proposals import generate_proposals
from gaufuse_jax.suppression import Detections
from gaufuse_jax.suppression import nms
from gaufuse_jax.suppression import soft_nms
from gaufuse_jax.fusion import gaussian_weighted_fusion
from gaufuse_jax.localization import LocalizationConfig
from gaufuse_jax.localization import localize
# LinPro and Δ pseudo labels (paper §3.2-3.3).
from gaufuse_jax.linpro import LinproSolution
from gaufuse_jax.linpro import linpro_assemble
from gaufuse_jax.linpro import linpro_constraints
from gaufuse_jax.linpro import linpro_labels
from gaufuse_jax.linpro import linpro_solve
from gaufuse_jax.pseudo_labels import PseudoLabelConfig
from gaufuse_jax.pseudo_labels import delta_pseudo_labels
from gaufuse_jax.pseudo_labels import assemble_pseudo_labels
from gaufuse_jax.pseudo_labels import generate_pseudo_labels
from gaufuse_jax.pseudo_labels import pseudo_label_loss
from gaufuse_jax.pseudo_labels import solve_pseudo_labels
# Evaluation.
from gaufuse_jax.evaluation import classification_map
from gaufuse_jax.evaluation import detection_map
from gaufuse_jax.evaluation import detections_from_padded
from gaufuse_jax.evaluation import format_map_table
from gaufuse_jax.evaluation import results_json
from gaufuse_jax.evaluation import validate_results_json
# Model, losses, memory.
from gaufuse_jax.models import RSKP
from gaufuse_jax.losses import rskp_losses
from gaufuse_jax.memory import MemoryBank
from gaufuse_jax.memory import init_memory
from gaufuse_jax.memory import read_memory
from gaufuse_jax.memory import update_memory
# Data.
from gaufuse_jax.data import VideoDataset
from gaufuse_jax.data import iterate_batches
from gaufuse_jax.data import iterate_micro_batches
from gaufuse_jax.data import load_annotations
from gaufuse_jax.data import load_wtalc
from gaufuse_jax.data import make_embedded_dataset
from gaufuse_jax.data import make_semisynthetic_dataset
from gaufuse_jax.data import write_wtalc
# Training.
from gaufuse_jax.train import train_and_evaluate

__version__ = "0.1.0"
