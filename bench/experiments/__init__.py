"""One-off experiments behind the benchmark decisions in docs/history.md (not benchmarks)."""
