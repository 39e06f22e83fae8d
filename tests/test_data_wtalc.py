"""W-TALC loaders: real annotation files, and one test per validation error."""

import pathlib
import re
import warnings

import numpy as np
import pytest

from gaufuse_jax._src.data import synthetic
from gaufuse_jax._src.data import errors
from gaufuse_jax._src.data import wtalc_annotations as ann
from gaufuse_jax._src.data import wtalc

DIM = 4


# ----------------------------------------------------------------------------- real annotations

@pytest.fixture(scope="module")
def thumos(shared_data):
  return ann.load_annotations(shared_data / "thumos14", dataset="Thumos14reduced")


def _zero_features(annotations, dim=DIM):
  lengths = synthetic.num_snippets(annotations.durations)
  return lambda i: np.zeros((lengths[i], dim), np.float32)


def test_thumos14_annotation_counts(thumos):
  assert thumos.num_videos == 412 and thumos.num_classes == 20
  assert thumos.class_names[0] == "BaseballPitch" and thumos.class_names[-1] == "VolleyballSpiking"
  assert len(thumos.split_indices("train")) == 200 and len(thumos.split_indices("test")) == 212
  np.testing.assert_array_equal(thumos.split_indices("train"), np.arange(200))
  assert thumos.num_segments == 6365
  assert sum(len(thumos.segments[i]) for i in thumos.split_indices("train")) == 3007
  # labels_all: 360 videos with one label, 50 with two, 1 with three, video_test_0000270 none.
  counts = np.bincount(thumos.labels.sum(1).astype(int))
  np.testing.assert_array_equal(counts, [1, 360, 50, 1])
  assert thumos.labels[thumos.video_names.index("video_test_0000270")].sum() == 0
  assert sum(len(a) for a in thumos.ambiguous.values()) == 99 and len(thumos.ambiguous) == 37
  np.testing.assert_allclose(thumos.ambiguous["video_test_0000278"][0], [0.0, 1.4])
  assert thumos.durations.shape == (412,) and thumos.durations.min() == pytest.approx(8.9, abs=0.1)


def test_annotation_folder_given_directly_or_by_parent(shared_data, thumos):
  direct = ann.load_annotations(shared_data / "thumos14" / "Thumos14reduced-Annotations",
                                  dataset="Thumos14reduced")
  assert direct.video_names == thumos.video_names
  for a, b in zip(direct.segments, thumos.segments):
    np.testing.assert_array_equal(a, b)


def test_activitynet_annotation_counts(shared_data):
  anet = ann.load_annotations(shared_data / "activitynet1.2", dataset="ActivityNet1.2")
  assert anet.num_videos == 7202 and anet.num_classes == 100
  assert len(anet.split_indices("train")) == 4819 and len(anet.split_indices("test")) == 2383
  assert sum(len(anet.segments[i]) for i in anet.split_indices("train")) == 7151
  assert sum(len(anet.segments[i]) for i in anet.split_indices("test")) == 3582
  assert anet.ambiguous == {}
  anet13 = ann.load_annotations(shared_data / "activitynet1.3", dataset="ActivityNet1.3")
  assert anet13.num_videos == 13912 and anet13.num_classes == 200


def test_thumos14_splits_clip_and_drop_segments_past_the_end(thumos):
  feats = _zero_features(thumos)
  train = wtalc.build_dataset(thumos, feats, split="train")
  test = wtalc.build_dataset(thumos, feats, split="test")
  assert (len(train), len(test)) == (200, 212)
  # All 30 THUMOS14 segments past duration.npy start after the end: 4 train, 26 test.
  assert (train.report["dropped_segments"], test.report["dropped_segments"]) == (4, 26)
  assert train.report["clipped_segments"] == test.report["clipped_segments"] == 0
  assert (train.report["segments"], test.report["segments"]) == (3003, 3332)
  assert test.report["videos_without_labels"] == 1
  gt = test.ground_truth()
  assert gt["segment"].shape == (3332, 2) and gt["video"].shape == gt["label"].shape == (3332,)
  assert np.all(gt["segment"][:, 1] <= test.durations[gt["video"]])
  assert np.all(np.diff(gt["video"]) >= 0)
  # One ambiguous video of the file is not in the reduced list: 96 intervals in 36 videos.
  amb = test.ambiguous_arrays()
  assert amb["segment"].shape == (96, 2) and len(np.unique(amb["video"])) == 36
  assert train.ambiguous == {} and train.ambiguous_arrays()["segment"].shape == (0, 2)


