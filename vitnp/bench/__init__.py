"""``python -m vitnp bench``: the benchmarks.

==================  ======================================================================================
module              what lives there
==================  ======================================================================================
``bench.run``       training-step and inference throughput against PyTorch, in worker processes
``bench.ops``       ``--ops``: each fast op against its reference twin; writes docs/performance.md's table
``bench.profile``   ``--profile``: per-op time of a step, vitnp next to PyTorch's profiler
==================  ======================================================================================
"""
