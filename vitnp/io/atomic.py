"""Write a file so that nobody ever sees half of it: the one way vitnp writes files.

Every file vitnp writes (checkpoints, metrics, plots, IDX files, downloads, notebooks, benchmark JSON) goes
through :func:`atomic_write`:

1. the bytes go to a new temporary file in the *same directory* as the target (a rename is only atomic
   within one file system);
2. the file is flushed and ``os.fsync``-ed, so its bytes are on disk before any name points at them;
3. ``os.replace`` moves it over the target in one step: a reader, or the user after a crash or a Ctrl-C,
   finds either the old file whole or the new file whole, never a mix;
4. on any error the temporary file is removed and the old target is left untouched.

Example::

    with atomic_write("runs/a/metrics.jsonl", "w") as f:
        f.write(text)
"""
from __future__ import annotations

import contextlib
import os
import secrets

__all__ = ["atomic_write", "write_text"]


@contextlib.contextmanager
def atomic_write(path, mode: str = "wb"):
    """Context manager yielding a file object opened with ``mode`` ('w' text as UTF-8, or 'wb');
    on a clean exit the file replaces ``path`` (steps 1–4 of the module docstring)."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write: mode must be 'w' or 'wb', got {mode!r}")
    path = os.fspath(path)
    directory, name = os.path.split(os.path.abspath(path))
    tmp = os.path.join(directory, f".{name}.{secrets.token_hex(4)}.tmp")
    # O_EXCL: never reuse an existing file; mode 0o666 lets the umask decide, as open(path, 'w') would.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, mode, **({"encoding": "utf-8"} if mode == "w" else {})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())        # the bytes are on disk before the name points at them
        os.replace(tmp, path)           # atomic: readers see the old file or the new one, never a mix
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise
    _fsync_directory(directory)


def write_text(path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_write(path, "w") as f:
        f.write(text)


def _fsync_directory(directory) -> None:
    """Make the rename itself durable (POSIX); a no-op where directories cannot be opened (Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
