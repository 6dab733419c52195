"""``python -m vitnp COMMAND …``: the entry point; the commands and their parsers are in :mod:`vitnp.cli`."""
import sys

from .cli.main import main

if __name__ == "__main__":
    sys.exit(main())
