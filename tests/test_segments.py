import numpy as np
import pytest

from gaufuse_jax import segments


def test_outer_width_rules_hand_values():
  lengths = np.array([0, 1, 2, 13, 14, 100, 300, 8])
  gau = np.asarray(segments.outer_width(lengths, "gaufuse"))
  expected = np.floor(0.0785 * lengths.astype(np.float64)**0.9).astype(int)
  np.testing.assert_array_equal(gau, expected)
  assert gau[5] == 4 and gau[6] == 13  # 0.0785*100**0.9 = 4.95, 0.0785*300**0.9 = 13.1
  wt = np.asarray(segments.outer_width(lengths, "wtalc"))
  np.testing.assert_array_equal(wt, [0, 0, 0, 3, 3, 25, 75, 2])


def test_outer_width_unknown_rule():
  with pytest.raises(ValueError, match="rule"):
    segments.outer_width(3, "bogus")


def test_overlap_candidate_and_iou():
  seed = np.array([2.0, 6.0])
  segs = np.array([[2.0, 6.0], [4.0, 8.0], [6.0, 9.0], [0.0, 10.0], [3.0, 3.0]])
  cand = np.asarray(segments.overlap(seed, segs, "candidate"))
  np.testing.assert_allclose(cand, [1.0, 0.5, 0.0, 0.4, 0.0], atol=1e-6)
  iou = np.asarray(segments.overlap(seed, segs, "iou"))
  np.testing.assert_allclose(iou, [1.0, 2 / 6, 0.0, 0.4, 0.0], atol=1e-6)


def test_seconds_snippets_roundtrip():
  np.testing.assert_allclose(segments.snippets_to_seconds(segments.seconds_to_snippets(3.2)), 3.2, rtol=1e-6)
  np.testing.assert_allclose(segments.seconds_to_snippets(0.64), 1.0, rtol=1e-6)
