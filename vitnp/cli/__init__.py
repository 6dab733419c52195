"""The command line (``python -m vitnp …``): argument parsers that call the library.

``cli.train`` holds ``python -m vitnp train``; the other commands' parsers still sit beside their library code
(``vitnp.evaluate``, ``vitnp.analysis.visualize``, ``vitnp.bench.run``, ``vitnp.course.cli``).
"""
