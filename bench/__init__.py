"""Benchmarks: each prints a table comparing variants side by side in one run."""

import warnings

# Dagster warns at import that some APIs the lakehouse uses are in beta or preview (pyproject's
# pytest settings silence the same ones): a benchmark's --help and tables stay readable
warnings.filterwarnings("ignore", message=r".* is currently in (beta|preview)")