def test_exclude_videos_is_echoed(thumos):
  drop = ("video_test_0000270", "video_test_0001496")
  test = wtalc.build_dataset(thumos, _zero_features(thumos), split="test", exclude_videos=drop)
  train = wtalc.build_dataset(thumos, _zero_features(thumos), split="train", exclude_videos=drop)
  assert len(test) == 210 and test.excluded_videos == drop and test.report["excluded_videos"] == 2
  assert not set(drop) & set(test.video_names)
  assert len(train) == 200 and train.excluded_videos == ()


# ------------------------------------------------------------------ a tiny written W-TALC folder

def _tiny_annotations(**overrides):
  fields = dict(
      dataset="Tiny", class_names=("Jump", "Run", "Swim"),
      video_names=("v0", "v1", "v2", "v3"),
      subsets=("training", "training", "validation", "validation"),
      durations=np.array([10.0, 6.4, 8.0, 12.0]),
      segments=[np.array([[1.0, 2.5], [4.0, 6.0]]), np.array([[0.5, 3.0]]),
                np.array([[2.0, 4.0]]), np.zeros((0, 2))],
      segment_labels=[np.array([0, 0], np.int32), np.array([2], np.int32),
                      np.array([1], np.int32), np.zeros(0, np.int32)],
      labels=np.array([[1, 0, 0], [0, 0, 1], [0, 1, 0], [1, 1, 0]], np.float32),
      ambiguous={"v2": np.array([[0.0, 1.0]])}, source="tiny")
  fields.update(overrides)
  return ann.Annotations(**fields)


def _tiny_features(annotations, dim=DIM, seed=0):
  rng = np.random.default_rng(seed)
  return [rng.random((int(t), dim), dtype=np.float32)
          for t in synthetic.num_snippets(annotations.durations)]


@pytest.fixture
def tiny(tmp_path):
  annotations = _tiny_annotations()
  features = _tiny_features(annotations)
  synthetic.write_wtalc(tmp_path, "Tiny", annotations, features)
  return tmp_path, annotations, features


def _ann(root):
  return pathlib.Path(root) / "Tiny-Annotations"


def _save_objects(path, values):
  array = np.empty(len(values), dtype=object)  # an object array even for equal-length lists
  for i, v in enumerate(values):
    array[i] = v
  np.save(path, array, allow_pickle=True)


def _resave(root, name, values):
  _save_objects(_ann(root) / f"{name}.npy", values)


def _write_features(root, features):
  _save_objects(pathlib.Path(root) / "Tiny-I3D-JOINTFeatures.npy", features)


def _load(root, split="train", **kw):
  return wtalc.load_wtalc(root, dataset="Tiny", split=split, **kw)


def test_tiny_folder_loads(tiny):
  root, annotations, features = tiny
  train, test = _load(root), _load(root, "test")
  assert train.video_names == ("v0", "v1") and test.video_names == ("v2", "v3")
  np.testing.assert_array_equal(train.features[1], features[1])
  np.testing.assert_array_equal(test.labels, annotations.labels[2:])
  np.testing.assert_array_equal(test.ambiguous["v2"], [[0.0, 1.0]])
  assert train.lengths.tolist() == [16, 10] and train.feature_dim == DIM and train.num_classes == 3
  gt = train.ground_truth()
  np.testing.assert_array_equal(gt["video"], [0, 0, 1])
  np.testing.assert_array_equal(gt["label"], [0, 0, 2])
  np.testing.assert_allclose(gt["segment"], [[1.0, 2.5], [4.0, 6.0], [0.5, 3.0]])


