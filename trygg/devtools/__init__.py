"""Development tools shared by the tests and the benchmarks (never used by a deployment)."""
