"""Benchmarks that write bench/results/*.json; run each from the repository root as
``python -m bench.<name>`` so ``import finance`` etc. resolve to the packages."""
