"""Benchmarks: `python -m bench.<name>`; numbers are recorded in bench/README.md."""

import os

# Each app a bench starts (in process or as `python -m bot run`, which inherits this) binds its
# metrics listener to a free port: benches and test runs side by side must not clash on 9464.
os.environ.setdefault("METRICS_PORT", "0")
