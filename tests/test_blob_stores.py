"""The blob store interface (serve/storage/blobs.py) on every backend: a local directory, the SQL database on sqlite
and on PostgreSQL, and fsspec (on a `memory://` URL: the s3:// and gs:// backends are the same code over another
fsspec filesystem, and need a bucket this box has not got)."""

from __future__ import annotations

import tracemalloc
import uuid

import pytest
import sqlalchemy as sa

from serve.storage import Database, LocalBlobStore, open_blob_store
from serve.storage.blob_fsspec import FsspecBlobStore
from serve.storage.blob_sql import SqlBlobStore, blob_chunks, blob_objects
from serve.storage.blobs import check_key

MiB = 1 << 20


@pytest.fixture(params=["local", "sql-sqlite", "sql-postgresql", "fsspec"])
def blobs(request, tmp_path):
    if request.param == "local":
        yield open_blob_store(str(tmp_path / "blobs"))
    elif request.param == "fsspec":
        yield open_blob_store(f"memory://stackserve-test-{uuid.uuid4().hex}")
    elif request.param == "sql-sqlite":
        db = Database(f"sqlite:///{tmp_path / 'state.db'}")
        yield open_blob_store("sql", db)
        db.dispose()
    else:
        factory = request.getfixturevalue("postgres_databases")
        url = factory.create()
        db = Database(url)
        yield open_blob_store("sql", db)
        db.dispose()
        factory.drop(url)


def test_urls_pick_backends(tmp_path):
    assert isinstance(open_blob_store(str(tmp_path / "a")), LocalBlobStore)
    assert isinstance(open_blob_store(f"file://{tmp_path / 'b'}"), LocalBlobStore)
    assert (tmp_path / "b").is_dir()
    assert isinstance(open_blob_store(f"sqlite:///{tmp_path / 'blobs.db'}"), SqlBlobStore)
    assert isinstance(open_blob_store("memory://somewhere"), FsspecBlobStore)
    with pytest.raises(ValueError):
        open_blob_store("sql")  # names the state database, which the caller must pass


def test_put_get_iter_list_delete(blobs):
    blobs.put("files/file-a", b"alpha")
    blobs.put("datasets/d1/part-1.parquet", [b"par", b"", b"t one"])
    blobs.put("datasets/d1/part-2.parquet", iter([b"part two"]))
    blobs.put("datasets/d10/part-1.parquet", b"other dataset")
    blobs.put("files/empty", b"")
    assert blobs.get("files/file-a") == b"alpha"
    assert b"".join(blobs.iter("datasets/d1/part-1.parquet")) == b"part one"
    assert blobs.get("files/empty") == b"" and blobs.exists("files/empty")
    assert blobs.list("datasets/d1/") == ["datasets/d1/part-1.parquet", "datasets/d1/part-2.parquet"]
    assert blobs.list("datasets/d1") == ["datasets/d1/part-1.parquet", "datasets/d1/part-2.parquet",
                                         "datasets/d10/part-1.parquet"]
    assert blobs.list("files/") == ["files/empty", "files/file-a"]
    assert blobs.list("nothing/") == []
    blobs.put("files/file-a", b"replaced")  # a put replaces
    assert blobs.get("files/file-a") == b"replaced"
    blobs.delete("files/file-a")
    blobs.delete("files/file-a")  # a missing key is no error
    assert not blobs.exists("files/file-a")
    with pytest.raises(FileNotFoundError):
        blobs.get("files/file-a")
    with pytest.raises(FileNotFoundError):
        blobs.iter("files/never")
    blobs.delete_prefix("datasets/d1/")
    assert blobs.list("datasets/") == ["datasets/d10/part-1.parquet"]
    blobs.ping()


def test_case_and_wildcards_in_prefixes(blobs):
    blobs.put("a/Upper", b"1")
    blobs.put("a/upper", b"2")
    blobs.put("a/x%_y", b"3")
    blobs.put("a/xzzy", b"4")
    assert blobs.list("a/U") == ["a/Upper"]  # sqlite's LIKE would ignore case
    assert blobs.list("a/x%_") == ["a/x%_y"]  # and treat % and _ as wildcards


@pytest.mark.parametrize("key", ["", "/abs", "a/../b", "..", "a//b", "a/", ".hidden", "a/.tmp-x", "a\\b", "a\x00"])
def test_bad_keys_are_refused(blobs, key):
    with pytest.raises(ValueError):
        check_key(key)
    with pytest.raises(ValueError):
        blobs.put(key, b"x")
    with pytest.raises(ValueError):
        blobs.exists(key)


