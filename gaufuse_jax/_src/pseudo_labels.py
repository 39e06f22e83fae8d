"""Pseudo labels: the on-device pipeline (paper §3.2), Δ pseudo labels and their loss (§3.3).

``generate_pseudo_labels`` turns a teacher's CAS into snippet labels with exactly the
post-processing used at test time (``localization.localize``: class gate, multi-threshold OIC
proposals, Gaussian weighted fusion), at the training temperature, followed by the LinPro LP
(``linpro.linpro_solve`` and ``linpro.linpro_assemble``). Jitted functions over ``[B, T, C']``;
no Python loop over videos or classes.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from gaufuse_jax._src import linpro
from gaufuse_jax._src import localization


@dataclasses.dataclass(frozen=True)
class PseudoLabelConfig:
  """Settings of one pseudo-label generation (hashable: a static jit argument).

  Attributes:
    localization: class gate, proposals and fusion (``temperature`` = the generation's fusion
      temperature, 0.02 / 0.002 / 0.0016 in the reference schedule); its ``conventions``
      also shape the LP rows (``linpro.instance_areas``).
    outer_rule: outer-area rule of the LP constraints (``segments.outer_width``).
    normalize: ``"sum"`` (the authors' code) or ``"mean"`` (the paper's text).
    solver: LP solver (see ``linpro``).
  """
  localization: localization.LocalizationConfig = localization.LocalizationConfig(
      temperature=0.02, max_instances=32)
  outer_rule: str = "gaufuse"
  normalize: str = "sum"
  solver: str = "ipm"


def generate_pseudo_labels(cas, video_scores, valid_length, cfg: PseudoLabelConfig,
                           temperature=None):
  """LinPro pseudo labels of a batch (paper §3.2; ``utils/utils.py:fuse_current_pred``).

  Every class, background included, whose video score passes ``cfg.localization.class_threshold``
  is localized (ground-truth labels are NOT used, as in the reference), its fused instances
  become the rows of the LP, and the LP solution is the class's label column. Classes that are
  gated off or have no instance get zeros. The composition of ``localization.localize``,
  ``solve_pseudo_labels`` and ``assemble_pseudo_labels`` (which a training run compiles as
  separate programs: the LP's shapes do not depend on ``T``, so it compiles once).

  Args:
    cas: ``[B, T, C']`` float CAS (C' = classes + background).
    video_scores: ``[B, C']`` float video-level scores.
    valid_length: ``[B]`` int real snippets per video; labels past it are 0.
    cfg: ``PseudoLabelConfig`` (static).
    temperature: optional float scalar (may be traced) overriding the fusion temperature of
      ``cfg.localization``; one compiled function then serves every generation. Checked as in
      ``localization.localize``: a traced value that is not > 0 gives NaN instance scores, and
      LinPro then reports those problems as ``STATUS_FAILED`` with zero labels.

  Returns:
    ``(labels, diagnostics)``: float32 ``[B, T, C']`` finite labels in ``[0, 1]``;
    diagnostics of ``[B, C']`` arrays: ``num_instances`` (fused instances), ``lp_status``
    (``linpro.STATUS_*``), ``lp_fallbacks`` (1 where the LP was relaxed or failed),
    ``proposals_dropped`` and ``instances_dropped`` (see ``localization.localize``).
  """
  instances, stats = localization.localize(cas, video_scores, valid_length, cfg.localization,
                                           temperature)
  solution, diagnostics = solve_pseudo_labels(instances, valid_length, cfg)
  labels = assemble_pseudo_labels(solution, valid_length, num_snippets=cas.shape[1])
  return labels, dict(diagnostics, proposals_dropped=stats["proposals_dropped"],
                      instances_dropped=stats["instances_dropped"])


def solve_pseudo_labels(instances, valid_length, cfg: PseudoLabelConfig):
  """The LinPro LPs of a batch's fused instances (paper eq. 5-6), independent of ``T``.

  Args:
    instances: ``suppression.Detections`` with leaves ``[B, C', K]`` (``localization.localize``).
    valid_length: ``[B]`` int real snippets per video.
    cfg: ``PseudoLabelConfig`` (static): the LP rows' conventions, outer rule, normalisation
      and solver.

  Returns:
    ``(solution, diagnostics)``: ``linpro.LinproSolution`` with leaves ``[B, C', M]``;
    ``num_instances``, ``lp_status`` and ``lp_fallbacks`` as in ``generate_pseudo_labels``.
  """
  lengths = jnp.broadcast_to(jnp.asarray(valid_length)[:, None], instances.count.shape)
  solution, info = linpro.linpro_solve(
      instances.segments, instances.scores, instances.valid, lengths,
      outer_rule=cfg.outer_rule, conventions=cfg.localization.conventions,
      normalize=cfg.normalize, solver=cfg.solver)
  has_rows = instances.count > 0
  return solution, {
      "num_instances": instances.count,
      "lp_status": jnp.where(has_rows, info["status"], linpro.STATUS_SOLVED),
      "lp_fallbacks": (has_rows & (info["status"] != linpro.STATUS_SOLVED)).astype(jnp.int32),
  }


def assemble_pseudo_labels(solution, valid_length, *, num_snippets: int):
  """float32 ``[B, T, C']`` labels of a ``solve_pseudo_labels`` solution (leaves
  ``[B, C', M]``); 0 at snippets ``>= valid_length [B]``; ``num_snippets`` = ``T`` (static)."""
  lengths = jnp.broadcast_to(jnp.asarray(valid_length)[:, None], solution.starts.shape[:2])
  labels = linpro.linpro_assemble(solution, lengths, num_snippets=num_snippets)
  return jnp.swapaxes(labels, 1, 2).astype(jnp.float32)


def delta_pseudo_labels(new, old, scale):
  """Δ pseudo labels (paper eq. 8): ``scale * (new - old)``; may be negative.

  Args:
    new, old: float arrays of one shape (e.g. ``[B, T, C']``), two consecutive generations.
    scale: float (2, then 2.15 from epoch 300 in the reference, §3).

  Examples:
    >>> import jax.numpy as jnp
    >>> from gaufuse_jax import delta_pseudo_labels
    >>> delta = delta_pseudo_labels(jnp.array([0.5, 0.2]), jnp.array([0.25, 0.4]), 2.0)
    >>> [round(v, 3) for v in delta.tolist()]  # negative: pushes the class down
    [0.5, -0.4]
  """
  return scale * (new - old)


def pseudo_label_cross_entropy(log_probs, labels, valid):
  """Pseudo-label loss per video on one branch, from log-probabilities: mean over valid snippets
  of ``-sum_c labels[t, c] * log_probs[t, c]`` (the authors' ``utils/utils.py:compute_distloss``).

  Labels may be negative (Δ labels, eq. 8): the term then pushes the class probability down.

  Args:
    log_probs: ``[B, T, C']`` float snippet log-probabilities.
    labels: ``[B, T, C']`` float pseudo labels.
    valid: ``[B, T]`` bool snippet mask.

  Returns:
    float ``[B]``; 0 for a video without valid snippets.
  """
  per_snippet = -jnp.sum(labels * log_probs, axis=-1)
  count = jnp.sum(valid, axis=-1)
  return jnp.sum(jnp.where(valid, per_snippet, 0.0), axis=-1) / jnp.maximum(count, 1)


def pseudo_label_loss(logits, labels, valid):
  """Pseudo-label loss per video (the authors' ``utils/utils.py:compute_distloss``, one branch):
  :func:`pseudo_label_cross_entropy` of ``log_softmax(logits)``.

  Args:
    logits: ``[B, T, C']`` float frame logits (20 cosine, no temperature).
    labels: ``[B, T, C']`` float pseudo labels (may be negative: Δ labels).
    valid: ``[B, T]`` bool snippet mask.

  Returns:
    float ``[B]``; 0 for a video without valid snippets.
  """
  return pseudo_label_cross_entropy(jax.nn.log_softmax(logits, axis=-1), labels, valid)
