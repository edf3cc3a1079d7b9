"""Blobs in an object store through fsspec: `s3://bucket/prefix` (needs s3fs), `gs://...` (gcsfs), `memory://...`
and any other fsspec URL. Credentials come from the environment, as each fsspec backend reads them
(AWS_ACCESS_KEY_ID / AWS_PROFILE, GOOGLE_APPLICATION_CREDENTIALS, ...).

A put streams into a temporary key beside the target and then moves it into place: object stores make an object
visible only once its upload completes, so a reader sees the whole blob or none; a failed put removes the
temporary key.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

from serve.storage.blobs import CHUNK_BYTES, BlobStore, Data, check_key, chunks_of


class FsspecBlobStore(BlobStore):
    def __init__(self, url: str):
        import fsspec

        self.url = url
        self.fs, root = fsspec.core.url_to_fs(url)
        self.root = root.rstrip("/")
        self.fs.makedirs(self.root, exist_ok=True)

    def __repr__(self) -> str:
        return f"FsspecBlobStore({self.url!r})"

    def _path(self, key: str) -> str:
        return f"{self.root}/{check_key(key)}"

    def put(self, key: str, data: Data) -> None:
        path = self._path(key)
        folder, _, name = path.rpartition("/")
        tmp = f"{folder}/.tmp-{uuid.uuid4().hex}-{name}"
        try:
            with self.fs.open(tmp, "wb") as f:
                for piece in chunks_of(data):
                    f.write(piece)
            self.fs.mv(tmp, path)
        finally:
            if self.fs.exists(tmp):
                self.fs.rm(tmp)

    def iter(self, key: str) -> Iterator[bytes]:
        path = self._path(key)
        if not self.fs.isfile(path):
            raise FileNotFoundError(f"no blob {key!r}")
        return self._chunks(path)

    def _chunks(self, path: str) -> Iterator[bytes]:
        with self.fs.open(path, "rb") as f:
            while piece := f.read(CHUNK_BYTES):
                yield piece

    def delete(self, key: str) -> None:
        path = self._path(key)
        if self.fs.exists(path):
            self.fs.rm(path)

    def exists(self, key: str) -> bool:
        return self.fs.isfile(self._path(key))

    def list(self, prefix: str = "") -> list[str]:
        folder = prefix.rpartition("/")[0]
        base = f"{self.root}/{check_key(folder)}" if folder else self.root
        if not self.fs.isdir(base):
            return []
        keys = (p.removeprefix(self.root.lstrip("/")).lstrip("/") for p in
                (q.lstrip("/") for q in self.fs.find(base)))
        return sorted(k for k in keys if k.startswith(prefix) and not any(s.startswith(".") for s in k.split("/")))
