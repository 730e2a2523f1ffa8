"""Atomic writes: a failure mid-write leaves neither a partial target nor a temporary file."""

import pytest

from radview.io.atomic import atomic_write, write_bytes_atomically


def test_success_replaces_the_target(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    write_bytes_atomically(target, b"new")
    assert target.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_failure_keeps_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")
    with pytest.raises(OSError, match="disk full"), atomic_write(target) as handle:
        handle.write(b"half of the new")
        raise OSError(28, "disk full")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_unwritable_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        write_bytes_atomically(tmp_path / "missing" / "x.bin", b"data")
    assert list(tmp_path.iterdir()) == []
