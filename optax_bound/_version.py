"""The package version, apart so that packaging can read it without importing JAX."""

# A development version: main has changed the state format and the calls
# since 0.1.0 (CHANGELOG.md), so it must not report itself as 0.1.0.
__version__ = "0.2.0.dev0"
