"""No silent caps: ``localization.grow_caps`` and ``programs.GrowingStep`` give back every
instance of the real THUMOS14 test annotations, where fixed caps would drop some."""

import jax
import numpy as np

from gaufuse_jax._src import programs
from gaufuse_jax._src import localization
from gaufuse_jax._src.data import wtalc_annotations as annotations_lib


def test_grow_caps_hand_values():
  cfg = localization.LocalizationConfig(max_proposals=256, max_instances=64)
  grown = localization.grow_caps(cfg, proposals_dropped=0, instances_dropped=154)
  assert (grown.max_proposals, grown.max_instances) == (256, 256)  # 64 + 154 -> 256
  grown = localization.grow_caps(cfg, proposals_dropped=1, instances_dropped=1)
  assert (grown.max_proposals, grown.max_instances) == (512, 128)
  assert localization.grow_caps(cfg, proposals_dropped=0, instances_dropped=0) == cfg


def _gt_runs(segments, labels, cls, length):
  """Runs ``[s, e)`` (>= 2 snippets) of the union of the class's GT snippet sets
  ``[round(s * 25/16), round(e * 25/16))`` clipped to ``[0, length)``."""
  mask = np.zeros(length + 2, bool)
  for (start, end), label in zip(segments, labels):
    if label == cls:
      mask[1 + max(round(start * 25 / 16), 0):1 + min(round(end * 25 / 16), length)] = True
  edges = np.flatnonzero(np.diff(mask.astype(np.int8)))
  runs = edges.reshape(-1, 2)
  return runs[runs[:, 1] - runs[:, 0] >= 2]


def test_every_thumos14_test_instance_comes_back(shared_data):
  ann = annotations_lib.load_annotations(shared_data / "thumos14", dataset="Thumos14reduced")
  pairs = []  # (length, class, runs) of every (test video, class with GT)
  for v in ann.split_indices("test"):
    length = int(np.ceil(ann.durations[v] * 25 / 16))
    for c in np.unique(ann.segment_labels[v]):
      runs = _gt_runs(ann.segments[v], ann.segment_labels[v], c, length)
      if len(runs):
        pairs.append((length, runs))
  assert max(len(r) for _, r in pairs) > 64  # more than the old test-time cap
  # A CAS that is high inside every GT run and 0 elsewhere, one (video, class) per row.
  cfg = localization.LocalizationConfig(max_proposals=256, max_instances=64)

  def make(loc):
    return jax.jit(lambda cas, scores, lengths: localization.localize(cas, scores, lengths, loc))

  step = programs.GrowingStep(make, cfg, grow=True, name="test")
  pairs.sort(key=lambda p: p[0])
  found = expected = 0
  for i in range(0, len(pairs), 32):
    chunk = pairs[i:i + 32]
    t_pad = 1024 * -(-max(length for length, _ in chunk) // 1024)
    cas = np.zeros((len(chunk), t_pad, 1), np.float32)
    for row, (_, runs) in enumerate(chunk):
      for s, e in runs:
        cas[row, s:e, 0] = 0.5
    lengths = np.array([length for length, _ in chunk])
    instances, stats = step(cas, np.ones((len(chunk), 1), np.float32), lengths)
    assert not np.any(stats["proposals_dropped"]) and not np.any(stats["instances_dropped"])
    for row, (_, runs) in enumerate(chunk):
      count = int(instances.count[row, 0])
      got = np.trunc(np.asarray(instances.segments)[row, 0, :count]).astype(int)
      # The authors' stored segment: one snippet past the run.
      want = np.stack([runs[:, 0], runs[:, 1] + 1], 1)
      order = np.argsort(got[:, 0])
      np.testing.assert_array_equal(got[order], want)
      found += count
      expected += len(runs)
  assert found == expected > 2800  # of 3,358 GT instances: touching ones share a run
  assert step.dropped == {"proposals": 0, "instances": 0}
  assert step.loc_config.max_instances > 64  # grew to hold the videos with most instances


def test_growing_step_counts_drops_when_not_growing():
  cas = np.zeros((1, 64, 1), np.float32)
  for s in range(2, 62, 6):  # 10 separate runs of 3 snippets
    cas[0, s:s + 3, 0] = 0.5
  cfg = localization.LocalizationConfig(max_proposals=16, max_instances=4)

  def make(loc):
    return jax.jit(lambda c: localization.localize(c, np.ones((1, 1), np.float32),
                                                   np.array([64]), loc))

  fixed = programs.GrowingStep(make, cfg, grow=False, name="fixed")
  instances, stats = fixed(cas)
  assert int(instances.count[0, 0]) == 4 and int(stats["instances_dropped"][0, 0]) == 6
  assert fixed.take_dropped() == {"proposals_dropped": 0, "instances_dropped": 6,
                                  "max_proposals": 16, "max_instances": 4}
  assert fixed.dropped == {"proposals": 0, "instances": 0}  # reset by take_dropped
  grown = programs.GrowingStep(make, cfg, grow=True, name="grown")
  instances, _ = grown(cas)
  assert int(instances.count[0, 0]) == 10 and grown.loc_config.max_instances == 16
  assert grown.take_dropped()["instances_dropped"] == 0
