"""The command line (``python -m vitnp …``): every argument parser, each calling the library.

=================  ===========================================================================================
module             commands
=================  ===========================================================================================
``cli.main``       ``python -m vitnp``: the list of commands, ``gradcheck``, ``forward``; errors as one line
``cli.train``      ``train``
``cli.evaluate``   ``evaluate``, ``predict``, ``info``
``cli.visualize``  ``visualize``
``cli.bench``      ``bench`` (:mod:`vitnp.bench`), and the benchmark's vitnp worker process
``cli.course``     ``course build|grade|list`` (:mod:`vitnp.course`)
=================  ===========================================================================================

The library never imports this package (``tests/test_layout.py``): commands call down, never back.
"""
