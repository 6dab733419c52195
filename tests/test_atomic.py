"""vitnp.io.atomic: the one way vitnp writes files (old file whole or new file whole, never half)."""
import os

import pytest

from vitnp.io.atomic import atomic_write, write_text


def test_write_text_replaces_the_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "a.txt"
    write_text(path, "old")
    write_text(path, "new ✓")
    assert path.read_text(encoding="utf-8") == "new ✓"
    assert os.listdir(tmp_path) == ["a.txt"]


def test_an_error_mid_write_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    path = tmp_path / "a.bin"
    path.write_bytes(b"old contents")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_write(path, "wb") as f:
            f.write(b"half of the new")
            raise RuntimeError("disk full")
    assert path.read_bytes() == b"old contents"
    assert os.listdir(tmp_path) == ["a.bin"]


def test_the_bytes_are_fsynced_before_the_rename(tmp_path, monkeypatch):
    from vitnp.io import atomic
    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(atomic.os, "fsync", lambda fd: events.append("fsync") or real_fsync(fd))
    monkeypatch.setattr(atomic.os, "replace", lambda a, b: events.append("replace") or real_replace(a, b))
    write_text(tmp_path / "a.txt", "x")
    assert events[:2] == ["fsync", "replace"]


def test_bad_mode_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(ValueError, match="mode"):
        with atomic_write(tmp_path / "a.txt", "a"):
            pass
    assert os.listdir(tmp_path) == []
