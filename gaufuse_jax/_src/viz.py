"""Plots: one video on a time axis in seconds, mAP vs tIoU, precision-recall.

Host-side numpy + matplotlib. Every ``plot_*`` function is pure: it takes numpy (or jax) arrays
and returns a new ``matplotlib.figure.Figure`` drawn on an Agg canvas (no display, no pyplot
state); ``save_figure`` writes it as PNG.

Units: per-snippet signals (CAS, attention, pseudo labels) and proposal / detection segments are
in SNIPPETS (half-open ``[start, end)``) and are drawn in seconds (``x * seconds_per_snippet``);
ground-truth segments are in SECONDS (the ``evaluation`` formats). Snippet ``t`` covers
``[t, t + 1) * seconds_per_snippet`` and is drawn as one step.
"""

from __future__ import annotations

import math
import os
import re
import sys
from typing import Any, Mapping, Sequence

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
import numpy as np

from gaufuse_jax._src import evaluation
from gaufuse_jax._src import segments as segments_lib
from gaufuse_jax._src import tables

PANEL_HEIGHT = 1.6  # inches per signal panel
ROW_HEIGHT = 0.45  # inches per class row of the detections panel
FIG_WIDTH = 11.0  # inches
DPI = 120

# "mAP@<tIoU>" metric keys, optionally prefixed ("wtalc/mAP@0.5"); averages ("@0.1:0.5") excluded.
_MAP_KEY = re.compile(r"^(?:(.+)/)?mAP@(\d*\.?\d+)$")


# ----------------------------------------------------------------------------- validation


def _signal(value, name: str, *, ndim: int, length: int | None = None) -> np.ndarray:
  """``value`` as a finite float64 array with ``ndim`` dims (and ``length`` rows), checked."""
  arr = np.asarray(value)
  if arr.dtype == bool or not np.issubdtype(arr.dtype, np.number):
    raise ValueError(f"{name}: expected a float array, found dtype {arr.dtype}")
  want = "[T]" if ndim == 1 else "[T, C]"
  if arr.ndim != ndim or 0 in arr.shape or (length is not None and arr.shape[0] != length):
    raise ValueError(f"{name}: expected shape {want} with T = "
                     f"{length if length is not None else '>= 1'}, found {arr.shape}")
  arr = arr.astype(np.float64)
  if not np.all(np.isfinite(arr)):
    raise ValueError(f"{name}: contains NaN or inf")
  return arr


def _instances(table, name: str, *, scored: bool, num_names: int) -> dict[str, np.ndarray]:
  """One video's instances ``{"segment" [n, 2], "label" [n](, "score" [n])}``, checked; extra keys
  (e.g. ``"video"``) are ignored."""
  out = {"segment": tables.check_column(table, "segment", name, integer=False, pairs=True),
         "label": tables.check_column(table, "label", name, integer=True)}
  if scored:
    out["score"] = tables.check_column(table, "score", name, integer=False)
  lengths = {k: len(v) for k, v in out.items()}
  if len(set(lengths.values())) > 1:
    raise ValueError(f"{name}: arrays must have the same length, found {lengths}")
  labels = out["label"]
  if labels.size and (labels.min() < 0 or labels.max() >= num_names):
    raise ValueError(f"{name}['label']: expected class ids in [0, {num_names}) (len(class_names))"
                     f", found [{labels.min()}, {labels.max()}]")
  return out


def _class_ids(classes, num_columns: int, num_names: int) -> np.ndarray:
  if classes is None:
    ids = np.arange(num_columns)
  else:
    ids = np.asarray(classes)
    if ids.ndim != 1 or ids.size == 0 or not np.issubdtype(ids.dtype, np.integer):
      raise ValueError(f"classes: expected a non-empty list of int class ids, found {classes!r}")
    if len(set(ids.tolist())) != ids.size:
      raise ValueError(f"classes: ids must be unique, found {ids.tolist()}")
  if ids.min() < 0 or ids.max() >= num_columns:
    raise ValueError(f"classes: expected ids in [0, {num_columns}) (columns of cas), found "
                     f"{ids.tolist()}")
  if ids.max() >= num_names:
    raise ValueError(f"class_names: expected a name for every class id up to {ids.max()}, found "
                     f"{num_names} names")
  return ids


def _class_colours(ids: Sequence[int]) -> dict[int, Any]:
  """One colour per class id, in the order given (tab10, or tab20 beyond 10 classes)."""
  cmap = matplotlib.colormaps["tab10" if len(ids) <= 10 else "tab20"]
  return {c: cmap(i % cmap.N) for i, c in enumerate(ids)}


def _new_figure(width: float, height: float) -> Figure:
  fig = Figure(figsize=(width, height), layout="constrained")
  FigureCanvasAgg(fig)
  return fig


