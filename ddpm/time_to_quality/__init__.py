"""The time-to-quality benchmark (``ddpm bench --time-to-quality FILE``, issue 15): several configs trained
under the same wall-clock budget, scored at fixed intervals of training time, with the time each takes to reach
fixed quality targets. ``spec`` reads the benchmark file, ``clock`` is the training-time callback, ``points``
the CSV, ``thresholds`` the times and ratios, ``report`` the summaries and plot, ``run`` puts them together."""
from ddpm.time_to_quality.spec import Benchmark, Entry, load_benchmark
from ddpm.time_to_quality.run import run_benchmark

__all__ = ["Benchmark", "Entry", "load_benchmark", "run_benchmark"]
