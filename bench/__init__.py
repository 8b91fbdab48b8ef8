"""Benchmarks: scripts that print figures (``python -m bench`` runs them all).

Not tests: pytest collects only ``tests/``. See ``bench/README.md`` for what each figure
means, how it is measured, and the figures measured on the project's reference machine.
"""