# ----------------------------------------------------------------------------- one video


def _draw_per_class(ax, values, ids, colours, edges, names=None):
  """One step curve per class id (column ``values[:, c]``); returns the artists."""
  return [ax.stairs(values[:, c], edges, color=colours[c], linewidth=1.4, baseline=None,
                    label=None if names is None else names[c]) for c in ids]


def _draw_instances(ax, det, gt, rows, colours, names, seconds_per_snippet):
  """Detections (filled, alpha by score) and ground truth (hatched outline) as bars, one row per
  class (rows top to bottom in ``rows`` order): detections above, GT below in each row."""
  row_of = {c: r for r, c in enumerate(rows)}
  if gt is not None:
    for (start, end), c in zip(gt["segment"], gt["label"]):
      (bar,) = ax.barh(row_of[c] + 0.22, end - start, left=start, height=0.4,
                       facecolor="none", edgecolor=colours[c], hatch="///", linewidth=1.2)
      bar.set_gid("ground_truth")
  if det is not None and det["score"].size:
    lo, hi = det["score"].min(), det["score"].max()
    strength = (det["score"] - lo) / (hi - lo) if hi > lo else np.ones_like(det["score"])
    for (start, end), c, s in zip(det["segment"] * seconds_per_snippet, det["label"], strength):
      (bar,) = ax.barh(row_of[c] - 0.22, end - start, left=start, height=0.4,
                       color=colours[c], alpha=0.25 + 0.65 * s, linewidth=0)
      bar.set_gid("detection")
  ax.set_yticks(range(len(rows)), [names[c] for c in rows])
  ax.set_ylim(len(rows) - 0.5, -0.5)
  parts = [p for p, v in (("detections (filled, darker = higher score)", det),
                          ("ground truth (hatched)", gt)) if v is not None]
  ax.set_title(" vs ".join(parts), fontsize=9, loc="left")


