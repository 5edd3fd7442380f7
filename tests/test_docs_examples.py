"""The code a reader sees runs: every Python block of the README and the docs.

Each docs page runs on its own, in a fresh namespace, its blocks in order, as a
reader who lands on that page would paste them; each README block runs on its
own. A ```text block right after a Python block is that block's printed output,
and must be what it prints. Other blocks (bash, text elsewhere) are not run.
"""

import ast
import contextlib
import io
import pathlib
import re

import jax
import jax.numpy as jnp
import optax
import pytest

import optax_bound

ROOT = pathlib.Path(__file__).parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
DOCS_PAGES = sorted(
    p for p in DOCS.rglob("*.md") if "_build" not in p.relative_to(DOCS).parts)

_FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.DOTALL | re.MULTILINE)


def _blocks(text):
  """``(python_source, expected_output_or_None)`` for each Python block."""
  fences = [(m.group(1).strip(), m.group(2), m.start(), m.end())
            for m in _FENCE.finditer(text)]
  blocks = []
  for i, (info, body, _, end) in enumerate(fences):
    if info != "python":
      continue
    expected = None
    if i + 1 < len(fences):
      next_info, next_body, next_start, _ = fences[i + 1]
      if next_info == "text" and not text[end:next_start].strip():
        expected = next_body
    blocks.append((body, expected))
  return blocks


def _run(blocks, where):
  namespace = {"__name__": "__main__"}
  for i, (source, expected) in enumerate(blocks):
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
      exec(compile(source, f"{where}, Python block {i + 1}", "exec"), namespace)
    if expected is not None:
      got = [line.rstrip() for line in printed.getvalue().rstrip().splitlines()]
      want = [line.rstrip() for line in expected.rstrip().splitlines()]
      assert got == want, f"{where}, Python block {i + 1} printed other output"


def _page_id(path):
  return str(path.relative_to(ROOT))


# Each page's examples take seconds (under 10 on 2 cores); none trains a model.
@pytest.mark.slow  # every guide's code, Flax training included: ~10 s
@pytest.mark.parametrize("page", DOCS_PAGES, ids=_page_id)
def test_docs_page_python_blocks_run_in_order_and_print_what_the_page_shows(page):
  blocks = _blocks(page.read_text())
  _run(blocks, _page_id(page))


_README_BLOCKS = _blocks(README.read_text())


@pytest.mark.parametrize("index", range(len(_README_BLOCKS)))
def test_readme_python_block_runs_on_its_own(index):
  _run([_README_BLOCKS[index]], f"README.md, block {index + 1} alone")


def test_every_page_is_found_and_the_readme_has_examples():
  assert len(_README_BLOCKS) >= 3
  assert {"docs/index.md", "docs/api.md", "docs/guides/getting_started.md",
          "docs/guides/checkpoints.md"} <= {_page_id(p) for p in DOCS_PAGES}


# `tests/test_file.py::test_name`, as the README and the docs cite a test.
_CITATION = re.compile(r"tests/(test_\w+)\.py::(test_\w+)")


def _test_names(path):
  tree = ast.parse(path.read_text())
  return {node.name for node in ast.walk(tree)
          if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")}


def test_every_cited_test_exists():
  cited = {}
  for page in [README, *DOCS_PAGES]:
    for module, name in _CITATION.findall(page.read_text()):
      cited.setdefault((module, name), []).append(_page_id(page))
  # The guarantees page alone cites dozens: a broken pattern finds none.
  assert len(cited) >= 50
  missing = []
  for (module, name), pages in sorted(cited.items()):
    path = ROOT / "tests" / f"{module}.py"
    if not path.exists() or name not in _test_names(path):
      missing.append(f"tests/{module}.py::{name} (cited in {', '.join(pages)})")
  assert not missing, "cited tests that do not exist:\n" + "\n".join(missing)


def test_every_public_name_has_an_entry_in_the_api_page():
  api = (DOCS / "api.md").read_text()
  documented = set(re.findall(
      r"^\.\. (?:autofunction|autoclass|py:data):: (\w+)$", api, re.MULTILINE))
  public = set(optax_bound.__all__) - {"__version__"}
  assert documented == public


_PARAMS = {"w": jnp.ones((3, 2)), "b": jnp.zeros(2)}


def _state_names(tx):
  """The state's array names as Orbax writes them; `<param>` for each parameter."""
  names = []
  for path, _ in jax.tree_util.tree_flatten_with_path(tx.init(_PARAMS))[0]:
    keys = jax.tree_util.keystr(path, simple=True, separator=".").split(".")
    if len(keys) > 1 and keys[-1] in _PARAMS:
      keys[-1] = "<param>"
    name = ".".join(keys)
    if name not in names:
      names.append(name)
  return names


def test_the_state_table_of_the_checkpoints_page_is_what_init_builds():
  page = (DOCS / "guides" / "checkpoints.md").read_text()
  rows = re.findall(r"^\| `(optax[^`]*)` \| (.*) \|$", page, re.MULTILINE)
  assert len(rows) >= 8
  for expression, cell in rows:
    tx = eval(expression, {"optax": optax, "optax_bound": optax_bound})
    assert re.findall(r"`([^`]+)`", cell) == _state_names(tx), expression


def test_the_readme_cites_the_package_at_its_version():
  entry = re.search(r"@software\{optax_bound,(.*?)\n\}", README.read_text(),
                    re.DOTALL)
  assert entry, "the README's Citing section has no @software entry"
  assert f"version = {{{optax_bound.__version__}}}" in entry.group(1)


def test_final_lr_has_one_statement_in_the_readme_guides_and_docstrings():
  # What final_lr means once the band has closed, and the SGD it equals.
  start, end = "Once the band has closed", "momentum=0.9)`."
  texts = {"README.md": README.read_text()}
  for page in ("getting_started", "choosing_hyperparameters"):
    texts[page] = (DOCS / "guides" / f"{page}.md").read_text()
  for name in ("adabound", "amsbound", "adaboundw"):
    texts[name] = getattr(optax_bound, name).__doc__.replace("``", "`")
  statements = set()
  for where, text in texts.items():
    text = " ".join(text.split())
    i = text.find(start)
    assert i >= 0, f"{where} does not say what final_lr ends as"
    statements.add(text[i:text.index(end, i) + len(end)])
  assert len(statements) == 1, statements


def test_ci_runs_the_readme_quickstart_test_command_first():
  quickstart = re.search(r"## Quickstart.*?```bash\n(.*?)```", README.read_text(),
                         re.DOTALL).group(1).splitlines()
  assert quickstart[0] == 'pip install ".[demo]" && python -m benchmarks.study'
  assert quickstart[1] == 'pip install ".[test]" && python -m pytest'
  ci_commands = [line for line in (ROOT / ".ci" / "run").read_text().splitlines()
                 if line.strip() and not line.startswith("#")]
  # After the set-up of the virtual environment, the first test command.
  first_test = next(line for line in ci_commands if "pytest" in line)
  assert first_test == quickstart[1]
