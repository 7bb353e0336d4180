"""mlbench: benchmark PyTorch, TensorFlow and JAX against each other on your own hardware.

The parent side (this package) never imports an ML framework; workers/ holds the worker side
(installed as mlbench/workers, configs/ as mlbench/configs: mlbench.config.catalog finds either).
Importing this module must stay free: it is the version only.
"""
__version__ = "0.2.0"
