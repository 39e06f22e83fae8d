r"""Checks a W-TALC-format dataset and prints a summary, or the errors (exit code 1).

  python -m launch.check_data --data_dir=/path/to/Thumos14reduced --dataset=Thumos14reduced
  python -m launch.check_data --data_dir=/data/anet --dataset=ActivityNet1.2 \
      --annotation_dir=../shared/data/activitynet1.2
  python -m launch.check_data --data_dir=../shared/data/thumos14   # annotations only

Without a feature file or folder (or with --annotations_only) it checks the annotations alone.
"""

import sys
import warnings

from absl import app
from absl import flags
import numpy as np

import launch

from gaufuse_jax._src.data.errors import DataError
from gaufuse_jax._src.data.errors import MissingFileError
from gaufuse_jax._src.data.video_dataset import VideoDataset
from gaufuse_jax._src.data import wtalc_annotations
from gaufuse_jax._src.data import wtalc

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", None, "Folder with <dataset>-I3D-JOINTFeatures.npy (or a "
                    "per-video folder) and the annotation files.")
flags.DEFINE_string("dataset", "Thumos14reduced", "Thumos14reduced, ActivityNet1.2, ...")
flags.DEFINE_string("annotation_dir", None, "Annotation folder, if not under --data_dir.")
flags.DEFINE_float("fps", 25.0, "Frames per second of the feature extraction.")
flags.DEFINE_float("frames_per_snippet", 16.0, "Frames per feature snippet.")
flags.DEFINE_integer("feature_dim", None, "Expected feature dim (default: the first video's).")
flags.DEFINE_list("exclude_videos", [], "Video names to exclude.")
flags.DEFINE_integer("min_snippets", 2, "Videos with fewer snippets are skipped.")
flags.DEFINE_float("max_length_ratio", 2.0, "Snippets per video must be within this factor of "
                   "duration * fps / frames_per_snippet (0: no check).")
flags.DEFINE_bool("annotations_only", False, "Check the annotation files only (automatic when "
                  "there are no features).")
flags.mark_flag_as_required("data_dir")


def summarize(ds: VideoDataset, *, features: bool = True) -> str:
  """Multi-line summary of one split: videos, classes, segments, snippet lengths (from the
  durations without ``features``), feature values, report."""
  lengths = ds.lengths
  seg_len = np.concatenate([np.zeros(0)] + [s[:, 1] - s[:, 0] for s in ds.segments])
  labels_per_video = np.bincount(ds.labels.sum(1).astype(np.int64))
  feats = np.concatenate([f[:: max(1, len(f) // 16)] for f in ds.features])  # a sample of rows
  lines = [
      f"[{ds.split}] {ds.name}: {len(ds)} videos, {ds.num_classes} classes"
      + (f", feature dim {ds.feature_dim}" if features else ""),
      ("  snippets per video" if features else "  snippets per video (from the durations)")
      + f": min {lengths.min()}, median {np.median(lengths):g}, "
      f"mean {lengths.mean():.1f}, max {lengths.max()}, total {lengths.sum()}",
      f"  segments: {len(seg_len)} (length s: min {seg_len.min(initial=np.inf):.2f}, "
      f"median {np.median(seg_len) if len(seg_len) else float('nan'):.2f}, "
      f"max {seg_len.max(initial=0):.2f}); ambiguous intervals: "
      f"{sum(len(a) for a in ds.ambiguous.values())} in {len(ds.ambiguous)} videos",
      "  videos by number of video-level labels: "
      + ", ".join(f"{k}: {n}" for k, n in enumerate(labels_per_video) if n),
      (f"  feature values (sampled rows): mean {feats.mean():.3f}, std {feats.std():.3f}, "
       f"zero fraction {np.mean(feats == 0):.3f}, min {feats.min():.3f}, max {feats.max():.3f}"
       if features else "  features: not checked (annotations only)"),
      f"  excluded: {list(ds.excluded_videos)}",
      "  report: " + ", ".join(f"{k}={v}" for k, v in ds.report.items()
                               if k != "skipped_short_names"),
  ]
  if ds.report["skipped_short_names"]:
    lines.append(f"  skipped short videos: {list(ds.report['skipped_short_names'])}")
  return "\n".join(lines)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  try:
    if FLAGS.annotations_only:
      raise MissingFileError("--annotations_only")
    annotations, features, source = wtalc.open_wtalc(
        FLAGS.data_dir, dataset=FLAGS.dataset, annotation_dir=FLAGS.annotation_dir)
  except MissingFileError as e:  # no features (or no annotations: then it fails again below)
    try:
      annotations = wtalc_annotations.load_annotations(
          FLAGS.annotation_dir or FLAGS.data_dir, dataset=FLAGS.dataset)
    except DataError as e2:
      print(f"ERROR: {e2}")
      sys.exit(1)
    print(f"Checking the annotations only ({e})")
    lengths = np.maximum(np.round(annotations.durations * FLAGS.fps / FLAGS.frames_per_snippet),
                         FLAGS.min_snippets).astype(int)
    features = lambda i: np.zeros((lengths[i], 1), np.float32)  # noqa: E731 placeholder rows
    source = "no features (annotations only)"
  except DataError as e:
    print(f"ERROR: {e}")
    sys.exit(1)
  print(f"{FLAGS.dataset}: {annotations.num_videos} videos in {annotations.source}, "
        f"{annotations.num_segments} segments before clipping; features: {source}")
  errors = 0
  for split in wtalc_annotations.SPLITS:
    try:
      with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # skipped videos are listed in the summary
        ds = wtalc.build_dataset(
            annotations, features, split=split, fps=FLAGS.fps,
            frames_per_snippet=FLAGS.frames_per_snippet, feature_dim=FLAGS.feature_dim,
            exclude_videos=FLAGS.exclude_videos, min_snippets=FLAGS.min_snippets,
            max_length_ratio=FLAGS.max_length_ratio, feature_source=source)
        ds.check_usable()
    except ValueError as e:  # DataError included
      errors += 1
      print(f"[{split}] ERROR: {e}")
      continue
    print(summarize(ds, features=not source.startswith("no features")))
  if errors:
    sys.exit(1)


if __name__ == "__main__":
  launch.run(main)
