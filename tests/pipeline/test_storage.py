"""One storage layer for local paths and object storage: whole-file writes, reads, listings and
local copies, against the local disk and a real S3 server on localhost (tests/s3server.py)."""

from pathlib import Path

import pytest

from pipeline import storage
from tests.s3server import s3_server


@pytest.fixture(scope="module")
def s3():
    with s3_server("books") as env:
        yield env


def test_locations_are_told_apart_and_shown_without_credentials():
    assert not storage.is_remote("/tmp/book") and not storage.is_remote("relative/book")
    assert not storage.is_remote("file:///tmp/book") and storage.local_path("file:///tmp/book") == Path("/tmp/book")
    assert storage.is_remote("s3://bucket/book") and storage.is_remote("gs://bucket/book")
    assert storage.display("s3://key:secret@bucket/book?token=x") == "s3://bucket/book"
    assert storage.join("s3://bucket/book/", "index", "a.parquet") == "s3://bucket/book/index/a.parquet"
    with pytest.raises(ValueError, match="relative"):
        storage.join("s3://bucket/book", "../other")
    with pytest.raises(ValueError, match="not on this machine"):
        storage.local_path("s3://bucket/book")


def test_local_writes_are_whole_and_leave_no_temporary_file(tmp_path, monkeypatch):
    target = tmp_path / "index" / "table.parquet"
    storage.write_bytes(target, b"old")
    assert target.read_bytes() == b"old"

    def fail_fsync(fd):  # a crash in the middle of writing the new content
        raise OSError("disk went away")

    monkeypatch.setattr(storage.os, "fsync", fail_fsync)
    with pytest.raises(OSError, match="disk went away"):
        storage.write_bytes(target, b"new content")
    assert target.read_bytes() == b"old" and [p.name for p in target.parent.iterdir()] == ["table.parquet"]


@pytest.mark.parametrize("where", ["local", "s3"])
def test_the_same_calls_work_on_disk_and_on_s3(where, tmp_path, request):
    if where == "s3":
        request.getfixturevalue("s3")
        root = "s3://books/run1"
    else:
        root = str(tmp_path / "run1")
    storage.write_text(storage.join(root, "config.yaml"), "job: narrate\n")
    storage.write_bytes(storage.join(root, "index", "segments.parquet"), b"\x00\x01")
    assert storage.exists(storage.join(root, "config.yaml")) and not storage.exists(storage.join(root, "nope"))
    assert storage.read_text(storage.join(root, "config.yaml")) == "job: narrate\n"
    assert storage.listdir(root) == ["config.yaml", "index"] and storage.is_dir(storage.join(root, "index"))
    with storage.local_copy(storage.join(root, "index", "segments.parquet")) as local:
        assert local.name == "segments.parquet" and local.read_bytes() == b"\x00\x01"
    storage.remove(storage.join(root, "config.yaml"))
    storage.remove(storage.join(root, "config.yaml"))  # already gone: fine
    assert storage.listdir(root) == ["index"] and storage.listdir(storage.join(root, "missing")) == []


def test_a_local_folder_is_uploaded_to_s3_file_by_file(s3, tmp_path):
    source = tmp_path / "out"
    (source / "chapters").mkdir(parents=True)
    (source / "chapters" / "c1.flac").write_bytes(b"flac")
    (source / "book.m4b").write_bytes(b"m4b")
    (source / ".partial").write_bytes(b"skip me")
    copied = storage.upload_tree(source, "s3://books/upload", skip=frozenset({".partial"}))
    assert copied == ["book.m4b", "chapters/c1.flac"]
    assert storage.read_bytes("s3://books/upload/chapters/c1.flac") == b"flac"
    with storage.local_copy("s3://books/upload/chapters") as folder:
        assert sorted(p.name for p in folder.iterdir()) == ["c1.flac"]
