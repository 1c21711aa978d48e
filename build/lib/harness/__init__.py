"""A benchmark-and-comparison harness for text classifiers.

The package is deliberately light to import: torch, transformers and datasets are
imported only by the modules that run cells, so `harness --help` answers at once.
"""

__version__ = "0.1.0"
