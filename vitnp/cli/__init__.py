"""The command line (``python -m vitnp …``): argument parsers that call the library.

``cli.train`` holds ``python -m vitnp train``, ``cli.evaluate`` ``evaluate``, ``predict`` and ``info``,
``cli.visualize`` ``visualize``; the library they call lives in the rooms below ``vitnp/``.  The parsers of
``bench`` and ``course`` still sit beside their code (``vitnp.bench.run``, ``vitnp.course.cli``).
"""
