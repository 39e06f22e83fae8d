"""Backbone names of ``config.model.backbone``: the built-in ones and those users register."""

from __future__ import annotations

import dataclasses
import importlib

from gaufuse_jax._src.models import basnet
from gaufuse_jax._src.models import rskp
from gaufuse_jax._src.models import stpn
from gaufuse_jax._src.models.backbone import Backbone

_REGISTRY: dict[str, type] = {"rskp": rskp.RSKP, "stpn": stpn.STPN, "basnet": basnet.BaSNet}


def register_backbone(name: str, cls: type) -> type:
  """Makes ``config.model.backbone = name`` build ``cls``; returns ``cls``.

  Raises:
    TypeError: ``cls`` is not a subclass of ``gaufuse_jax.Backbone``.
    ValueError: ``name`` is empty, contains ``:`` or is taken by another class.
  """
  if not (isinstance(cls, type) and issubclass(cls, Backbone)):
    raise TypeError(f"register_backbone: {cls!r} is not a subclass of gaufuse_jax.Backbone")
  if not isinstance(name, str) or not name or ":" in name:
    raise ValueError(f"register_backbone: the name must be a non-empty string without ':', "
                     f"got {name!r}")
  if _REGISTRY.get(name, cls) is not cls:
    raise ValueError(f"register_backbone: {name!r} is already {_REGISTRY[name].__name__}")
  _REGISTRY[name] = cls
  return cls


def registered_names() -> list[str]:
  """The names ``config.model.backbone`` accepts besides ``"package.module:Class"``."""
  return sorted(_REGISTRY)


def get_backbone(name: str) -> type:
  """The backbone class of ``config.model.backbone``: a registered name (``"rskp"``,
  ``"stpn"``, ``"basnet"`` or one of :func:`register_backbone`) or ``"package.module:Class"``.

  Raises:
    ValueError: an unknown name, a module or class that does not import, or a class that is
      not a subclass of ``gaufuse_jax.Backbone``.
  """
  if not isinstance(name, str) or ":" not in name:
    if name not in _REGISTRY:
      raise ValueError(f"config.model.backbone: expected one of {registered_names()} or "
                       f"'package.module:Class', got {name!r}")
    return _REGISTRY[name]
  module_name, _, attr = name.partition(":")
  try:
    cls = getattr(importlib.import_module(module_name), attr)
  except (ImportError, AttributeError) as e:
    raise ValueError(f"config.model.backbone: cannot import {name!r}: {e}") from e
  if not (isinstance(cls, type) and issubclass(cls, Backbone)):
    raise ValueError(f"config.model.backbone: {name!r} is not a subclass of gaufuse_jax.Backbone")
  return cls


def backbone_fields(cls: type) -> list[str]:
  """The constructor fields of backbone ``cls`` that ``config.model`` may set (all but
  ``num_classes``, ``feature_dim`` and Flax's ``parent`` / ``name``)."""
  return sorted(f.name for f in dataclasses.fields(cls)
                if f.init and f.name not in {"num_classes", "feature_dim", "parent", "name"})