def test_a_failed_put_leaves_nothing(blobs, tmp_path):
    blobs.put("files/kept", b"old bytes")

    def failing():
        yield b"x" * (3 * MiB)  # more than one SQL chunk is written before the failure
        yield b"y" * MiB
        raise OSError("the upload broke")

    for key in ("files/new", "files/kept"):
        with pytest.raises(OSError, match="upload broke"):
            blobs.put(key, failing())
    assert not blobs.exists("files/new") and blobs.list("files/") == ["files/kept"]
    assert blobs.get("files/kept") == b"old bytes"  # a failed replace keeps the old blob
    if isinstance(blobs, SqlBlobStore):  # and no partial rows
        with blobs.db.connect() as c:
            assert c.execute(sa.select(sa.func.count()).select_from(blob_chunks)).scalar() == 1
            assert c.execute(sa.select(sa.func.count()).select_from(blob_objects)).scalar() == 1
    if isinstance(blobs, LocalBlobStore):  # and no temporary files
        assert [p.name for p in (tmp_path / "blobs" / "files").iterdir()] == ["kept"]
    if isinstance(blobs, FsspecBlobStore):
        assert [p.rsplit("/", 1)[-1] for p in blobs.fs.find(blobs.root)] == ["kept"]


def test_replaced_and_deleted_blobs_leave_no_rows(blobs):
    if not isinstance(blobs, SqlBlobStore):
        pytest.skip("SQL rows only")
    blobs.put("k", b"a" * (2 * MiB + 5))
    blobs.put("k", b"b" * (MiB + 1))
    with blobs.db.connect() as c:
        assert c.execute(sa.select(sa.func.count()).select_from(blob_chunks)).scalar() == 2
    blobs.delete("k")
    with blobs.db.connect() as c:
        assert c.execute(sa.select(sa.func.count()).select_from(blob_chunks)).scalar() == 0


