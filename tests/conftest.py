"""Test ids and the fast loop, from the table of optimizers in ``_optimizers``.

An optimizer under test is named by its entry. A test run on an entry outside
the fast loop (``Optimizer.fast_loop``) is marked slow: the fast loop runs
every generic test once per constructor, the full suite on every entry.
"""

import _optimizers
import pytest


def pytest_make_parametrize_id(config, val, argname):
  del config, argname
  if isinstance(val, _optimizers.Optimizer):
    return val.name
  return None  # pytest's own id


def pytest_collection_modifyitems(config, items):
  del config
  for item in items:
    callspec = getattr(item, "callspec", None)
    if callspec is None:
      continue
    if any(isinstance(value, _optimizers.Optimizer) and not value.fast_loop
           for value in callspec.params.values()):
      item.add_marker(pytest.mark.slow)
