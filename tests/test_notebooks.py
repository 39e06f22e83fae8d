"""The notebooks of notebooks/ run headless (nbclient, CPU) without a cell error and print what
their inputs imply.

Each notebook runs in a fresh ``python3`` kernel, which jupyter_client starts with this
interpreter (the venv's); a cell appended in memory checks that and dumps a few kernel variables
as JSON. ``inspect_run.ipynb`` reads the session's shared tiny run (conftest ``run``) through
``GAUFUSE_WORKDIR``.
"""

import json
import os
import pathlib
import re
import sys

import nbclient
import nbformat
import numpy as np

import gaufuse_jax as gj

NOTEBOOKS = pathlib.Path(__file__).resolve().parents[1] / "notebooks"
CELL_TIMEOUT_S = 300  # generous: the first jitted calls compile on a loaded 2-core machine
DUMP = "DUMP="


def _execute(name: str, dump: str) -> tuple[str, dict, int]:
  """Runs ``notebooks/<name>`` with ``dump`` (an expression of kernel variables) appended.

  Returns:
    The notebook's printed text (stdout), the dumped variables (the kernel's interpreter
    checked and removed) and the number of PNG images shown.
  """
  nb = nbformat.read(NOTEBOOKS / name, as_version=4)
  assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), (
      f"{name} is stored with outputs: clear them")
  nb.cells.append(nbformat.v4.new_code_cell(
      f"import json as _json, sys as _sys\n"
      f"print({DUMP!r} + _json.dumps(dict(executable=_sys.executable, prefix=_sys.prefix, "
      f"**{dump})))"))
  client = nbclient.NotebookClient(nb, timeout=CELL_TIMEOUT_S, kernel_name="python3",
                                   resources={"metadata": {"path": str(NOTEBOOKS)}})
  client.execute()  # raises CellExecutionError, naming the cell, on the first error
  outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
  assert not [o for o in outputs if o.output_type == "error"]
  text = "".join(o.text for o in outputs if o.output_type == "stream" and o.name == "stdout")
  text, _, dumped = text.rpartition(DUMP)
  dumped = json.loads(dumped)
  assert dumped.pop("executable") == sys.executable
  assert dumped.pop("prefix") == sys.prefix  # the venv, whose gaufuse_jax is this checkout
  images = sum("image/png" in o.get("data", {}) for o in outputs)
  return text, dumped, images


def _floats(pattern: str, text: str) -> list[float]:
  match = re.search(pattern, text)
  assert match, f"{pattern!r} not printed:\n{text}"
  return [float(x) for x in re.findall(r"-?\d+\.?\d*", match.group(1))]


def test_quickstart():
  text, kernel, images = _execute("quickstart.ipynb", dump=(
      "dict(detections={k: v.tolist() for k, v in detections.items()}, "
      "ground_truth={k: v.tolist() for k, v in ground_truth.items()})"))
  assert images == 3  # plot_video, mAP vs tIoU, precision-recall, each shown once
  # NMS keeps a proposal (whole snippets); fusion averages the cluster's boundaries, close to
  # the true action [8, 20) stored as the authors do, one snippet past the run: [8, 21).
  # Seconds are snippets * 16 / 25.
  nms = _floats(r"NMS +1 instance\(s\): snippets (.*) = seconds", text)
  fused = _floats(r"fusion +1 instance\(s\): snippets (.*) = seconds", text)
  fused_seconds = _floats(r"fusion .* = seconds (\[\[.*?\]\])", text)
  assert nms == [8.0, 21.0]
  np.testing.assert_allclose(fused, [8.0, 21.0], atol=0.5)
  np.testing.assert_allclose(fused_seconds, np.array(fused) * 16 / 25, atol=0.006)
  # LinPro labels the snippets of the fused instance [int(s), int(e)): 8..20, and nothing past the
  # end of a shorter video.
  assert _floats(r"with a 'jump' label > 0.01: (.*)", text) == list(range(8, 21))
  assert _floats(r"past the end of video 1: (.*)", text) == [0.0]
  # The printed mAP is that of the notebook's detections; the false alarm costs some of it.
  metrics = gj.detection_map({k: np.array(v) for k, v in kernel["detections"].items()},
                             {k: np.array(v) for k, v in kernel["ground_truth"].items()},
                             num_classes=2, protocol="wtalc")
  assert metrics["wtalc/num_predictions"] == 5 and 50.0 < metrics["wtalc/mAP@0.5"] < 100.0
  printed = _floats(r"\| mAP \(%\) \|(.*)", text)
  assert printed[4] == round(metrics["wtalc/mAP@0.5"], 2)


def test_inspect_run(run, monkeypatch):
  monkeypatch.setenv("GAUFUSE_WORKDIR", str(run.workdir))
  before = sorted(os.listdir(run.workdir))
  text, _, images = _execute("inspect_run.ipynb", dump="{}")
  assert sorted(os.listdir(run.workdir)) == before  # plots go to a temporary folder
  log = run.log()
  assert f"{sum('train/loss' in r for r in log)} training epochs" in text
  results = json.loads((run.workdir / "results" / "test.json").read_text())["results"]
  assert f"{sum(map(len, results.values()))} detections in {len(run.test_ds)} videos" in text
  # The best checkpoint is the evaluated epoch with the best metric; evaluated again, it gives
  # the logged value.
  key = run.config.best_metric
  evaluated = {r["step"]: r[f"test/{key}"] for r in log if f"test/{key}" in r}
  best = max(evaluated, key=evaluated.get)
  logged = f"{evaluated[best]:.2f}"
  assert f"best checkpoint: epoch {best}; {key} re-evaluated {logged}, logged {logged}" in text
  first = next(n for n, s in zip(run.test_ds.video_names, run.test_ds.segments) if len(s))
  assert f"{first}.png\nmap_vs_tiou_test.png\n" in text
  assert images == 3  # training curves, the video, mAP vs tIoU


def test_plug_in():
  """A backbone defined in the notebook, registered and trained by ``train_and_evaluate`` with
  GauFuse pseudo labels (three generations), then its plots of a training video."""
  text, kernel, images = _execute("plug_in.ipynb", dump=(
      "dict(generations=generations, metrics=metrics, plots=[p.name for p in plots])"))
  assert kernel["generations"] == 3
  assert len(re.findall(r"generation at epoch \d+: [1-9]\d* fused instances", text)) == 3
  pseudo = _floats(r"epoch 12: video_ce .* pseudo (.*)", text)
  assert pseudo[0] != 0.0  # the labels are in the loss
  assert np.isfinite(kernel["metrics"]["wtalc/mAP@0.1:0.7"])
  assert images == 1 and len(kernel["plots"]) == 1
