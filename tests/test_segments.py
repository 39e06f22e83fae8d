import numpy as np
import pytest

from gaufuse_jax._src import segments


def test_outer_width_hand_values():
  lengths = np.array([0, 1, 2, 13, 14, 16, 17, 100, 300, 8])
  left, right = map(np.asarray, segments.outer_width(lengths, "gaufuse", "reference"))
  # w = 0.0785 * len**0.9: 0.0785 at 1, 0.95 at 16, 1.005 at 17, 4.95 at 100, 13.1 at 300.
  np.testing.assert_array_equal(left, [0, 1, 1, 1, 1, 1, 2, 5, 14, 1])
  np.testing.assert_array_equal(right, [0, 0, 0, 0, 0, 0, 1, 4, 13, 0])
  exact = np.asarray(segments.outer_width(lengths, "gaufuse", "exact"))
  np.testing.assert_array_equal(exact, [right, right])
  wl, wr = map(np.asarray, segments.outer_width(lengths, "wtalc", "reference"))
  np.testing.assert_array_equal(wl, [0, 1, 1, 4, 4, 4, 5, 25, 75, 2])  # ceil(0.25 len)
  np.testing.assert_array_equal(wr, [0, 0, 0, 3, 3, 4, 4, 25, 75, 2])  # floor(0.25 len)


def test_outer_width_equals_the_authors_float64_truncation():
  """``int(s - w)`` and ``int(e + w + 1)`` in float64 (evaluation/detectionMAP.py:getActLoc)
  against our float32 widths, for every length up to 5,000 snippets."""
  lengths = np.arange(5001)
  left, right = map(np.asarray, segments.outer_width(lengths, "gaufuse"))
  w = 0.0785 * lengths.astype(np.float64)**0.9
  s = e = 6000  # far from 0: no clipping
  np.testing.assert_array_equal(s - (s - w).astype(np.int64), left)
  np.testing.assert_array_equal((e + w + 1).astype(np.int64) - e - 1, right)


def test_outer_width_unknown_options():
  with pytest.raises(ValueError, match="rule"):
    segments.outer_width(3, "bogus")
  with pytest.raises(ValueError, match="conventions"):
    segments.outer_width(3, "gaufuse", "authors")


def test_overlap_candidate_and_iou():
  seed = np.array([2.0, 6.0])
  segs = np.array([[2.0, 6.0], [4.0, 8.0], [6.0, 9.0], [0.0, 10.0], [3.0, 3.0]])
  cand = np.asarray(segments.overlap(seed, segs, "candidate", "exact"))
  np.testing.assert_allclose(cand, [1.0, 0.5, 0.0, 0.4, 0.0], atol=1e-6)
  iou = np.asarray(segments.overlap(seed, segs, "iou", "exact"))
  np.testing.assert_allclose(iou, [1.0, 2 / 6, 0.0, 0.4, 0.0], atol=1e-6)
  # Inclusive lengths (the authors' prediction_fuse_module): l = min e - max s + 1 over e - s + 1.
  cand = np.asarray(segments.overlap(seed, segs, "candidate", "reference"))
  np.testing.assert_allclose(cand, [1.0, 3 / 5, 1 / 4, 5 / 11, 1.0], atol=1e-6)
  iou = np.asarray(segments.overlap(seed, segs, "iou", "reference"))
  np.testing.assert_allclose(iou, [1.0, 3 / 7, 1 / 8, 5 / 11, 1 / 5], atol=1e-6)


def test_seconds_snippets_roundtrip():
  np.testing.assert_allclose(segments.snippets_to_seconds(segments.seconds_to_snippets(3.2)), 3.2,
                             rtol=1e-6)
  np.testing.assert_allclose(segments.seconds_to_snippets(0.64), 1.0, rtol=1e-6)
