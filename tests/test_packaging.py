"""The distributions: what `pip install optax_bound` gives a user.

Builds the sdist and the wheel from the repository's tracked files, checks both
as PyPI would (`twine check --strict`), pins what the wheel holds and declares,
and installs the wheel into a fresh virtual environment that has nothing but
the runtime dependencies. Slow: it starts builds and a `pip install`.
"""

import email.message
import email.parser
import os
import pathlib
import runpy
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile

import pytest

pytestmark = pytest.mark.slow

REPO = pathlib.Path(__file__).resolve().parents[1]
PACKAGE = "optax_bound"
# Written by every wheel builder (PEP 427, PEP 639); setuptools adds
# top_level.txt, which other backends and future setuptools may leave out.
REQUIRED_METADATA = {"METADATA", "WHEEL", "RECORD", "licenses/LICENSE"}
OPTIONAL_METADATA = {"top_level.txt"}
# A PYTHONPATH pointing at a checkout would let pip and Python find the
# working tree's optax_bound (and its egg-info) instead of the wheel.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def _run(*cmd, cwd=None, hint=""):
  result = subprocess.run([str(c) for c in cmd], cwd=cwd, env=ENV,
                          capture_output=True, text=True, timeout=600,
                          check=False)
  assert result.returncode == 0, (
      f"{' '.join(map(str, cmd))} failed:\n{result.stdout}\n{result.stderr}"
      f"{hint}")
  return result.stdout


def _copy_tracked_files(dst):
  # The tracked files as the working tree has them, rather than `git archive
  # HEAD`: in CI's clean clone the two are the same, and locally this checks
  # an edit to pyproject.toml, or a new module once `git add`ed, before it is
  # committed. Untracked files (build/, *.egg-info, benchmark output, a file
  # not yet added) stay out, as they are out of the clone a release is built
  # from: a module that is imported but not yet added fails the import below,
  # as it would fail in that clone. A file deleted but still tracked is skipped.
  if shutil.which("git") is None or not (REPO / ".git").exists():
    pytest.skip("needs a git checkout to know which files are tracked")
  listed = _run("git", "-C", REPO, "ls-files", "-z", "--cached")
  for rel in filter(None, listed.split("\0")):
    src = REPO / rel
    if not os.path.lexists(src) or src.is_dir():  # deleted, or a submodule
      continue
    (dst / rel).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(src, dst / rel, follow_symlinks=False)


def _headers(raw):
  return email.parser.BytesHeaderParser().parsebytes(raw)


class Dists:
  """The source copy, its version and the two distributions built from it."""

  def __init__(self, root):
    self.src = root / "src"
    self.src.mkdir()
    _copy_tracked_files(self.src)
    self.version = runpy.run_path(
        str(self.src / PACKAGE / "_version.py"))["__version__"]
    self.project = tomllib.loads(
        (self.src / "pyproject.toml").read_text())["project"]
    out = root / "dist"
    _run(sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", out,
         self.src)
    self.wheel, = out.glob("*.whl")
    self.sdist, = out.glob("*.tar.gz")
    self.dist_info = f"{PACKAGE}-{self.version}.dist-info"
    untracked = _run("git", "-C", REPO, "ls-files", "--others",
                     "--exclude-standard", PACKAGE).split()
    self.hint = (f"\nNot in the distributions, being untracked: {untracked}"
                 if untracked else "")


@pytest.fixture(scope="module")
def dists(tmp_path_factory):
  return Dists(tmp_path_factory.mktemp("packaging"))


def test_twine_check_strict_passes_on_the_wheel_and_the_sdist(dists):
  out = _run(sys.executable, "-m", "twine", "check", "--strict", dists.wheel,
             dists.sdist)
  assert out.count("PASSED") == 2, out


