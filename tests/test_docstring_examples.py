"""The ``Examples:`` of the public functions' docstrings run and print what they show."""

import doctest

import pytest

from gaufuse_jax._src import evaluation
from gaufuse_jax._src import fusion
from gaufuse_jax._src import linpro
from gaufuse_jax._src import localization
from gaufuse_jax._src import proposals
from gaufuse_jax._src import pseudo_labels
from gaufuse_jax._src import suppression


@pytest.mark.parametrize("module", [proposals, suppression, fusion, localization, linpro,
                                    pseudo_labels, evaluation],
                         ids=lambda m: m.__name__)
def test_docstring_examples(module):
  result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE, verbose=False)
  assert result.attempted > 0, f"{module.__name__} has no examples"
  assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed"