def test_a_large_blob_streams_with_bounded_memory(blobs):
    """20 MiB in and out of the store in 256 KiB pieces: Python's peak allocation stays a few chunks, not the
    blob (the SQL backend stores and reads 1 MiB rows, one per query)."""
    size, piece = 20 * MiB, 256 * 1024

    def source():
        for i in range(size // piece):
            yield bytes([i % 251]) * piece

    tracemalloc.start()
    try:
        blobs.put("big/blob", source())
        total = 0
        for chunk in blobs.iter("big/blob"):
            assert len(chunk) <= MiB
            total += len(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == size
    if not isinstance(blobs, FsspecBlobStore):  # memory:// keeps the blob in this process's memory by design
        assert peak < 8 * MiB, f"peak {peak / MiB:.1f} MiB for a {size // MiB} MiB blob"


def test_services_keep_their_bytes_in_the_store(blobs, tmp_path):
    """Files and dataset parts go through whichever store is configured; deleting them removes the bytes."""
    import deployments.datasets.tables  # noqa: F401  (register the tables)
    import deployments.vector_io.tables  # noqa: F401
    from deployments.datasets.store import DatasetService
    from deployments.vector_io.files import FileService
    from serve.protocol.datasets import AppendRowsRequest, RegisterDatasetRequest

    db = blobs.db if isinstance(blobs, SqlBlobStore) else Database(f"sqlite:///{tmp_path / 'state.db'}")
    files = FileService(db, blobs, max_bytes=MiB)
    f = files.create("a.txt", "assistants", b"hello")
    assert blobs.list("files/") == [f"files/{f['id']}"] and files.content(f["id"]) == ("a.txt", b"hello")
    files.delete(f["id"])
    assert blobs.list("files/") == []
    datasets = DatasetService(db, blobs)
    datasets.register(RegisterDatasetRequest(purpose="eval/question-answer", dataset_id="qa",
                                             source={"type": "rows", "rows": [{"q": "1+1", "a": "2"}]}))
    datasets.append_rows("qa", AppendRowsRequest(rows=[{"q": "2+2", "a": "4"}]))
    assert [r["a"] for r in datasets.iterrows("qa", 0, None)["data"]] == ["2", "4"]
    assert len(blobs.list("datasets/")) == 2
    datasets.check_storage()
    datasets.unregister("qa")
    assert blobs.list("datasets/") == []


def test_the_default_is_the_data_directory(tmp_path, monkeypatch):
    """Existing installs keep their bytes where they were: files/<id> and datasets/... under data_dir."""
    from serve.config import parse_config

    monkeypatch.delenv("STACKSERVE_BLOB_URL", raising=False)
    monkeypatch.delenv("STACKSERVE_DATA_DIR", raising=False)
    cfg = parse_config({"data_dir": str(tmp_path), "embedding_models": [{"model_id": "e", "source": "/x"}]})
    assert cfg.blob_url() == str(tmp_path)
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "file-old").write_bytes(b"uploaded before")
    assert open_blob_store(cfg.blob_url()).get("files/file-old") == b"uploaded before"
    cfg = parse_config({"storage": {"blob_url": "sql"}, "embedding_models": [{"model_id": "e", "source": "/x"}]})
    assert cfg.blob_url() == "sql"
    monkeypatch.setenv("STACKSERVE_BLOB_URL", "s3://bucket/stackserve")
    assert cfg.blob_url() == "s3://bucket/stackserve"


def test_put_file_streams_counts_and_caps(blobs, tmp_path):
    """serve/file_blobs.py put_file: the size is counted as the pieces go by; one byte past the limit aborts the put
    (413) with nothing stored, not even a temporary; an empty file is refused before anything is written."""
    from serve.errors import InvalidRequestError, PayloadTooLargeError
    from serve.file_blobs import put_file

    limit = 2 * MiB + 7
    assert put_file(blobs, "files/exact", (b"a" * 1000 for _ in range(limit // 1000)), limit) == limit // 1000 * 1000
    assert put_file(blobs, "files/limit", [b"b" * (limit - 7), b"c" * 7], limit) == limit
    with pytest.raises(PayloadTooLargeError) as over:
        put_file(blobs, "files/over", [b"d" * MiB, b"d" * MiB, b"d" * 8], limit)
    assert over.value.status_code == 413 and over.value.code == "file_too_large"
    with pytest.raises(InvalidRequestError, match="empty"):
        put_file(blobs, "files/empty", iter([b"", b""]), limit)
    assert blobs.list("files/") == ["files/exact", "files/limit"]
    assert blobs.get("files/limit") == b"b" * (limit - 7) + b"c" * 7
    if isinstance(blobs, LocalBlobStore):
        assert sorted(p.name for p in (tmp_path / "blobs" / "files").iterdir()) == ["exact", "limit"]
    if isinstance(blobs, SqlBlobStore):
        with blobs.db.connect() as c:  # the aborted put's 2 MiB of chunk rows were rolled back
            assert c.execute(sa.select(sa.func.count()).select_from(blob_chunks)).scalar() == 2 + 3


def test_a_reader_never_sees_half_a_blob(blobs):
    """While a put streams (here: paused after 3 MiB), readers see the old blob or none, never the new part."""
    blobs.put("files/replaced", b"old")
    seen = {}

    def source(key):
        yield b"n" * (3 * MiB)
        seen[key] = (blobs.exists(key), blobs.get(key) if blobs.exists(key) else None, blobs.list("files/"))
        yield b"n" * MiB

    blobs.put("files/new", source("files/new"))
    blobs.put("files/replaced", source("files/replaced"))
    assert seen["files/new"] == (False, None, ["files/replaced"])
    assert seen["files/replaced"] == (True, b"old", ["files/new", "files/replaced"])
    assert blobs.get("files/new") == blobs.get("files/replaced") == b"n" * (4 * MiB)


def test_an_upload_streams_from_its_spool_file_into_the_store(blobs):
    """The ingress's path (serve/file_blobs.py store_upload / open_blob): an upload spooled to a temporary file goes
    into the store in 1 MiB pieces and comes back out the same, with Python's peak allocation a few pieces."""
    import asyncio
    import hashlib
    import tempfile

    from serve.file_blobs import open_blob, store_upload

    size = 12 * MiB + 123
    with tempfile.TemporaryFile() as spool:
        digest = hashlib.sha256()
        for i in range(size // MiB + 1):
            piece = bytes([i % 251]) * min(MiB, size - i * MiB)
            spool.write(piece)
            digest.update(piece)
        spool.seek(0)
        tracemalloc.start()
        try:
            assert asyncio.run(store_upload(blobs, "files/up", spool, size)) == size
            back = hashlib.sha256()
            for chunk in asyncio.run(open_blob(blobs, "files/up")):
                back.update(chunk)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert back.hexdigest() == digest.hexdigest()
    if not isinstance(blobs, FsspecBlobStore):
        assert peak < 8 * MiB, f"peak {peak / MiB:.1f} MiB for a {size // MiB} MiB upload"
    with pytest.raises(FileNotFoundError):
        asyncio.run(open_blob(blobs, "files/missing"))  # raised before a response would start


def test_files_service_registers_uploads_the_ingress_stored(blobs, tmp_path):
    """An upload's row points at bytes the ingress stored; a row is never made for bytes that are not there."""
    import deployments.vector_io.tables  # noqa: F401
    from deployments.vector_io.files import FileService
    from serve.errors import InvalidRequestError
    from serve.file_blobs import blob_key
    from serve.protocol.openai_files import RegisterFileRequest

    db = blobs.db if isinstance(blobs, SqlBlobStore) else Database(f"sqlite:///{tmp_path / 'state.db'}")
    files = FileService(db, blobs, max_bytes=MiB)
    blobs.put(blob_key("file-abc123"), [b"streamed ", b"bytes"])
    f = files.register(RegisterFileRequest(file_id="file-abc123", filename="../x.txt", purpose="user_data", bytes=14))
    assert (f["id"], f["bytes"], f["filename"]) == ("file-abc123", 14, ".._x.txt")
    blob = files.blob("file-abc123")
    assert (blob.blob_key, blob.bytes) == ("files/file-abc123", 14) and blobs.get(blob.blob_key) == b"streamed bytes"
    with pytest.raises(InvalidRequestError, match="not in the blob store"):
        files.register(RegisterFileRequest(file_id="file-nobytes", filename="a", purpose="user_data", bytes=1))
    with pytest.raises(InvalidRequestError, match="purpose"):
        files.register(RegisterFileRequest(file_id="file-abc123", filename="a", purpose="batch_output", bytes=1))
    out = files.create("out.jsonl", "batch_output", (f"{i}\n".encode() for i in range(3)), system=True)  # streamed
    assert files.content(out["id"]) == ("out.jsonl", b"0\n1\n2\n") and out["bytes"] == 6
