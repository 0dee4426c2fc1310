"""Benchmarks: `python -m bench.<name>`; numbers are recorded in bench/README.md."""
