"""The package version, in one place (`rag.__version__`, index manifests)."""

__version__ = "0.1.0"
