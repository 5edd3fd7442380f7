"""Sphinx configuration of the optax_bound site.

The build is offline: no intersphinx inventories are fetched. Names from
Optax, JAX and NumPy stay plain code, and the nitpicky build (``-n``) is told
to let exactly those go unresolved (``nitpick_ignore_regex`` below). MathJax
is loaded by the reader's browser when a page is viewed, not at build time.

The figures live once, under ``benchmarks/results/``: pages reference them by
a relative path (``../benchmarks/results/...``), as the README does, and
Sphinx copies each one it meets into ``_images/`` of the built site.
"""

import pathlib
import re
import sys

from docutils import nodes

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # autodoc imports the package from this clone

import optax_bound  # noqa: E402

project = "optax_bound"
author = "optax_bound developers"
copyright = "optax_bound developers"
release = optax_bound.__version__
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    # MathJax shipped with the site, so that its math renders offline too.
    "sphinx-mathjax-offline",
    "sphinx.ext.viewcode",
]

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build"]

# Markdown: $...$ and $$...$$ math, ```{directive} fences, and anchors for
# the headings of levels 1 to 3, so that page.md#a-heading links resolve.
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3

# The docstrings are Google style (Args, Returns, Examples, References).
napoleon_google_docstring = True
napoleon_numpy_docstring = False
autodoc_member_order = "bysource"
# The signatures show names and defaults, not type hints: JAX and Optax aliases
# (optax.ScalarOrSchedule, jax.typing.ArrayLike) are expanded at run time into
# unions of ten types. Each Args entry says what the argument takes.
autodoc_typehints = "none"
autosummary_generate = False  # api.md lists every entry itself

# Offline and nitpicky: a reference to Optax, JAX or NumPy (in a signature's
# type hints, or a docstring's :func:`optax.adam`) has no inventory to resolve
# against, so it stays plain code. Only those namespaces are let go; any
# other unresolved name fails the build.
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(optax|jax|jnp|numpy|np)(\..*)?"),
]

html_theme = "furo"
html_title = f"optax_bound {release}"
html_static_path = ["_static"]
html_css_files = ["custom.css"]

# Long inline code, such as a cited test id
# (tests/test_file.py::test_what_it_checks), is one word to the browser, which
# furo lets break anywhere: mid-word. Here it may break after its "::" (or,
# in a path, after each "/"); its last part (the test's name) moves whole to
# the next line where it fits there (custom.css), and breaks after an "_" only
# where it is longer than a line. A <wbr> marks each place; copying the text
# is unchanged.
_LONG_LITERAL = 30
_NAME_BREAK = re.compile(r"(?<=_)")


def _with_breaks(node, text, where):
  for i, piece in enumerate(p for p in where.split(text) if p):
    if i:
      node += nodes.raw("", "<wbr>", format="html")
    node += nodes.Text(piece)


def _break_long_literals(app, doctree, docname):
  del app, docname
  for literal in list(doctree.findall(nodes.literal)):
    text = literal.astext()
    if (len(literal.children) != 1 or not isinstance(literal[0], nodes.Text)
        or len(text) < _LONG_LITERAL or " " in text):
      continue
    separator = "::" if "::" in text else "/"
    split = text.rfind(separator) + len(separator) if separator in text else 0
    head, name = text[:split], text[split:]
    literal.children = []
    _with_breaks(literal, head, re.compile(f"(?<={re.escape(separator)})"))
    if head:
      literal += nodes.raw("", "<wbr>", format="html")
    last = nodes.inline(classes=["literal-name"])
    _with_breaks(last, name, _NAME_BREAK)
    literal += last


def setup(app):
  app.connect("doctree-resolved", _break_long_literals)
