"""Flax models: the RSKP backbone (reference §4)."""

from gaufuse_jax.models.rskp import RSKP
from gaufuse_jax.models.rskp import snippet_mask
