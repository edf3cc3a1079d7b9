"""File bytes in the blob store, shared by the ingress and the Files service (deployments/vector_io/files.py).

Uploads and downloads never cross a DeploymentHandle as bytes: the ingress streams an upload into the blob store
(1 MiB pieces, counted against `vector_io.max_file_bytes`) and hands the Files service only the file's metadata
(`RegisterFileRequest`); a download asks the service for the file's `FileBlob` (which checks that it exists and
whose it is) and streams the bytes out of the store. Every replica reaches the same bytes through `storage.blob_url`
(a shared store on a multi-node cluster: `sql` or an object store).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from typing import IO

from serve.errors import InvalidRequestError, PayloadTooLargeError
from serve.storage.blobs import CHUNK_BYTES, BlobStore, Data, chunks_of

PURPOSES = {"assistants", "batch", "fine-tune", "vision", "user_data", "evals"}
SYSTEM_PURPOSES = {"batch_output"}  # files the server writes (batch results); not accepted as uploads


def blob_key(file_id: str) -> str:
    """Where a file's bytes live in the blob store (files/<id>: under the data directory, where they always were)."""
    return f"files/{file_id}"


def check_purpose(purpose: str, system: bool = False) -> None:
    """400 unless `purpose` may be uploaded (or, with `system`, written by the server itself)."""
    if purpose not in PURPOSES and not (system and purpose in SYSTEM_PURPOSES):
        raise InvalidRequestError(f"purpose must be one of {', '.join(sorted(PURPOSES))}", param="purpose")


def _capped(pieces: Iterator[bytes], max_bytes: int, counted: list[int]) -> Iterator[bytes]:
    for piece in pieces:
        counted[0] += len(piece)
        if counted[0] > max_bytes:  # raised inside the put: the store aborts it and keeps nothing
            raise PayloadTooLargeError(f"the file exceeds the limit of {max_bytes} bytes", param="file",
                                       code="file_too_large")
        yield piece


def put_file(blobs: BlobStore, key: str, data: Data, max_bytes: int) -> int:
    """Stream `data` (bytes, or an iterable of pieces) into the store under `key`; returns its size. Blocking.
    Larger than `max_bytes`: 413, and nothing is stored (the put stops at the first piece past the limit);
    empty: 400."""
    pieces = chunks_of(data)
    first = next(pieces, None)
    if first is None:
        raise InvalidRequestError("the file is empty", param="file")
    counted = [0]
    blobs.put(key, _capped(itertools.chain([first], pieces), max_bytes, counted))
    return counted[0]


def file_pieces(f: IO[bytes]) -> Iterator[bytes]:
    """A readable binary file in pieces of CHUNK_BYTES (an upload that Starlette spooled to a temporary file)."""
    while piece := f.read(CHUNK_BYTES):
        yield piece


async def store_upload(blobs: BlobStore, key: str, f: IO[bytes], max_bytes: int) -> int:
    """`put_file` of an uploaded file, in a worker thread (disk and SQL calls block)."""
    return await asyncio.to_thread(put_file, blobs, key, file_pieces(f), max_bytes)


async def open_blob(blobs: BlobStore, key: str) -> Iterator[bytes]:
    """The blob's pieces, opened now (a missing blob raises here, before a response starts); each later `next()`
    blocks, so hand the iterator to a StreamingResponse, which pulls it in a worker thread."""
    return await asyncio.to_thread(blobs.iter, key)
