"""Plots of a video's CAS, attention, pseudo labels and detections, mAP-vs-tIoU curves and
precision-recall curves (matplotlib; not loaded by ``import gaufuse_jax``)."""

from gaufuse_jax._src.viz import plot_map_vs_tiou
from gaufuse_jax._src.viz import plot_precision_recall
from gaufuse_jax._src.viz import plot_video
from gaufuse_jax._src.viz import save_figure

__all__ = (
    "plot_map_vs_tiou",
    "plot_precision_recall",
    "plot_video",
    "save_figure",
)
