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

The library never imports this package (``tests/test_layout.py``): commands call down, never back.  What several
commands share is here: :func:`add_data_flags`.
"""


def add_data_flags(p, purpose: str = "") -> None:
    """``--data DIR`` and ``--no-verify``, the same in every command that reads Fashion-MNIST (``purpose``: what the
    command reads it for, shown in the help)."""
    p.add_argument("--data", metavar="DIR", default=None,
                   help=f"Fashion-MNIST directory{purpose} (default: $VITNP_DATA, then "
                        "/usr/share/datasets/fashion-mnist)")
    p.add_argument("--no-verify", action="store_true",
                   help="accept IDX files that are not the official Fashion-MNIST (skip the checksums)")

