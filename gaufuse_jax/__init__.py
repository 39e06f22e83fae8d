"""gaufuse_jax: weakly supervised temporal action localization with Gaussian weighted fusion,
LinPro and Δ pseudo labels (Zhou et al., CVPR 2023) on the RSKP backbone, in JAX/Flax.

The public API is re-exported here; the modules below hold the implementations.
"""

from gaufuse_jax.segments import FPS
from gaufuse_jax.segments import FRAMES_PER_SNIPPET
from gaufuse_jax.segments import SECONDS_PER_SNIPPET
from gaufuse_jax.segments import outer_width
from gaufuse_jax.segments import overlap
from gaufuse_jax.segments import seconds_to_snippets
from gaufuse_jax.segments import snippets_to_seconds

__version__ = "0.1.0"
