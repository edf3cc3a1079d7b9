"""The blob store: every byte the graph keeps outside SQL rows (uploaded files, batch input/output files, dataset
Parquet parts) goes through this one interface. Backends, chosen by URL (serve/storage/blob_url.py): a local
directory (here), the SQL database (blob_sql.py) and fsspec object stores (blob_fsspec.py).

Keys are "/"-separated names (`files/<id>`, `datasets/<storage>/part-...`). Every backend makes a put atomic: a
reader sees the whole blob or none, and a put whose data fails part way leaves nothing behind. Bytes travel as
iterators of chunks, so a 100 MiB file is never held whole inside a store.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from pathlib import Path

CHUNK_BYTES = 1 << 20  # reads are yielded, and SQL rows stored, in pieces of this size

Data = bytes | Iterable[bytes]


def check_key(key: str) -> str:
    """`key` if it is a relative "/"-separated name; ValueError otherwise (empty, absolute, "..", empty or
    dot-leading segments: names starting with "." are the stores' own temporaries)."""
    parts = key.split("/") if isinstance(key, str) else [""]
    if not key or "\\" in key or "\x00" in key or any(not p or p.startswith(".") for p in parts):
        raise ValueError(f"invalid blob key {key!r}")
    return key


def chunks_of(data: Data) -> Iterator[bytes]:
    """The pieces of `data` (bytes, or an iterable of bytes pieces), each non-empty."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        data = [bytes(data)]
    for piece in data:
        if piece:
            yield bytes(piece)


class BlobStore(ABC):
    """Bytes by key, shared by every replica that opens the same URL."""

    @abstractmethod
    def put(self, key: str, data: Data) -> None:
        """Store `data` (bytes, or an iterable of bytes chunks) under `key`, replacing any blob there, atomically."""

    @abstractmethod
    def iter(self, key: str) -> Iterator[bytes]:
        """The blob's bytes in chunks; FileNotFoundError when there is none."""

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove the blob's bytes; a missing key is no error."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def list(self, prefix: str = "") -> list[str]:
        """Every key that starts with `prefix`, sorted."""

    def ping(self, namespace: str = "health") -> None:
        """Raises unless a blob can be written, read and deleted under `namespace` (a deployment's health check:
        the datasets service probes `datasets/`, where a vanished volume or bucket shows)."""
        key = f"{check_key(namespace)}/health-probe-{uuid.uuid4().hex}"
        try:
            self.put(key, b"ok")
            if self.get(key) != b"ok":
                raise RuntimeError(f"the blob store {self!r} returned other bytes than it was given")
        finally:
            self.delete(key)

    def get(self, key: str) -> bytes:
        return b"".join(self.iter(key))

    def delete_prefix(self, prefix: str) -> None:
        for key in self.list(prefix):
            self.delete(key)


class LocalBlobStore(BlobStore):
    """A directory on local (or network-mounted) disk: a key is a relative path under `root`."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def __repr__(self) -> str:
        return f"LocalBlobStore({str(self.root)!r})"

    def _path(self, key: str) -> Path:
        return self.root / check_key(key)

    def put(self, key: str, data: Data) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                for piece in chunks_of(data):
                    f.write(piece)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)  # a reader sees the whole blob or none
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def iter(self, key: str) -> Iterator[bytes]:
        f = self._path(key).open("rb")  # raises FileNotFoundError now, not at the first next()
        return _read_chunks(f)

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str = "") -> list[str]:
        folder, _, _ = prefix.rpartition("/")
        base = self.root / folder if folder else self.root
        if folder:
            check_key(folder)
        if not base.is_dir():
            return []
        keys = []
        for dirpath, dirnames, filenames in os.walk(base):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            rel = Path(dirpath).relative_to(self.root).as_posix()
            keys.extend(k for k in (f"{rel}/{n}" if rel != "." else n for n in filenames if not n.startswith("."))
                        if k.startswith(prefix))
        return sorted(keys)

    def delete_prefix(self, prefix: str) -> None:
        super().delete_prefix(prefix)
        folder = prefix.rpartition("/")[0]
        if folder:  # a dataset's folder goes with its parts
            try:
                self._path(folder).rmdir()
            except OSError:
                pass

    def ping(self, namespace: str = "health") -> None:
        if not self.root.is_dir():
            raise RuntimeError(f"the blob directory {self.root} is missing")
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise RuntimeError(f"the blob directory {self.root} is not writable")
        super().ping(namespace)


def _read_chunks(f) -> Iterator[bytes]:
    with f:
        while piece := f.read(CHUNK_BYTES):
            yield piece
