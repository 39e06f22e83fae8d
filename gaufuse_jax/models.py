"""WTAL backbones and what a user's own backbone needs (see ``Backbone``): the interface, the
built-in RSKP, STPN + embedding and BaS-Net, the config-name registry, and the padding-safe helpers
the built-in ones are written with."""

from gaufuse_jax._src.models.backbone import Backbone
from gaufuse_jax._src.models.backbone import check_shape
from gaufuse_jax._src.models.backbone import masked
from gaufuse_jax._src.models.backbone import snippet_mask
from gaufuse_jax._src.models.backbone import top_k_mean
from gaufuse_jax._src.models.backbone import video_dropout
from gaufuse_jax._src.models.basnet import BaSNet
from gaufuse_jax._src.models.registry import backbone_fields
from gaufuse_jax._src.models.registry import get_backbone
from gaufuse_jax._src.models.registry import register_backbone
from gaufuse_jax._src.models.rskp import RSKP
from gaufuse_jax._src.models.stpn import STPN
from gaufuse_jax._src.pseudo_labels import pseudo_label_cross_entropy

__all__ = (
    "Backbone",
    "BaSNet",
    "RSKP",
    "STPN",
    "backbone_fields",
    "check_shape",
    "get_backbone",
    "masked",
    "pseudo_label_cross_entropy",
    "register_backbone",
    "snippet_mask",
    "top_k_mean",
    "video_dropout",
)
