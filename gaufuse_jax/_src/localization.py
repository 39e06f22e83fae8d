"""Test-time localization on device: class gating, proposals, suppression (the authors'
``evaluation/detectionMAP.py:getActLoc``).

The same function makes the fused instances of the pseudo-label pipeline (paper §3.2: the
training targets come from the same post-processing as the test-time detections), with the
training temperature.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

from gaufuse_jax._src import active_map
from gaufuse_jax._src import fusion
from gaufuse_jax._src import segments as seg_lib
from gaufuse_jax._src import proposals as proposals_lib
from gaufuse_jax._src import shape_buckets
from gaufuse_jax._src import suppression


def reference_thresholds() -> tuple[float, ...]:
  """``arange(0.001, 0.04, 0.002)``: the 20 CAS thresholds of the reference (§5.3)."""
  return tuple(float(x) for x in np.arange(0.001, 0.04, 0.002))


@dataclasses.dataclass(frozen=True)
class LocalizationConfig:
  """Post-processing settings (hashable: a static argument of jitted functions).

  Attributes:
    class_threshold: a class of a video is localized when its video score is >= this
      (0.16 in the reference; GT labels are never used).
    thresholds: CAS thresholds of the multi-threshold proposals.
    max_proposals: N, padded proposals per (video, class) over all thresholds; runs beyond
      it are dropped and counted (``localize``'s ``proposals_dropped``). The authors keep
      every run: callers that must not drop anything grow it (``programs.GrowingStep``).
    max_instances: K, padded instances kept per (video, class), in seed order; the rest are
      dropped and counted (``instances_dropped``).
    min_length: shortest proposal in snippets.
    outer_rule: outer-area width rule of the OIC score (see ``segments.outer_width``).
    conventions: ``"reference"`` (the authors' proposals, stored segments and overlaps) or
      ``"exact"`` (our half-open variant); see ``gaufuse_jax.segments``.
    suppression: ``"fusion"`` (Gaussian weighted fusion), ``"nms"`` or ``"soft_nms"``.
    temperature: fusion temperature (0.2 at test; 0.02-0.0016 for pseudo labels).
    overlap_threshold: fusion / NMS overlap threshold (0.25 in the reference).
    overlap: ``"candidate"`` (the authors' code) or ``"iou"``.
    template: fusion template (see ``fusion.gaussian_weighted_fusion``).
    soft_nms_sigma: Gaussian decay width of soft-NMS.
    merge_duplicates: keep one proposal per distinct run, with its number of copies over the
      thresholds (``proposals.generate_proposals``); fusion weighs it by that count, so
      fusion and NMS give the detections of the copies, on fewer rows, and ``max_proposals``
      holds more distinct runs. ``None`` (default): on for fusion and NMS, off for soft-NMS
      (which decays every copy on its own and so needs them).
    pair_chunk: (video, class) pairs localized together. Only the pairs that pass the class
      gate are localized (the reference's loop skips the others), in chunks of this many, so
      the work follows the number of gated pairs, not ``B * C``.
  """
  class_threshold: float = 0.16
  thresholds: tuple[float, ...] = dataclasses.field(default_factory=reference_thresholds)
  max_proposals: int = 256
  max_instances: int = 32
  min_length: int = 2
  outer_rule: str = "gaufuse"
  conventions: str = "reference"
  suppression: Literal["fusion", "nms", "soft_nms"] = "fusion"
  temperature: float = 0.2
  overlap_threshold: float = 0.25
  overlap: str = "candidate"
  template: str = "gaussian"
  soft_nms_sigma: float = 0.5
  merge_duplicates: bool | None = None
  pair_chunk: int = 8

  def __post_init__(self):
    def bad(field, expected):
      raise ValueError(f"LocalizationConfig.{field} must be {expected}, got "
                       f"{getattr(self, field)!r}")

    def real(value):
      return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
          value, bool) and math.isfinite(value)

    seg_lib.check_conventions("LocalizationConfig", self.conventions)
    if self.suppression not in ("fusion", "nms", "soft_nms"):
      bad("suppression", "'fusion', 'nms' or 'soft_nms'")
    for field, allowed in (("outer_rule", seg_lib.OUTER_RULES), ("overlap", seg_lib.OVERLAPS),
                           ("template", fusion.TEMPLATES)):
      if getattr(self, field) not in allowed:
        bad(field, f"one of {allowed}")
    if not real(self.class_threshold):
      bad("class_threshold", "a finite number")
    if not (isinstance(self.thresholds, tuple) and self.thresholds and
            all(real(x) for x in self.thresholds)):
      bad("thresholds", "a non-empty tuple of finite numbers")
    if not (real(self.temperature) and self.temperature > 0):
      bad("temperature", "a finite number > 0 (the fusion's softmax divides by it)")
    if not (real(self.overlap_threshold) and 0 <= self.overlap_threshold <= 1):
      bad("overlap_threshold", "in [0, 1]")
    if not (real(self.soft_nms_sigma) and self.soft_nms_sigma > 0):
      bad("soft_nms_sigma", "a finite number > 0")
    for field in ("max_proposals", "max_instances", "min_length", "pair_chunk"):
      value = getattr(self, field)
      if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        bad(field, "an integer >= 1")
    if self.max_instances > self.max_proposals:
      bad("max_instances", f"<= max_proposals={self.max_proposals}")
    if self.merge_duplicates is None:
      object.__setattr__(self, "merge_duplicates", self.suppression != "soft_nms")
    elif not isinstance(self.merge_duplicates, bool):
      bad("merge_duplicates", "True, False or None")
    elif self.merge_duplicates and self.suppression == "soft_nms":
      raise ValueError("LocalizationConfig.merge_duplicates=True does not apply to soft-NMS, "
                       "which decays every copy of a proposal on its own; use False or None")


def _suppress(props: proposals_lib.Proposals, valid, cfg: LocalizationConfig, temperature):
  segs = jnp.stack([props.start, props.end], axis=-1)
  if cfg.suppression == "fusion":
    return fusion.gaussian_weighted_fusion(
        segs, props.score, valid, logits=props.inner, counts=props.count,
        overlap_threshold=cfg.overlap_threshold, temperature=temperature, overlap=cfg.overlap,
        conventions=cfg.conventions, template=cfg.template)
  if cfg.suppression == "nms":
    return suppression.nms(segs, props.score, valid, overlap_threshold=cfg.overlap_threshold,
                           overlap=cfg.overlap, conventions=cfg.conventions)
  return suppression.soft_nms(segs, props.score, valid, sigma=cfg.soft_nms_sigma,
                              score_threshold=-jnp.inf, overlap=cfg.overlap,
                              conventions=cfg.conventions)


def localize(cas, video_scores, valid_length, cfg: LocalizationConfig, temperature=None):
  """Action instances of every (video, class) from a CAS.

  Args:
    cas: ``[B, T, C]`` float CAS (C classes; include background or not as the caller wants).
    video_scores: ``[B, C]`` float video-level class scores, for the class gate.
    valid_length: ``[B]`` int, real snippets per video.
    cfg: a ``LocalizationConfig`` (static).
    temperature: optional float scalar (may be traced) that overrides ``cfg.temperature``, so
      that generations with different temperatures share one compiled function. A concrete
      value that is not > 0 (NaN included) raises ValueError; a traced one makes the fused
      scores NaN (``fusion.gaussian_weighted_fusion``).

  Called outside ``jit`` / ``vmap``, ``T`` and ``B`` are padded to ``shape_buckets.bucket``
  sizes (padding changes nothing) and one jitted program per bucket runs, so a loop over videos
  of many lengths compiles a bounded number of programs.

  Returns:
    ``(instances, stats)``: ``suppression.Detections`` with leaves ``[B, C, K]`` (segments
    ``[B, C, K, 2]`` in snippets, scores = fused OIC score, valid, index, count), in seed order;
    stats: ``gated [B, C]`` bool, ``proposals_dropped [B, C]`` int32 (runs beyond
    ``max_proposals``) and ``instances_dropped [B, C]`` int32 (instances beyond
    ``max_instances``). Pairs that fail the gate get empty detections (``Detections`` padding)
    and zero counts.

  Examples:
    One video, two classes; only class 0 passes the gate, its CAS has one run ``[3, 7)``:

    >>> import jax.numpy as jnp
    >>> from gaufuse_jax import LocalizationConfig, localize
    >>> cas = jnp.zeros((1, 12, 2)).at[0, 3:7, 0].set(0.03)
    >>> found, stats = localize(cas, jnp.array([[0.9, 0.05]]), jnp.array([12]),
    ...                         LocalizationConfig(conventions="exact"))
    >>> stats["gated"].tolist(), found.count.tolist(), found.segments[0, 0, :1].tolist()
    ([[True, False]], [[1, 0]], [[3.0, 7.0]])
  """
  temperature = cfg.temperature if temperature is None else temperature
  suppression.check_static("localize", "temperature", temperature, positive=True)
  if shape_buckets.is_traced(cas, video_scores, valid_length, temperature):
    return _localize(cas, video_scores, valid_length, temperature, cfg=cfg)
  float_dtype = jnp.result_type(float)
  cas = shape_buckets.host(cas, float_dtype)
  video_scores = shape_buckets.host(video_scores, float_dtype)
  if cas.ndim != 3 or video_scores.shape != (cas.shape[0], cas.shape[2]):
    raise ValueError(f"localize: expected cas [B, T, C] and video_scores [B, C], found "
                     f"{cas.shape} and {video_scores.shape}")
  b, t = cas.shape[:2]
  size = shape_buckets.bucket(b)
  valid_length = np.broadcast_to(shape_buckets.host(valid_length, np.int32), (b,))
  out = _localize_jit(
      shape_buckets.pad_to(shape_buckets.pad_to(cas, 1, shape_buckets.bucket(t)), 0, size),
      shape_buckets.pad_to(video_scores, 0, size, -np.inf),  # padded videos: gated off
      shape_buckets.pad_to(valid_length, 0, size), np.asarray(temperature, float_dtype),
      cfg=cfg)
  return shape_buckets.unpad(out, lambda x: x[:b])


def _localize(cas, video_scores, valid_length, temperature, *, cfg):
  thresholds = jnp.asarray(cfg.thresholds, jnp.float32)
  gated = video_scores >= cfg.class_threshold
  b, t, c = cas.shape

  def one(cas_1d, length, gate):
    props = proposals_lib.generate_proposals(
        cas_1d, length, thresholds, max_proposals=cfg.max_proposals, min_length=cfg.min_length,
        outer_rule=cfg.outer_rule, conventions=cfg.conventions,
        merge_duplicates=cfg.merge_duplicates)
    out = _suppress(props, props.valid & gate, cfg, temperature)
    out = jax.tree.map(lambda x: x[:cfg.max_instances] if x.ndim else x, out)
    kept = jnp.minimum(out.count, cfg.max_instances)
    return out._replace(count=kept), props.num_dropped, out.count - kept

  # What a pair without valid proposals gives: Detections padding, no drops.
  fill = (suppression.Detections(segments=0, scores=0, valid=False, index=-1, count=0), 0, 0)
  gate = gated.reshape(b * c)
  pairs = (jnp.swapaxes(cas, 1, 2).reshape(b * c, t),
           jnp.repeat(jnp.asarray(valid_length, jnp.int32), c), gate)
  instances, proposals_dropped, instances_dropped = active_map.map_active(
      lambda p: jax.vmap(one)(*p), pairs, gate, chunk=cfg.pair_chunk, fill=fill)
  unflatten = lambda a: a.reshape((b, c) + a.shape[1:])
  instances = jax.tree.map(unflatten, instances)
  return instances, {"gated": gated,
                     "proposals_dropped": jnp.where(gated, unflatten(proposals_dropped), 0),
                     "instances_dropped": unflatten(instances_dropped)}


_localize_jit = jax.jit(_localize, static_argnames="cfg")


def grow_caps(cfg: LocalizationConfig, *, proposals_dropped: int, instances_dropped: int
              ) -> LocalizationConfig:
  """``cfg`` with caps that hold what a run dropped: ``max_proposals`` becomes the next power of
  two >= ``max_proposals + proposals_dropped`` (the most one (video, class) dropped) and
  ``max_instances`` likewise (at most the new ``max_proposals``). More proposals can make more
  instances, so a rerun may still drop some: grow again then."""
  grown = lambda cap, extra: cap if extra <= 0 else 1 << (cap + int(extra) - 1).bit_length()
  max_proposals = grown(cfg.max_proposals, proposals_dropped)
  max_instances = min(grown(cfg.max_instances, instances_dropped), max_proposals)
  return dataclasses.replace(cfg, max_proposals=max_proposals, max_instances=max_instances)
