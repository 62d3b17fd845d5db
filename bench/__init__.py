"""Benchmarks of the control plane, each a ratio against a baseline measured in the same run."""