def plot_video(*, cas, class_names: Sequence[str], attention=None, classes=None,
               seconds_per_snippet: float = segments_lib.SECONDS_PER_SNIPPET,
               pseudo_labels=None, delta_labels=None, proposals=None, detections=None,
               ground_truth=None, title: str = "") -> Figure:
  """One video's signals and instances, stacked panels on ONE time axis in seconds.

  Panels, top to bottom, each omitted when its input is None: CAS (one step curve per shown
  class, legend with the class names), attention, LinPro pseudo labels, Δ pseudo labels (with a
  zero line: Δ can be negative), proposals (thin bars at the height of their score), fused
  detections vs ground truth (bars, one row per class). A class has one colour in every panel.

  Args:
    cas: ``[T, C]`` float class activation sequence; column ``c`` is class id ``c``.
    class_names: names indexed by class id; must cover every id shown.
    attention: optional ``[T]`` float attention.
    classes: optional class ids whose columns are drawn (e.g. the gated classes); default all
      ``C`` columns. Instance labels outside ``classes`` still get a colour and a row.
    seconds_per_snippet: seconds per snippet (16 / 25 = 0.64 for I3D at 25 fps).
    pseudo_labels, delta_labels: optional ``[T, C']`` float, indexed by class id like ``cas``
      (e.g. ``C' = C + 1`` with background); the ``classes`` columns are drawn.
    proposals: optional ``{"segment" [N, 2] snippets, "label" [N] int, "score" [N]}``.
    detections: optional fused instances ``{"segment" [K, 2] snippets, "label" [K], "score" [K]}``.
    ground_truth: optional ``{"segment" [G, 2] SECONDS, "label" [G]}``.
    Instance dicts may carry extra keys (e.g. ``"video"``), which are ignored.
    title: figure title.

  Returns:
    A ``Figure`` (Agg canvas) whose axes share x, limits ``[0, T * seconds_per_snippet]``.

  Raises:
    ValueError: a signal that is not ``[T]`` / ``[T, C']`` with the CAS's ``T``, too few columns
      for ``classes``, non-numeric or NaN/inf values, bad instance dicts (missing key, shape,
      length, label out of ``class_names``), non-positive ``seconds_per_snippet``, or class ids
      that are out of range, duplicated or unnamed.
  """
  seconds_per_snippet = tables.check_positive("seconds_per_snippet", seconds_per_snippet)
  names = list(class_names)
  cas = _signal(cas, "cas", ndim=2)
  num_snippets = cas.shape[0]
  ids = _class_ids(classes, cas.shape[1], len(names))
  signals = {"attention": None if attention is None else
             _signal(attention, "attention", ndim=1, length=num_snippets)}
  for name, value in (("pseudo_labels", pseudo_labels), ("delta_labels", delta_labels)):
    signals[name] = None if value is None else _signal(value, name, ndim=2, length=num_snippets)
    if value is not None and signals[name].shape[1] <= ids.max():
      raise ValueError(f"{name}: expected at least {ids.max() + 1} columns (class ids "
                       f"{ids.tolist()}), found shape {signals[name].shape}")
  inst = {name: None if value is None else _instances(value, name, scored=scored,
                                                      num_names=len(names))
          for name, value, scored in (("proposals", proposals, True),
                                      ("detections", detections, True),
                                      ("ground_truth", ground_truth, False))}
  labels = [v["label"] for v in inst.values() if v is not None]
  extra = sorted(set(np.concatenate(labels).tolist()) - set(ids.tolist())) if labels else []
  rows = ids.tolist() + extra
  colours = _class_colours(rows)

  panels = ["cas"] + [k for k in ("attention", "pseudo_labels", "delta_labels")
                      if signals[k] is not None]
  panels += ["proposals"] if inst["proposals"] is not None else []
  show_instances = inst["detections"] is not None or inst["ground_truth"] is not None
  panels += ["instances"] if show_instances else []
  heights = [1.0] * len(panels)
  if show_instances:
    heights[-1] = max(ROW_HEIGHT * len(rows) + 0.6, 1.0) / PANEL_HEIGHT
  fig = _new_figure(FIG_WIDTH, PANEL_HEIGHT * sum(heights) + 0.6)
  axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False,
                      gridspec_kw={"height_ratios": heights})[:, 0]
  ax_of = dict(zip(panels, axes))
  edges = np.arange(num_snippets + 1) * seconds_per_snippet

  ax = ax_of["cas"]
  _draw_per_class(ax, cas, ids, colours, edges, names)
  handles = ax.get_legend_handles_labels()[0] + [
      Line2D([], [], color=colours[c], linewidth=4, label=f"{names[c]} (no CAS)") for c in extra]
  ax.legend(handles=handles, fontsize=8, loc="upper right", ncol=max(1, math.ceil(len(rows) / 6)))
  ax.set_ylabel("CAS")
  if "attention" in ax_of:
    ax_of["attention"].stairs(signals["attention"], edges, color="black", baseline=None)
    ax_of["attention"].set_ylabel("attention")
  for key, label in (("pseudo_labels", "LinPro\npseudo label"),
                     ("delta_labels", "Δ pseudo\nlabel")):
    if key in ax_of:
      _draw_per_class(ax_of[key], signals[key], ids, colours, edges)
      ax_of[key].set_ylabel(label)
  if "delta_labels" in ax_of:
    ax_of["delta_labels"].axhline(0.0, color="grey", linewidth=0.8, linestyle="--")
  if "proposals" in ax_of:
    ax, prop = ax_of["proposals"], inst["proposals"]
    seg = prop["segment"] * seconds_per_snippet
    ax.hlines(prop["score"], seg[:, 0], seg[:, 1], colors=[colours[c] for c in prop["label"]],
              linewidth=2.0, gid="proposals")
    ax.set_ylabel("proposal\nscore")
  if show_instances:
    _draw_instances(ax_of["instances"], inst["detections"], inst["ground_truth"], rows, colours,
                    names, seconds_per_snippet)
  for ax in axes:
    ax.grid(axis="x", alpha=0.3)
  axes[-1].set_xlim(0.0, num_snippets * seconds_per_snippet)
  axes[-1].set_xlabel("time (s)")
  if title:
    fig.suptitle(title)
  return fig


# ----------------------------------------------------------------------------- mAP vs tIoU


def _metric_curves(metrics: Mapping) -> dict[str, dict]:
  """``{prefix: {tIoU: mAP}}`` from the scalar ``"<prefix>/mAP@<tIoU>"`` entries of a dict."""
  curves: dict[str, dict] = {}
  for key, value in metrics.items():
    match = isinstance(key, str) and _MAP_KEY.match(key)
    if match and np.ndim(value) == 0:
      curves.setdefault(match.group(1) or "mAP", {})[float(match.group(2))] = value
  return curves


