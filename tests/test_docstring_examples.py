"""The ``Examples:`` of the public functions' docstrings run and print what they show."""

import doctest
import importlib
import pkgutil

import pytest

import gaufuse_jax
from gaufuse_jax import _src

DOCUMENTED = ("generate_proposals", "nms", "gaussian_weighted_fusion", "localize", "linpro_labels",
              "delta_pseudo_labels", "detection_map")
MODULES = sorted(m.name for m in pkgutil.walk_packages(_src.__path__, "gaufuse_jax._src."))


def _run(tests):
  runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE, verbose=False)
  for test in tests:
    runner.run(test)
  return runner.summarize(verbose=False)


@pytest.mark.parametrize("name", DOCUMENTED)
def test_main_public_functions_have_runnable_examples(name):
  fn = getattr(gaufuse_jax, name)
  fn = getattr(fn, "__wrapped__", fn)  # jitted functions keep the docstring of the original
  result = _run(doctest.DocTestFinder().find(fn, name, globs={}))
  assert result.attempted > 0, f"gaufuse_jax.{name} has no examples"
  assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed"


def test_every_example_in_the_library_runs():
  tests = [t for name in MODULES
           for t in doctest.DocTestFinder().find(importlib.import_module(name))]
  result = _run(tests)
  assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed"
