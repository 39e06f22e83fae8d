"""The local devices of a run and pmap over them (the same global device list on every
process), replication of a pytree onto them and back."""

from __future__ import annotations

from flax import jax_utils
import jax

from gaufuse_jax._src import steps

def local_devices(config):
  """The local devices a run uses: the first ``config.num_devices`` (0 = all)."""
  devices = jax.local_devices()
  if config.num_devices > len(devices):
    raise ValueError(f"config.num_devices={config.num_devices} but this process has only "
                     f"{len(devices)} local devices")
  return devices[:config.num_devices or None]


def pmap(fn, config, **kwargs):
  """``jax.pmap`` with the batch axis name of ``steps`` over ``local_devices(config)`` of every
  process: pmap wants the same global device list on all processes (a list of local devices
  would give each process its own, unconnected pmap)."""
  n = len(local_devices(config))
  devices = [d for p in range(jax.process_count()) for d in jax.local_devices(p)[:n]]
  return jax.pmap(fn, axis_name=steps.AXIS, devices=devices, **kwargs)


def replicate(tree, config):
  """One copy of ``tree`` per device of ``local_devices(config)``, for pmap.

  The copies go through an identity pmap, so that they carry the sharding of pmap outputs: a
  state whose leaves came sometimes from here and sometimes from a step would otherwise be a new
  input signature to the compiled steps, and every step would be compiled twice.
  """
  return pmap(_identity, config)(jax_utils.replicate(tree, devices=local_devices(config)))


def _identity(tree):
  return tree


def unreplicate(tree):
  """The first device's copy of a replicated pytree, on the host (blocks)."""
  return jax.device_get(jax.tree.map(lambda x: x[0], tree))
