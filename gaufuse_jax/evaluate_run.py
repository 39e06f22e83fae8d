"""Using a trained run: evaluate a checkpoint, or localize actions in new feature files."""

from __future__ import annotations

import os
import pathlib

from absl import logging
import jax
import numpy as np

from gaufuse_jax._src import checkpointing
from gaufuse_jax._src import config_validation
from gaufuse_jax._src import devices
from gaufuse_jax._src import evaluation_loop
from gaufuse_jax._src import programs
from gaufuse_jax._src import pseudo_labels as pl_lib
from gaufuse_jax._src import results
from gaufuse_jax._src import input_pipeline
from gaufuse_jax import viz
from gaufuse_jax._src.data.errors import DataError
from gaufuse_jax._src.data.video_dataset import VideoDataset


def restore_checkpoint(config, workdir, checkpoint: str = "best"):
  """The saved train state of ``checkpoint`` (``"best"``, ``"latest"`` or an epoch number) as
  nested dicts of arrays, and its step.

  Raises:
    FileNotFoundError: when ``workdir/checkpoints`` holds no checkpoint.
    ValueError: for a malformed ``checkpoint``.
    checkpointing.CheckpointError: when it cannot be restored.
  """
  directory = pathlib.Path(workdir) / "checkpoints"
  if not directory.is_dir():  # read only: never create the folder of a mistyped --workdir
    raise FileNotFoundError(f"No checkpoint in {directory}: train first (launch.train), or "
                            f"check --workdir.")
  ckpt = checkpointing.Checkpointer(directory, best_metric=config.best_metric)
  if checkpoint == "best":
    step = ckpt.best_step()
  elif checkpoint == "latest":
    step = None
  elif checkpoint.isdigit():
    step = int(checkpoint)
    if step not in ckpt.steps():
      raise ValueError(f"--checkpoint={checkpoint}: no such step in {ckpt.directory}; "
                       f"steps: {ckpt.steps()}")
  else:
    raise ValueError(f"--checkpoint must be 'best', 'latest' or an epoch number, got "
                     f"{checkpoint!r}")
  raw, step = ckpt.restore(None, step)
  ckpt.close()
  if raw is None:
    raise FileNotFoundError(f"No checkpoint in {ckpt.directory}: train first (launch.train).")
  return raw, step


def evaluate_checkpoint(config, workdir, *, checkpoint="best", split="test", num_plots=0) -> dict:
  """Evaluates a checkpoint on ``split``; writes ``workdir/eval_<step>/results`` (and plots).

  Returns:
    The metrics dict (both protocols and cmAP).

  Raises:
    config_validation.ConfigError: bad config fields, before any work.
  """
  config_validation.validate_config(config)
  raw, step = restore_checkpoint(config, workdir, checkpoint)  # before the data: fail fast
  train_ds, test_ds = input_pipeline.load_datasets(config.data)
  dataset = test_ds if split == "test" else train_ds
  model = programs.build_model(config, train_ds)
  params = devices.replicate(raw["params"], config)
  bucket_sizes = input_pipeline.bucket_sizes(config, train_ds, test_ds)
  metrics, detections = evaluation_loop.evaluate(config, params, dataset,
                                           p_eval=programs.make_eval_step(config, model),
                                           bucket_sizes=bucket_sizes)
  out_dir = pathlib.Path(workdir) / f"eval_{step}"
  results.write_outputs(out_dir, dataset, metrics, detections, epoch=step)
  if num_plots:
    generations = np.asarray(raw["generations"]) if split == "train" else None
    plot_videos(config, model, raw["params"], dataset, detections, metrics,
                out_dir / "plots", num_plots=num_plots, generations=generations)
  return metrics


def plot_videos(config, model, params, dataset, detections, metrics, out_dir, *, num_plots,
                generations=None):
  """PNG plots of the first ``num_plots`` videos with ground truth, and mAP vs tIoU."""
  loc = input_pipeline.localization_config(config.eval.localization)
  @jax.jit
  def apply(features, valid_length):
    outputs = model.apply({"params": params}, features, valid_length, train=False)
    cas, video_scores = model.scores(outputs, frame_coef=config.eval.frame_coef,
                                     video_coef=config.eval.video_coef)
    return cas, video_scores, model.attention(outputs)  # attention: None if the model has none

  gt = dataset.ground_truth()
  shown = [v for v in range(len(dataset)) if len(dataset.segments[v])][:num_plots]
  for v in shown:
    feats = dataset.features[v]
    cas, video_scores, attention = jax.device_get(
        apply(feats[None], np.array([len(feats)], np.int32)))
    classes = [int(c) for c in np.flatnonzero(video_scores[0, :-1] >= loc.class_threshold)]
    classes = classes or [int(np.argmax(video_scores[0, :-1]))]
    pick = lambda d: {k: d[k][d["video"] == v] for k in d}
    pseudo = delta = None
    if generations is not None:
      pseudo = generations[0, v, :len(feats)]
      delta = pl_lib.delta_pseudo_labels(generations[0, v], generations[1, v],
                                         config.schedule.delta_scales[0])[:len(feats)]
    fig = viz.plot_video(
        cas=cas[0], attention=None if attention is None else attention[0], classes=classes,
        class_names=list(dataset.class_names) + ["background"],
        seconds_per_snippet=dataset.frames_per_snippet / dataset.fps,
        pseudo_labels=pseudo, delta_labels=delta, detections=pick(detections),
        ground_truth=pick(gt), title=dataset.video_names[v])
    viz.save_figure(fig, pathlib.Path(out_dir) / f"{dataset.video_names[v]}.png")
  name = f"map_vs_tiou_{dataset.split}.png"
  viz.save_figure(viz.plot_map_vs_tiou(metrics), pathlib.Path(out_dir) / name)
  logging.info("Wrote %d video plots and %s to %s", len(shown), name, out_dir)


