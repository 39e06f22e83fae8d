"""localization.localize: only gated (video, class) pairs are localized, chunk by chunk."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gaufuse_jax._src import localization


def _case(seed=0, b=3, t=40, c=5):
  rng = np.random.default_rng(seed)
  cas = rng.uniform(0, 0.05, (b, t, c)).astype(np.float32)
  cas[:, 5:15] += 0.04  # one action-like run per (video, class)
  video_scores = rng.uniform(0, 0.4, (b, c)).astype(np.float32)
  video_scores[1] = 0.0  # a video with no gated class
  return cas, video_scores, np.array([t, t - 7, 23], np.int32)


@pytest.mark.parametrize("pair_chunk", [1, 4, 64])
def test_batched_localize_equals_each_pair_alone(pair_chunk):
  """Every (video, class) of a batch equals that pair localized alone (B = C = 1), whatever
  the chunk; pairs below the class gate are empty with zero counts."""
  cas, scores, lengths = _case()
  cfg = localization.LocalizationConfig(max_proposals=32, max_instances=8, pair_chunk=pair_chunk)
  localize = jax.jit(localization.localize, static_argnums=3)
  got, stats = localize(cas, scores, lengths, cfg)
  gated = scores >= cfg.class_threshold
  assert gated.any() and not gated.all()
  np.testing.assert_array_equal(stats["gated"], gated)
  for b in range(cas.shape[0]):
    for c in range(cas.shape[2]):
      one, one_stats = localize(cas[b:b + 1, :, c:c + 1], scores[b:b + 1, c:c + 1],
                                lengths[b:b + 1], cfg)
      for name, a, e in zip(got._fields, got, one):
        np.testing.assert_array_equal(a[b, c], e[0, 0], err_msg=f"{name} of ({b}, {c})")
      for k in ("proposals_dropped", "instances_dropped"):
        assert stats[k][b, c] == one_stats[k][0, 0]
      if not gated[b, c]:
        assert int(got.count[b, c]) == 0 and not got.valid[b, c].any()
        np.testing.assert_array_equal(got.index[b, c], -1)
        np.testing.assert_array_equal(got.segments[b, c], 0.0)
      else:
        assert int(got.count[b, c]) > 0


@pytest.mark.parametrize("field, value, expected", [
    ("pair_chunk", 0, "an integer >= 1"),
    ("max_proposals", 2.5, "an integer >= 1"),
    ("min_length", 0, "an integer >= 1"),
    ("max_instances", 300, "<= max_proposals=256"),
    ("temperature", 0.0, "a finite number > 0"),
    ("temperature", float("nan"), "a finite number > 0"),
    ("temperature", -0.1, "a finite number > 0"),
    ("class_threshold", float("inf"), "a finite number"),
    ("thresholds", (), "a non-empty tuple of finite numbers"),
    ("thresholds", (0.1, float("nan")), "a non-empty tuple of finite numbers"),
    ("overlap_threshold", 1.5, r"in \[0, 1\]"),
    ("soft_nms_sigma", 0.0, "a finite number > 0"),
    ("template", "cauchy", "one of"),
    ("overlap", "dice", "one of"),
    ("outer_rule", "quarter", "one of"),
    ("suppression", "wbf", "'fusion', 'nms' or 'soft_nms'"),
    ("merge_duplicates", "yes", "True, False or None"),
])
def test_bad_settings_name_the_field(field, value, expected):
  with pytest.raises(ValueError, match=f"LocalizationConfig.{field} must be {expected}"):
    localization.LocalizationConfig(**{field: value})


def test_a_bad_temperature_argument_raises():
  cas = jnp.zeros((1, 12, 2)).at[0, 3:7, 0].set(0.03)
  with pytest.raises(ValueError, match=r"localize: temperature must be > 0, got 0\.0"):
    localization.localize(cas, jnp.array([[0.9, 0.1]]), jnp.array([12]),
                          localization.LocalizationConfig(), temperature=0.0)