def test_bytes_and_str_names_both_read(tiny):
  root, _, _ = tiny
  _resave(root, "labels", [[b"Jump", b"Jump"], [b"Swim"], [b"Run"], []])
  _resave(root, "labels_all", [["Jump"], [b"Swim"], ["Run"], [b"Jump", "Run"]])
  np.save(_ann(root) / "videoname.npy", np.array(["v0", "v1", "v2", "v3"]))  # <U, not |S
  train = _load(root)
  assert train.video_names == ("v0", "v1")
  np.testing.assert_array_equal(train.segment_labels[0], [0, 0])
  np.testing.assert_array_equal(train.labels, [[1, 0, 0], [0, 0, 1]])


def test_per_video_feature_folder(tmp_path):
  annotations = _tiny_annotations()
  features = _tiny_features(annotations)
  synthetic.write_wtalc(tmp_path, "Tiny", annotations, features, per_video=True)
  assert not (tmp_path / "Tiny-I3D-JOINTFeatures.npy").exists()
  test = _load(tmp_path, "test")
  np.testing.assert_array_equal(test.features[0], features[2])
  (tmp_path / "Tiny-I3D-JOINTFeatures" / "v3.npy").unlink()
  with pytest.raises(errors.MissingFileError, match=r"missing per-video feature file .*v3\.npy"):
    _load(tmp_path, "test")


def test_segments_past_the_end_are_clipped_and_counted(tiny):
  root, _, _ = tiny
  # v0 lasts 10 s: [8, 12] is clipped to [8, 10]; [11, 13] starts after the end and is dropped.
  _resave(root, "segments", [[[1.0, 2.5], [8.0, 12.0], [11.0, 13.0]], [[0.5, 3.0]], [[2.0, 4.0]],
                             []])
  _resave(root, "labels", [["Jump", "Run", "Swim"], ["Swim"], ["Run"], []])
  train = _load(root)
  np.testing.assert_allclose(train.segments[0], [[1.0, 2.5], [8.0, 10.0]])
  np.testing.assert_array_equal(train.segment_labels[0], [0, 1])
  assert train.report["clipped_segments"] == 1 and train.report["dropped_segments"] == 1
  assert train.report["segments"] == 3


def test_short_videos_are_skipped_with_a_warning(tiny):
  root, annotations, features = tiny
  features[1] = features[1][:1]
  _write_features(root, features)
  with pytest.warns(UserWarning, match=r"skipped 1 video\(s\) shorter than min_snippets=2 "
                    r"snippets: \['v1'\]"):
    train = _load(root)
  assert train.video_names == ("v0",)
  assert train.report["skipped_short_videos"] == 1
  assert train.report["skipped_short_names"] == ("v1",)
  with warnings.catch_warnings():
    warnings.simplefilter("error")
    assert len(_load(root, min_snippets=1, max_length_ratio=0)) == 2


# ----------------------------------------------------------------- one test per error message

def test_error_missing_annotation_folder(tmp_path):
  with pytest.raises(errors.MissingFileError,
                     match=r"missing annotation file classlist\.npy for dataset 'Tiny': looked in "
                           r".* and .*Tiny-Annotations; the standard files come from the W-TALC"):
    _load(tmp_path)


def test_error_missing_annotation_file(tiny):
  root, _, _ = tiny
  (_ann(root) / "labels_all.npy").unlink()
  with pytest.raises(errors.MissingFileError,
                     match=r"missing annotation file .*labels_all\.npy; the standard files come "
                           r"from the W-TALC release"):
    _load(root)


def test_error_missing_feature_file(tiny):
  root, _, _ = tiny
  (root / "Tiny-I3D-JOINTFeatures.npy").unlink()
  with pytest.raises(errors.MissingFileError,
                     match=r"missing feature file .*Tiny-I3D-JOINTFeatures\.npy \(or per-video "
                           r"folder .*Tiny-I3D-JOINTFeatures/<video>\.npy\); the standard files"):
    _load(root)
  with pytest.raises(FileNotFoundError):  # MissingFileError is also a FileNotFoundError
    _load(root)


