"""The README's Python examples run, in order, as a reader would paste them."""

import pathlib
import re

import pytest

README = pathlib.Path(__file__).parents[1] / "README.md"


@pytest.mark.slow  # the Quickstart trains for 100 steps
def test_readme_python_examples_run():
  blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.DOTALL)
  assert len(blocks) >= 5
  namespace: dict = {}
  for block in blocks:
    exec(compile(block, str(README), "exec"), namespace)
  # The first example trained: its loss went from 8 (outputs 3, targets 1) to
  # below 0.1 in its 100 steps.
  assert float(namespace["loss"](namespace["params"])) < 0.1