def test_wheel_holds_only_the_package_modules_py_typed_license_and_metadata(
    dists):
  with zipfile.ZipFile(dists.wheel) as wheel:
    names = set(wheel.namelist())
    license_text = wheel.read(f"{dists.dist_info}/licenses/LICENSE")
  # From the source tree, so that a new module needs no edit here.
  modules = {p.relative_to(dists.src).as_posix()
             for p in (dists.src / PACKAGE).rglob("*.py")}
  assert f"{PACKAGE}/__init__.py" in modules
  assert {n.split("/")[0] for n in names} == {PACKAGE, dists.dist_info}
  package_files = {n for n in names if n.startswith(f"{PACKAGE}/")}
  assert package_files == modules | {f"{PACKAGE}/py.typed"}
  metadata_files = {n.removeprefix(f"{dists.dist_info}/") for n in names
                    if n.startswith(f"{dists.dist_info}/")}
  assert REQUIRED_METADATA <= metadata_files
  assert metadata_files <= REQUIRED_METADATA | OPTIONAL_METADATA
  assert license_text == (dists.src / "LICENSE").read_bytes()


def test_sdist_contains_the_license(dists):
  with tarfile.open(dists.sdist) as sdist:
    member = sdist.extractfile(f"{PACKAGE}-{dists.version}/LICENSE")
    assert member is not None
    license_text = member.read()
  assert license_text == (dists.src / "LICENSE").read_bytes()
  assert b"Apache License\n" in license_text
  assert b"Version 2.0, January 2004" in license_text


def _check_core_metadata(headers: email.message.Message, project):
  # License-Expression and License-File arrived in Metadata-Version 2.4.
  major, minor = map(int, headers["Metadata-Version"].split("."))
  assert (major, minor) >= (2, 4)
  assert headers["License-Expression"] == "Apache-2.0"
  assert headers.get_all("License-File") == ["LICENSE"]
  # PEP 639 replaces the License classifiers; setuptools refuses both at once.
  classifiers = headers.get_all("Classifier")
  assert classifiers == project["classifiers"]
  assert not [c for c in classifiers if c.startswith("License ::")]
  assert {
      "Development Status :: 3 - Alpha",
      "Programming Language :: Python :: 3.11",
      "Programming Language :: Python :: 3.12",
      "Programming Language :: Python :: 3.13",
      "Typing :: Typed",
  } <= set(classifiers)
  urls = dict(u.split(", ", 1) for u in headers.get_all("Project-URL"))
  assert urls == project["urls"]
  assert "Paper" in urls
  # No address that nothing backs: the package has no hosted repository or
  # site yet, so the metadata must not point at one.
  assert not [u for u in urls.values()
              if "optax-bound" in u or "readthedocs" in u]


def test_wheel_metadata_has_the_license_expression_and_classifiers(dists):
  with zipfile.ZipFile(dists.wheel) as wheel:
    headers = _headers(wheel.read(f"{dists.dist_info}/METADATA"))
  assert headers["Name"] == PACKAGE
  assert headers["Version"] == dists.version
  _check_core_metadata(headers, dists.project)


def test_sdist_metadata_has_the_license_expression_and_classifiers(dists):
  with tarfile.open(dists.sdist) as sdist:
    member = sdist.extractfile(f"{PACKAGE}-{dists.version}/PKG-INFO")
    assert member is not None
    headers = _headers(member.read())
  _check_core_metadata(headers, dists.project)


def test_wheel_installs_and_imports_in_a_fresh_venv_without_test_extras(
    dists, tmp_path):
  venv = tmp_path / "venv"
  # No --system-site-packages: only the wheel's own dependencies, from PyPI
  # or pip's cache, may satisfy the import.
  _run(sys.executable, "-m", "venv", venv)
  python = venv / "bin" / "python"
  _run(python, "-m", "pip", "install", "--disable-pip-version-check",
       "--no-input", dists.wheel)
  # -I: neither the working directory nor PYTHONPATH may supply the package.
  out = _run(python, "-I", "-c",
             "import importlib.util, optax_bound; "
             "print(optax_bound.__version__); print(optax_bound.__file__); "
             "print(*(importlib.util.find_spec(m) is not None "
             "for m in ('pytest', 'flax', 'hypothesis')))",
             cwd=tmp_path, hint=dists.hint)
  version, location, extras = out.strip().splitlines()
  assert version == dists.version
  assert pathlib.Path(location).resolve().is_relative_to(venv.resolve())
  assert extras == "False False False", "the venv sees the test extras"
