"""Benchmark harness for architecture-selection methods in differentiable NAS."""

__version__ = "0.1.0"
