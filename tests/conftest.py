"""Test ids and the fast loop, from the table of optimizers in ``_optimizers``.

An optimizer under test is named by its entry. The fast loop
(``pytest -m "not slow"``) runs every generic test once per bound: on the
entries whose ``Optimizer.fast_loop`` is set (AdaBound's band, AdaMod's
average), or, for a test that takes none of them (one about weight decay, say),
on the first entry of the table it takes. Every other entry's runs are marked
slow: the full suite runs every test on every entry.
"""

import collections

import _optimizers
import pytest


def pytest_make_parametrize_id(config, val, argname):
  del config, argname
  if isinstance(val, _optimizers.Optimizer):
    return val.name
  return None  # pytest's own id


def _entries(item):
  callspec = getattr(item, "callspec", None)
  if callspec is None:
    return []
  return [value for value in callspec.params.values()
          if isinstance(value, _optimizers.Optimizer)]


def pytest_collection_modifyitems(config, items):
  del config
  tests = collections.defaultdict(list)  # One test function, all its runs.
  for item in items:
    if _entries(item):
      tests[item.nodeid.split("[")[0]].append(item)
  order = {opt: i for i, opt in enumerate(_optimizers.UNDER_TEST)}
  for runs in tests.values():
    taken = {opt for item in runs for opt in _entries(item)}
    fast = {opt for opt in taken if opt.fast_loop}
    if not fast:
      fast = {min(taken, key=lambda opt: order.get(opt, len(order)))}
    for item in runs:
      if not set(_entries(item)) <= fast:
        item.add_marker(pytest.mark.slow)