def _map_curves(results) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """Named ``(tIoU [n], mAP [n])`` curves, sorted by tIoU, from either input form."""
  if not isinstance(results, Mapping) or not results:
    raise ValueError(f"results: expected a non-empty dict, found {results!r:.200}")
  named = _metric_curves(results)
  if not named:
    for run, value in results.items():
      if not isinstance(value, Mapping):
        raise ValueError(f"results[{run!r}]: expected a dict {{tIoU: mAP}} or a metrics dict, "
                         f"found {type(value).__name__}")
      found = _metric_curves(value)
      named.update({f"{run} ({p})" if len(found) > 1 else str(run): pts
                    for p, pts in found.items()} if found else {str(run): value})
  curves = {}
  for name, points in named.items():
    try:
      pairs = sorted((float(t), float(m)) for t, m in points.items())
    except (TypeError, ValueError) as e:
      raise ValueError(f"results[{name!r}]: expected numeric tIoU -> mAP entries ({e})") from None
    arr = np.array(pairs, np.float64).reshape(-1, 2)
    if not arr.size or not np.all(np.isfinite(arr)) or not np.all((arr[:, 0] > 0)
                                                                  & (arr[:, 0] <= 1)):
      raise ValueError(f"results[{name!r}]: expected finite mAP values at tIoU in (0, 1], found "
                       f"{pairs}")
    curves[name] = (arr[:, 0], arr[:, 1])
  return curves


def plot_map_vs_tiou(results: Mapping, *, title: str = "") -> Figure:
  """mAP (%) against the tIoU threshold, one curve per run and protocol.

  Args:
    results: either ``{run_name: {tIoU: mAP}}``, or a metrics dict of ``evaluation.detection_map``
      (one curve per ``"<protocol>/mAP@<tIoU>"`` prefix; averages such as ``"mAP@0.1:0.5"`` and
      array entries are skipped), or ``{run_name: metrics dict}``.
    title: axes title.

  Returns:
    A ``Figure`` with one line per curve, labelled with its run (and protocol).

  Raises:
    ValueError: empty input, a run that is neither form, or non-numeric / non-finite values or
      tIoU outside (0, 1].
  """
  curves = _map_curves(results)
  fig = _new_figure(6.0, 4.0)
  ax = fig.subplots()
  for name, (tiou, value) in curves.items():
    ax.plot(tiou, value, marker="o", label=name)
  ax.set_xlabel("tIoU threshold")
  ax.set_ylabel("mAP (%)")
  ax.set_ylim(bottom=0.0)
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8)
  if title:
    ax.set_title(title)
  return fig


# ----------------------------------------------------------------------------- precision-recall


def plot_precision_recall(detections, ground_truth, *, class_id: int, tiou, num_classes: int,
                          protocol: str = "wtalc", fps: float = segments_lib.FPS,
                          frames_per_snippet: float = segments_lib.FRAMES_PER_SNIPPET,
                          class_name: str | None = None) -> Figure:
  """Precision-recall curve(s) of one class at one or several tIoU thresholds.

  Each threshold gets its raw precision (thin) and the interpolated precision envelope that the
  all-points AP integrates (thick, AP in the legend). Arguments and errors as
  ``evaluation.precision_recall``; ``class_name`` labels the title (default ``"class <id>"``).
  """
  precision, recall, ap, thresholds = evaluation.precision_recall(
      detections, ground_truth, class_id=class_id, tiou=tiou, num_classes=num_classes,
      protocol=protocol, fps=fps, frames_per_snippet=frames_per_snippet)
  fig = _new_figure(6.0, 4.5)
  ax = fig.subplots()
  colours = _class_colours(range(len(thresholds)))
  for i, t in enumerate(thresholds):
    # the AP's precision envelope; [0] stands for "no prediction" (AP 0)
    envelope = np.maximum.accumulate(np.r_[precision[i], 0.0][::-1])[::-1]
    ax.plot(recall[i], precision[i], color=colours[i], linewidth=0.8, alpha=0.5)
    ax.step(np.r_[0.0, recall[i]], envelope, where="post", color=colours[i], linewidth=1.8,
            label=f"tIoU {t:g}: AP {100 * ap[i]:.1f}%")
  ax.set_xlim(0.0, 1.0)
  ax.set_ylim(0.0, 1.02)
  ax.set_xlabel("recall")
  ax.set_ylabel("precision")
  ax.grid(alpha=0.3)
  ax.legend(fontsize=8, loc="upper right")
  ax.set_title(f"{class_name or f'class {class_id}'} ({protocol} protocol, "
               f"{precision.shape[1]} predictions)")
  return fig


# ----------------------------------------------------------------------------- output


def save_figure(fig: Figure, path: str | os.PathLike, *, dpi: int = DPI) -> None:
  """Writes ``fig`` as PNG to ``path`` (creating its folder) and closes it.

  Closing releases the figure from pyplot when pyplot created it; figures from this module are
  not registered there and are simply left to the garbage collector.
  """
  folder = os.path.dirname(os.fspath(path))
  if folder:
    os.makedirs(folder, exist_ok=True)
  fig.savefig(path, dpi=dpi, format="png")
  if "matplotlib.pyplot" in sys.modules:
    sys.modules["matplotlib.pyplot"].close(fig)