def test_error_unreadable_file(tiny):
  root, _, _ = tiny
  (_ann(root) / "subset.npy").write_bytes(b"not a numpy file")
  with pytest.raises(errors.DataError, match=r"subset\.npy: cannot be read as a \.npy file"):
    _load(root)


def test_error_annotation_counts_disagree(tiny):
  root, _, _ = tiny
  np.save(_ann(root) / "subset.npy", np.array([b"training", b"training", b"validation"]))
  with pytest.raises(errors.DataError,
                     match=r"annotation files in .* disagree on the number of videos: .*"
                           r"'videoname\.npy': 4, 'subset\.npy': 3"):
    _load(root)


def test_error_feature_count_disagrees(tiny):
  root, _, features = tiny
  _write_features(root, features[:3])
  with pytest.raises(errors.DataError,
                     match=r"Tiny-I3D-JOINTFeatures\.npy: expected 4 videos \(one per row of "
                           r"videoname\.npy, in annotation order\), found 3"):
    _load(root)


def test_error_wrong_feature_dim(tiny):
  root, _, features = tiny
  features[1] = np.zeros((10, DIM + 1), np.float32)
  _write_features(root, features)
  with pytest.raises(errors.DataError,
                     match=r"video v1: expected feature dim 4 \(that of the first video, v0\), "
                           r"found 5"):
    _load(root)
  with pytest.raises(errors.DataError, match=r"video v0: expected feature dim 8 \(feature_dim\), "
                                            r"found 4"):
    _load(root, feature_dim=8)


def test_error_feature_not_two_dimensional(tiny):
  root, _, features = tiny
  features[2] = np.zeros(13, np.float32)
  _write_features(root, features)
  with pytest.raises(errors.DataError, match=r"video v2: expected a \[T, D\] float array, found "
                                            r"shape \(13,\)"):
    _load(root, "test")


def test_error_nan_rows(tiny):
  root, _, features = tiny
  features[0][[3, 7], 1] = [np.nan, np.inf]
  _write_features(root, features)
  with pytest.raises(errors.DataError,
                     match=r"video v0: expected finite features, found NaN/inf in 2 of 16 snippet "
                           r"rows \(first: row 3\)"):
    _load(root)


def test_error_empty_classlist(tiny):
  root, _, _ = tiny
  np.save(_ann(root) / "classlist.npy", np.array([], dtype="S1"))
  with pytest.raises(errors.DataError,
                     match=r"classlist\.npy: expected at least one class name, found none"):
    _load(root)


def test_error_segment_label_not_in_classlist(tiny):
  root, _, _ = tiny
  _resave(root, "labels", [["Jump", "Jump"], ["Swim"], ["Dance"], []])
  with pytest.raises(errors.DataError, match=r"labels\.npy: video v2: label 'Dance' is not in "
                                            r"classlist\.npy \(expected one of 3 classes\)"):
    _load(root)


def test_error_video_label_not_in_classlist(tiny):
  root, _, _ = tiny
  _resave(root, "labels_all", [["Jump"], ["Swim"], ["Run"], ["Jump", "Fly"]])
  with pytest.raises(errors.DataError, match=r"labels_all\.npy: video v3: label 'Fly' is not in "
                                            r"classlist\.npy"):
    _load(root)


def test_error_labels_and_segments_lengths_differ(tiny):
  root, _, _ = tiny
  _resave(root, "labels", [["Jump"], ["Swim"], ["Run"], []])
  with pytest.raises(errors.DataError, match=r"labels\.npy: video v0: expected one label per "
                                            r"segment \(2 in segments\.npy\), found 1"):
    _load(root)


