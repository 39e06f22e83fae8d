"""Metrics as JSON lines (+ TensorBoard through tensorboardX when installed), process 0 only."""

from __future__ import annotations

import json
import math
import pathlib
import re

import jax


class MetricWriter:
  """Appends one JSON object per call to ``workdir/metrics.jsonl``.

  On processes other than 0 every call is a no-op. Non-finite values are written as null
  (JSON has no NaN), never as NaN.
  """

  def __init__(self, workdir):
    self._active = jax.process_index() == 0
    self._path = pathlib.Path(workdir) / "metrics.jsonl"
    self._tb = None
    if self._active:
      try:
        import tensorboardX  # pylint: disable=import-outside-toplevel
        self._tb = tensorboardX.SummaryWriter(str(pathlib.Path(workdir) / "tensorboard"))
      except ImportError:
        pass

  def write(self, step: int, scalars: dict) -> None:
    if not self._active:
      return
    clean = {k: (float(v) if math.isfinite(float(v)) else None) for k, v in scalars.items()}
    with self._path.open("a") as f:
      f.write(json.dumps({"step": int(step), **clean}) + "\n")
    if self._tb is not None:
      for k, v in clean.items():
        if v is not None:
          self._tb.add_scalar(re.sub(r"[^\w./-]", "_", k), v, int(step))
      self._tb.flush()

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()
