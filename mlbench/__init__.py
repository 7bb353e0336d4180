"""mlbench: benchmark PyTorch, TensorFlow and JAX against each other on your own hardware.

The parent side (this package) never imports an ML framework; workers/ holds the worker side.
"""
__version__ = "0.2.0"