def test_error_malformed_segment(tiny):
  root, _, _ = tiny
  _resave(root, "segments", [[[1.0, 2.5], [6.0, 4.0]], [[0.5, 3.0]], [[2.0, 4.0]], []])
  with pytest.raises(errors.DataError, match=r"segments\.npy: video v0: segment 1 must satisfy "
                                            r"0 <= start <= end .*found \[6\.0, 4\.0\]"):
    _load(root)
  _resave(root, "segments", [[[1.0, 2.5, 3.0]], [[0.5, 3.0]], [[2.0, 4.0]], []])
  with pytest.raises(errors.DataError, match=r"segments\.npy: video v0: expected a list of "
                                            r"\[start, end\] pairs in seconds, found shape"):
    _load(root)


def test_error_bad_duration(tiny):
  root, _, _ = tiny
  np.save(_ann(root) / "duration.npy", np.array([[10.0], [0.0], [8.0], [12.0]]))
  with pytest.raises(errors.DataError, match=r"duration\.npy: video v1: expected a finite duration "
                                            r"> 0 seconds, found 0\.0"):
    _load(root)


def test_error_duplicate_names(tiny):
  root, _, _ = tiny
  np.save(_ann(root) / "videoname.npy", np.array([b"v0", b"v1", b"v1", b"v3"]))
  with pytest.raises(errors.DataError, match=r"videoname\.npy: expected unique video names"):
    _load(root)
  np.save(_ann(root) / "videoname.npy", np.array([b"v0", b"v1", b"v2", b"v3"]))
  np.save(_ann(root) / "classlist.npy", np.array([b"Jump", b"Run", b"Jump"]))
  with pytest.raises(errors.DataError, match=r"classlist\.npy: expected unique class names"):
    _load(root)


def test_error_malformed_ambiguous_line(tiny):
  root, _, _ = tiny
  (_ann(root) / "Ambiguous_test.txt").write_text("v2  0.0 1.0\n\nv3  5.0\n")
  with pytest.raises(errors.DataError,
                     match=r"Ambiguous_test\.txt: line 3: expected 'video start end' with "
                           r"start <= end \(seconds\), found 'v3  5\.0'"):
    _load(root)


def test_error_bad_split(tiny):
  root, _, _ = tiny
  with pytest.raises(ValueError, match=r"split must be one of \('train', 'test'\), got 'val'"):
    _load(root, "val")


def test_error_unknown_excluded_video(tiny):
  root, _, _ = tiny
  with pytest.raises(errors.DataError, match=re.escape("exclude_videos: expected names from "
                                                      "videoname.npy of ") + r".*\['v9'\]"):
    _load(root, exclude_videos=("v0", "v9"))


def test_error_empty_split(tiny):
  root, _, _ = tiny
  with pytest.raises(errors.DataError, match=r"expected videos with subset 'validation' for split "
                                            r"'test', found none left .*excluded 2"):
    _load(root, "test", exclude_videos=("v2", "v3"))


@pytest.mark.parametrize("factor", [0.2, 3.0])
def test_feature_length_far_from_the_duration_names_the_video(tiny, factor):
  """Features of another frame rate (5x fewer or 3x more snippets than duration * 25 / 16)."""
  root, _, features = tiny
  features[0] = np.resize(features[0], (int(len(features[0]) * factor), features[0].shape[1]))
  _write_features(root, features)
  with pytest.raises(errors.DataError,
                     match=rf"video v0: expected about 16 snippets \(duration 10 s from "
                           rf"duration\.npy x fps 25 / frames_per_snippet 16\), found "
                           rf"{len(features[0])}: features of another frame rate"):
    _load(root)
  assert len(_load(root, max_length_ratio=0)) == 2  # the check can be turned off


def test_unusable_splits_are_named(tiny):
  root, _, _ = tiny
  _resave(root, "labels_all", [[], [], ["Run"], []])
  with pytest.raises(errors.DataError, match=r"Tiny \(train\): expected videos with video-level "
                                             r"labels, found none of 2 labelled"):
    _load(root).check_usable()
  _resave(root, "segments", [[[1.0, 2.5]], [[0.5, 3.0]], [], []])
  _resave(root, "labels", [["Jump"], ["Swim"], [], []])
  with pytest.raises(errors.DataError, match=r"Tiny \(test\): expected ground-truth segments, "
                                             r"found none in 2 videos"):
    _load(root, "test").check_usable()
