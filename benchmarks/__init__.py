"""mailtape benchmarks: ``python -m benchmarks`` (``make bench``) runs every ``bench_*.py`` module.

Each module exposes ``run(quick: bool = False) -> list[dict]`` returning rows with the keys
``name, value, unit, baseline, ratio, target``; the baseline is measured in the same run (dd, cat,
plain copies), so a figure is judged as a ratio on this machine, never as an absolute time.
See docs/performance.md.
"""
