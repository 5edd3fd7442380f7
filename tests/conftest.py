"""Test ids: an optimizer under test is named by its entry in ``_optimizers``."""

import _optimizers


def pytest_make_parametrize_id(config, val, argname):
  del config, argname
  if isinstance(val, _optimizers.Optimizer):
    return val.name
  return None  # pytest's own id
