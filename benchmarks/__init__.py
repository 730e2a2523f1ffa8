"""Speed and memory benchmarks, each measured against a named peer in the same run.

Run a benchmark as a module from the repository root, e.g. ``python -m benchmarks.load``;
results are JSON files under ``build/bench``. See ``benchmarks/README.md``.
"""
