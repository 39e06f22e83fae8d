"""Data parallelism: a pmapped step on 2 devices equals one device, and micro-batches each padded
to their own length equal the plain padded batch."""

import faulthandler
import functools

from flax import jax_utils
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import tiny
from gaufuse_jax._src import programs
from gaufuse_jax._src import memory as memory_lib
from gaufuse_jax._src import schedule as schedule_lib
from gaufuse_jax._src import steps
from gaufuse_jax._src import train_state as train_state_lib
from gaufuse_jax._src.data import batching
from gaufuse_jax._src.data import embedded



def _four_video_step(*, seed, layout, memory_sign):
  """4 embedded videos (3 classes, D=8, at most 32 snippets), the tiny model, and a state with a
  filled 3 x 2 memory bank (tokens ``memory_sign(normal)``) and two random label generations;
  hyper-parameters of a Δ-label step with memory."""
  config = tiny.get_config()
  ds, _ = embedded.make_embedded_dataset(seed=seed, num_train=4, num_test=1, num_classes=3,
                                         feature_dim=8, layout=layout)
  model = programs.build_model(config, ds)
  tx = train_state_lib.make_optimizer(config)
  state = train_state_lib.create_train_state(
      model, tx, jax.random.PRNGKey(0), num_videos=4, max_snippets=32, feature_dim=8,
      num_classes=3, memory_slots=2)
  rng = np.random.default_rng(0)
  state = state.replace(
      memory=memory_lib.MemoryBank(
          tokens=jnp.asarray(memory_sign(rng.normal(size=(3, 2, 8))), jnp.float32),
          scores=jnp.asarray(rng.uniform(size=(3, 2)), jnp.float32)),
      generations=jnp.asarray(rng.uniform(size=(2, 4, 32, 4)), jnp.float32))
  hparams = {"learning_rate": np.float32(1e-3), "spl_weight": np.float32(1.0),
             "pseudo_weight": np.float32(10.0), "label_mode": np.int32(schedule_lib.LABEL_DELTA),
             "delta_scale": np.float32(2.0)}
  return ds, model, tx, state, hparams


def test_train_step_two_devices_equals_one():
  """One pmapped train step over 2 devices (2 videos each) equals 1 device with the same 4
  videos: gradients, metrics and the memory update are summed/gathered over devices. Dropout
  on (one key per video, whatever device holds it), memory on, Δ pseudo labels on."""
  if jax.local_device_count() < 2:
    pytest.skip("needs 2 local devices (conftest forces 2 host devices)")
  # A deadlocked XLA:CPU collective must fail the run, not hang it.
  faulthandler.dump_traceback_later(300, exit=True)
  try:
    ds, model, tx, state, hparams = _four_video_step(
        seed=0, layout=embedded.EmbeddedLayout(median_length=20, min_length=8, max_length=32),
        memory_sign=lambda x: x)
    results = {}
    for n in (1, 2):
      devices = jax.local_devices()[:n]
      batch = next(batching.iterate_batches(ds, batch_size=4, seed=0, epoch=0, shuffle=False,
                                            bucket_sizes=(32,), num_devices=n))
      step = jax.pmap(functools.partial(steps.train_step, model=model, tx=tx, use_memory=True,
                                        pseudo_frame_coef=0.8),
                      axis_name=steps.AXIS, devices=devices)
      results[n] = jax.device_get(jax.block_until_ready(
          step(jax_utils.replicate(state, devices), batch, jax_utils.replicate(hparams, devices))))
  finally:
    faulthandler.cancel_dump_traceback_later()
  (one, m1), (two, m2) = results[1], results[2]
  # Replicas stay identical, and the update is not a no-op.
  jax.tree.map(lambda x: np.testing.assert_array_equal(x[0], x[1]), (two.params, two.memory))
  moved = jax.tree.map(lambda new, old: np.max(np.abs(new[0] - old)), one.params, state.params)
  assert max(jax.tree.leaves(moved)) > 1e-4
  assert float(m1["pseudo"][0]) > 0 and float(m1["num_videos"][0]) == 4
  close = functools.partial(np.testing.assert_allclose, rtol=1e-5, atol=1e-6)
  jax.tree.map(lambda a, b: close(a[0], b[0]), (one.params, one.memory, one.opt_state),
               (two.params, two.memory, two.opt_state))
  jax.tree.map(lambda a, b: close(a[0], b[0]), m1, m2)
  assert int(one.step[0]) == int(two.step[0]) == 1


def test_micro_batches_equal_the_plain_padded_batch():
  """An optimizer step over 4 videos of different lengths: each video padded to its own bucket
  with its gradient accumulated (``iterate_micro_batches``, memory read compacted to the videos'
  labelled classes) gives the parameters, memory, optimizer state and metrics of the plain
  padded batch (the 4 videos padded together to 32, all 3 x 2 memory slots). Dropout on (one
  key per video), memory branch on, Δ pseudo labels on."""
  ds, model, tx, state, hparams = _four_video_step(
      seed=1, layout=embedded.EmbeddedLayout(median_length=14, min_length=5, max_length=32),
      memory_sign=np.abs)
  assert ds.lengths.max() <= 32 and len(set(ds.lengths.tolist())) > 1
  put = lambda tree: jax_utils.replicate(tree, jax.local_devices()[:1])
  pmap = lambda fn, **kw: jax.pmap(fn, axis_name=steps.AXIS, devices=jax.local_devices()[:1], **kw)
  kw = dict(model=model, use_memory=True, pseudo_frame_coef=0.8)
  order = dict(batch_size=4, seed=3, epoch=5)

  padded = next(batching.iterate_batches(ds, bucket_sizes=(32,), **order))
  plain = jax.device_get(pmap(functools.partial(steps.train_step, tx=tx, **kw))(
      put(state), padded, put(hparams)))

  micro = next(batching.iterate_micro_batches(ds, bucket_sizes=(8, 16, 24, 32),
                                              micro_batch_size=1, **order))
  assert len(micro) == 4
  assert sorted(b["features"].shape[2] for b in micro) != [32] * 4  # they did pad less
  accumulate = pmap(functools.partial(steps.accumulate_step, max_labels=1, **kw))
  init = pmap(functools.partial(steps.init_accumulator, model=model))
  rstate, acc = put(state), init(put(state))
  for batch in micro:
    acc = accumulate(rstate, acc, batch, put(hparams))
  split = jax.device_get(pmap(functools.partial(steps.apply_step, tx=tx))(rstate, acc,
                                                                         put(hparams)))
  assert ds.labels.sum(1).max() == 1  # max_labels=1 holds every video's memory slots
  moved = jax.tree.map(lambda new, old: np.max(np.abs(new[0] - old)), plain[0].params,
                       state.params)
  assert max(jax.tree.leaves(moved)) > 1e-4
  # float32 sums in another order: Adam's second moments (squared gradients) differ by ~1e-5.
  close = functools.partial(np.testing.assert_allclose, rtol=5e-5, atol=1e-6)
  jax.tree.map(close, (plain[0].params, plain[0].memory, plain[0].opt_state, plain[1]),
               (split[0].params, split[0].memory, split[0].opt_state, split[1]))
