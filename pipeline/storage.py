"""Where jobs read and write: local paths and URLs (s3://, gs://, file://, anything fsspec knows).

Every location is a string. Local paths and `file://` URLs are files on this machine; anything
else goes through fsspec, which takes credentials from the environment the way each cloud
library does (for S3: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL, profiles).
Nothing here logs a location's credentials; `display` strips any user info from a URL.

Writes are whole or absent. Locally a file is written under a temporary name beside its target,
flushed to disk and renamed over it. Object stores have no rename that is atomic, but a single
PUT is: an object is either the old one or the new one, never a mix, so remote writes are one
PUT of the whole content. Completion markers are ordinary files written last by their callers.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, cast
from urllib.parse import urlsplit, urlunsplit

import fsspec

_SCHEME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def is_remote(location: str | os.PathLike) -> bool:
    """True for a URL that is not a local file (`s3://...`); False for paths and `file://` URLs."""
    text = str(location)
    return bool(_SCHEME_RE.match(text)) and not text.startswith("file://")


def local_path(location: str | os.PathLike) -> Path:
    """The local path of a local location (a path or a `file://` URL)."""
    if is_remote(location):
        raise ValueError(f"{display(location)} is not on this machine")
    text = str(location)
    return Path(text[len("file://"):] if text.startswith("file://") else text)


def display(location: str | os.PathLike) -> str:
    """The location as it may be shown: a URL without user name, password or query."""
    text = str(location)
    if not is_remote(text):
        return text
    parts = urlsplit(text)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def join(location: str | os.PathLike, *parts: str) -> str:
    """`location/part/...` for paths and URLs alike (parts must not start with '/')."""
    text = str(location)
    for part in parts:
        if part.startswith("/") or ".." in Path(part).parts:
            raise ValueError(f"{part!r} must be a relative path inside {display(text)}")
        text = text.rstrip("/") + "/" + part
    return text


def filesystem(location: str | os.PathLike) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec filesystem of a location, and the location's path in it."""
    if not is_remote(location):
        return fsspec.filesystem("file"), str(local_path(location).resolve())
    return fsspec.core.url_to_fs(str(location))


def exists(location: str | os.PathLike) -> bool:
    fs, path = filesystem(location)
    return bool(fs.exists(path))


def is_dir(location: str | os.PathLike) -> bool:
    fs, path = filesystem(location)
    return bool(fs.isdir(path))


def listdir(location: str | os.PathLike) -> list[str]:
    """Names (not paths) of what a folder holds; empty when it does not exist."""
    fs, path = filesystem(location)
    if not fs.exists(path):
        return []
    return sorted(entry.rstrip("/").rsplit("/", 1)[-1] for entry in fs.ls(path, detail=False))


def read_bytes(location: str | os.PathLike) -> bytes:
    fs, path = filesystem(location)
    # fsspec's open is unannotated (text or binary by mode); "rb" opens a binary file
    with cast(BinaryIO, fs.open(path, "rb")) as handle:
        return handle.read()


def read_text(location: str | os.PathLike, encoding: str = "utf-8") -> str:
    return read_bytes(location).decode(encoding)


def write_bytes(location: str | os.PathLike, data: bytes) -> None:
    """Write a whole file: readers see the old content or the new, never a part."""
    if not is_remote(location):
        target = local_path(location)
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex}.partial")
        try:
            with open(temporary, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, target)
        finally:
            temporary.unlink(missing_ok=True)
        return
    fs, path = filesystem(location)
    # one PUT (or one multipart upload, completed at close); "wb": a binary file (see read_bytes)
    with cast(BinaryIO, fs.open(path, "wb")) as handle:
        handle.write(data)


def write_text(location: str | os.PathLike, text: str, encoding: str = "utf-8") -> None:
    write_bytes(location, text.encode(encoding))


def remove(location: str | os.PathLike) -> None:
    """Delete a file if it is there."""
    fs, path = filesystem(location)
    if fs.exists(path):
        fs.rm(path)


def upload_file(source: Path, location: str | os.PathLike) -> None:
    """Copy a local file to a location, whole or not at all (see `write_bytes`)."""
    if not is_remote(location):
        write_bytes(location, Path(source).read_bytes())
        return
    fs, path = filesystem(location)
    fs.put_file(str(source), path)  # object stores publish the object when the upload completes


def upload_tree(source: Path, location: str | os.PathLike, skip: frozenset[str] = frozenset()) -> list[str]:
    """Copy every file under a local folder to the same relative places under `location`; a file
    whose name, or the name of a folder on its way, is in `skip` is left out. Returns the relative
    paths copied."""
    copied = []
    for file in sorted(p for p in Path(source).rglob("*") if p.is_file()):
        relative = file.relative_to(source).as_posix()
        if skip.intersection(file.relative_to(source).parts):
            continue
        upload_file(file, join(location, relative))
        copied.append(relative)
    return copied


def fetch(location: str | os.PathLike, target: Path) -> Path:
    """Copy a file or a folder at `location` to the local path `target` (replaced); returns it."""
    fs, path = filesystem(location)
    if target.exists():
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    target.parent.mkdir(parents=True, exist_ok=True)
    if fs.isdir(path):
        fs.get(path.rstrip("/") + "/", str(target), recursive=True)
    else:
        fs.get_file(path, str(target))
    return target


@contextlib.contextmanager
def local_copy(location: str | os.PathLike) -> Iterator[Path]:
    """A local path to read a location from: the path itself when local, else a temporary copy
    (with the same file name, so readers that look at the suffix see it) removed afterwards."""
    if not is_remote(location):
        yield local_path(location)
        return
    fs, path = filesystem(location)
    folder = Path(tempfile.mkdtemp(prefix="moss-input-"))
    try:
        yield fetch(location, folder / path.rstrip("/").rsplit("/", 1)[-1])
    finally:
        shutil.rmtree(folder, ignore_errors=True)


class KeyedFiles:
    """Files named by an alphanumeric key under one folder, `<root>/<folder>/<key[:2]>/<key><suffix>`,
    each written whole (`write_bytes`): a file that is present is a finished one.

    Other processes write here too, so lookups drop fsspec's cached listings first.
    """

    def __init__(self, root: str | os.PathLike, folder: str, suffix: str, kind: str) -> None:
        self.root = str(root).rstrip("/")
        self.folder = join(self.root, folder)
        self.suffix = suffix
        self.kind = kind  # what a file holds, for errors: "segment", "result"
        self.fs, self.base = filesystem(self.folder)

    def location(self, key: str) -> str:
        if not key or not key.isalnum():
            raise ValueError(f"{self.kind} key must be alphanumeric, got {key!r}")
        return join(self.folder, key[:2], key + self.suffix)

    def has(self, key: str) -> bool:
        location = self.location(key)
        fs, path = filesystem(location)
        fs.invalidate_cache(path.rsplit("/", 1)[0])
        return bool(fs.exists(path))

    def keys(self) -> set[str]:
        """Every stored key (one listing)."""
        self.fs.invalidate_cache(self.base)
        found = [str(path) for path in self.fs.glob(f"{self.base}/*/*{self.suffix}")]
        return {path.rsplit("/", 1)[-1].removesuffix(self.suffix) for path in found}

    def write(self, key: str, data: bytes) -> None:
        write_bytes(self.location(key), data)

    def read(self, key: str) -> bytes:
        return read_bytes(self.location(key))

    def remove(self, key: str) -> None:
        remove(self.location(key))
