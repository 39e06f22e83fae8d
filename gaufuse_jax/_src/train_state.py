"""The train state: everything a resumed run needs to continue exactly."""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax

from gaufuse_jax._src import memory as memory_lib


@flax.struct.dataclass
class TrainState:
  """Training state (one replica; under pmap every leaf gains a leading device axis).

  Attributes:
    step: int32 scalar, optimizer steps taken.
    epoch: int32 scalar, the next epoch to run (0-based).
    params: model parameters.
    opt_state: optax state (with the injected learning rate).
    rng: PRNG key of the run; step keys are ``fold_in(rng, step)``.
    memory: per-class memory bank (the authors' ``model/memory.py``), empty until the warm-up ends.
    generations: float32 ``[2, V, T_max, C+1]`` pseudo labels of all training videos: index 0
      the latest generation, 1 the previous one (zeros before the first generation).
    num_generations: int32 scalar, generations made so far.
  """
  step: jax.Array
  epoch: jax.Array
  params: Any
  opt_state: Any
  rng: jax.Array
  memory: memory_lib.MemoryBank
  generations: jax.Array
  num_generations: jax.Array


def make_optimizer(config) -> optax.GradientTransformation:
  """Adam with coupled L2 weight decay, as ``torch.optim.Adam(weight_decay=...)`` (``method.py``).

  The learning rate is an injected hyper-parameter, set each epoch from the schedule, so the
  schedule lives in the config (in epochs) and in the checkpoint, not in a step function.
  """
  opt = config.optimizer

  def adam_l2(learning_rate):
    return optax.chain(
        optax.add_decayed_weights(opt.weight_decay),
        optax.scale_by_adam(b1=opt.b1, b2=opt.b2, eps=opt.eps),
        optax.scale_by_learning_rate(learning_rate),
    )

  return optax.inject_hyperparams(adam_l2)(learning_rate=config.schedule.lr_values[0])


def create_train_state(model, tx, rng, *, num_videos, max_snippets, feature_dim, num_classes,
                       memory_slots) -> TrainState:
  """Initialises parameters, optimizer, memory and (zero) pseudo-label generations."""
  init_rng, rng = jax.random.split(rng)
  dummy = jnp.zeros((1, 4, feature_dim), jnp.float32)
  params = model.init({"params": init_rng, "dropout": init_rng}, dummy,
                      jnp.array([4], jnp.int32), train=False)["params"]
  return TrainState(
      step=jnp.zeros((), jnp.int32),
      epoch=jnp.zeros((), jnp.int32),
      params=params,
      opt_state=tx.init(params),
      rng=rng,
      memory=memory_lib.init_memory(num_classes, memory_slots, feature_dim),
      generations=jnp.zeros((2, num_videos, max_snippets, num_classes + 1), jnp.float32),
      num_generations=jnp.zeros((), jnp.int32),
  )
