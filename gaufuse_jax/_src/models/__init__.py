"""Flax models: the RSKP backbone (the authors' ``model/main_branch.py``)."""

from gaufuse_jax._src.models.rskp import RSKP
from gaufuse_jax._src.models.rskp import snippet_mask
