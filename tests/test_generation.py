"""generation: a pseudo-label generation over a whole dataset puts each video's labels (those of
the video localized and solved on its own) at its index; the memory bank fills every labelled
class."""

import dataclasses

import jax
import numpy as np
import pytest

from conftest import shared_config
from gaufuse_jax._src import generation
from gaufuse_jax._src import devices
from gaufuse_jax._src import programs
from gaufuse_jax._src import input_pipeline
from gaufuse_jax._src import pseudo_labels as pl_lib
from gaufuse_jax._src import steps
from gaufuse_jax._src import train_state as train_state_lib


def _setup():
  config = shared_config()
  train_ds, _ = input_pipeline.load_datasets(config.data)
  model = programs.build_model(config, train_ds)
  state = train_state_lib.create_train_state(
      model, train_state_lib.make_optimizer(config), jax.random.PRNGKey(0),
      num_videos=len(train_ds), max_snippets=288, feature_dim=train_ds.feature_dim,
      num_classes=train_ds.num_classes, memory_slots=config.memory_slots)
  return config, train_ds, model, state


@pytest.mark.slow  # ~35 s of compilation; the per-video equality of the batched pipeline is also
# checked in the default run by test_pseudo_labels.py
def test_dataset_generation_equals_each_video_alone():
  config, train_ds, model, state = _setup()
  p_pseudo = programs.make_pseudo_label_step(config, model)
  labels, stats = generation.generate_dataset_pseudo_labels(
      config, p_pseudo, devices.replicate(state.params, config), train_ds, epoch=1,
      temperature=0.02, bucket_sizes=(288,), num_snippets=300)
  assert labels.shape == (len(train_ds), 300, train_ds.num_classes + 1)
  assert stats["instances"] > 0 and stats["proposals_dropped"] == 0
  assert stats["labelled_snippets"] == np.count_nonzero(labels) > 0
  pl_config = input_pipeline.pseudo_label_config(config.pseudo)
  pl_config = dataclasses.replace(pl_config, localization=p_pseudo.loc_config)

  @jax.jit
  def alone(features, length):  # one video, its own length: no batch, no padding
    batch = {"features": features[None], "valid_length": length[None],
             "video_index": np.zeros(1, np.int32)}
    found, _ = steps.pseudo_label_instances(
        state.params, batch, 0.02, None, model=model, loc_config=pl_config.localization,
        frame_coef=config.pseudo.frame_coef, video_coef=config.pseudo.video_coef)
    solution, _ = pl_lib.solve_pseudo_labels(found, batch["valid_length"], pl_config)
    return pl_lib.assemble_pseudo_labels(solution, batch["valid_length"], num_snippets=288)[0]

  for v in range(len(train_ds)):
    n = int(train_ds.lengths[v])
    features = np.zeros((288, train_ds.feature_dim), np.float32)
    features[:n] = train_ds.features[v][:n]
    expected = np.asarray(alone(features, np.int32(n)))
    # float32 LPs batched with other videos' blocks differ by round-off only.
    np.testing.assert_allclose(labels[v, :288], expected, atol=2e-3, err_msg=f"video {v}")
    assert not labels[v, n:].any()
  assert labels.any()


@pytest.mark.parametrize("temperature", [0.0, -0.02, float("nan")])
def test_a_bad_temperature_is_refused_before_any_work(temperature):
  """In the compiled step the temperature is traced and could not raise: it is checked here."""
  config, train_ds, _, _ = _setup()
  with pytest.raises(ValueError, match=r"epoch 3: the fusion temperature must be a finite "
                                       r"number > 0 .*generation_temperatures"):
    generation.generate_dataset_pseudo_labels(config, None, None, train_ds, epoch=3,
                                              temperature=temperature, bucket_sizes=(288,),
                                              num_snippets=300)


def test_fill_memory_bank_fills_the_labelled_classes():
  config, train_ds, model, state = _setup()
  p_memory_init = devices.pmap(
      lambda bank, params, batch: steps.memory_init_step(bank, params, batch, model=model), config)
  rstate = devices.replicate(state, config)
  bank = devices.unreplicate(generation.fill_memory_bank(
      config, p_memory_init, rstate.memory, rstate.params, train_ds, bucket_sizes=(288,)))
  labelled = train_ds.labels.sum(0) > 0
  filled = np.isfinite(np.asarray(bank.scores)).any(axis=-1)  # [C]: empty slots are -inf
  np.testing.assert_array_equal(filled, labelled)