def _load_feature_file(path: pathlib.Path, feature_dim: int) -> np.ndarray:
  expected = f"a .npy file holding one video's [T >= 2, D = {feature_dim}] float features"
  with open(path, "rb") as f:
    magic = f.read(6)
  if magic[:2] == b"PK":
    raise DataError(f"{path}: expected {expected}, found an .npz (zip) archive: save each "
                    "video's array with np.save")
  if magic != b"\x93NUMPY":
    raise DataError(f"{path}: expected {expected}, found a file without the .npy header (text, "
                    "or another format)")
  try:
    x = np.load(path, allow_pickle=False)
  except ValueError as e:
    if "Object arrays" in str(e):
      raise DataError(f"{path}: expected {expected}, found an object (pickled) array, e.g. a "
                      "W-TALC file of all videos: save one <video>.npy per video and pass their "
                      "folder") from None
    raise DataError(f"{path}: expected {expected}, found a file numpy cannot read "
                    f"({e})") from None
  except (OSError, EOFError) as e:
    raise DataError(f"{path}: expected {expected}, found an unreadable or truncated file "
                    f"({type(e).__name__}: {e})") from None
  if x.ndim != 2 or x.shape[1] != feature_dim or x.shape[0] < 2 or x.dtype.kind not in "fiu":
    raise DataError(f"{path}: expected {expected}, found shape {x.shape} dtype {x.dtype}")
  if not np.all(np.isfinite(x)):
    raise DataError(f"{path}: expected finite features, found NaN/inf in "
                    f"{int(np.sum(~np.isfinite(x).all(1)))} snippets")
  return x.astype(np.float32)


def load_feature_files(path, *, feature_dim: int) -> tuple[list[str], list[np.ndarray]]:
  """Per-video features from a folder of ``<video>.npy`` files or one ``.npy`` file.

  Raises:
    FileNotFoundError: missing path or a folder without ``.npy`` files.
    DataError: a file that is not one video's ``[T >= 2, feature_dim]`` finite float array
      (object arrays such as the W-TALC all-videos file, ``.npz`` archives, text or truncated
      files included); the message names the file.
  """
  path = pathlib.Path(path)
  if path.is_dir():
    files = sorted(path.glob("*.npy"))
    if not files:
      raise FileNotFoundError(f"--features={path}: expected a folder of <video>.npy files, "
                              "found none")
  elif path.is_file():
    files = [path]
  else:
    raise FileNotFoundError(f"--features={path}: no such file or folder")
  return [f.stem for f in files], [_load_feature_file(f, feature_dim) for f in files]


def _check_output(output) -> pathlib.Path:
  """The results path of ``localize_features``, checked before any work."""
  output = pathlib.Path(output)
  if output.is_dir():
    raise IsADirectoryError(f"--output={output}: expected a file path for the results JSON, "
                            "found a folder")
  parent = output.parent
  while not parent.exists():
    parent = parent.parent
  if not parent.is_dir() or not os.access(parent, os.W_OK):
    raise PermissionError(f"--output={output}: cannot write in {parent}")
  return output


def localize_features(config, workdir, features_path, output, *, checkpoint="best") -> dict:
  """Detections in seconds for unannotated videos, written as ActivityNet-format JSON.

  Returns:
    The results dict that was written to ``output``.

  Raises:
    config_validation.ConfigError: bad config fields (``config.data`` is not used), before any
      work.
  """
  config_validation.validate_config(config, data=False)
  output = _check_output(output)
  info = results.read_run_info(workdir)
  names, features = load_feature_files(features_path, feature_dim=info["feature_dim"])
  num_classes = len(info["class_names"])
  dataset = VideoDataset(
      name="unlabelled", split="unlabelled", class_names=tuple(info["class_names"]),
      video_names=tuple(names), features=features,
      labels=np.zeros((len(names), num_classes), np.float32),
      segments=[np.zeros((0, 2))] * len(names), segment_labels=[np.zeros(0, np.int32)] * len(names),
      durations=np.array([len(f) * info["frames_per_snippet"] / info["fps"] for f in features]),
      ambiguous={}, fps=info["fps"], frames_per_snippet=info["frames_per_snippet"],
      feature_source=str(features_path))
  raw, step = restore_checkpoint(config, workdir, checkpoint)
  detections, _ = evaluation_loop.detect(
      config, devices.replicate(raw["params"], config), dataset,
      p_eval=programs.make_eval_step(config, programs.build_model(config, dataset)),
      bucket_sizes=input_pipeline.bucket_sizes(config, dataset))
  written = results.write_results_json(output, detections, dataset)
  logging.info("Checkpoint step %d: %d detections in %d videos -> %s", step,
               len(detections["score"]), len(names), output)
  return written
