"""The SQL a vector-store search costs, on both storage backends (no Ray): no write per search (last_active_at is
touched at most once per interval per replica) and the hits' file attributes in the one query that loads them."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa

import deployments.vector_io.tables  # noqa: F401  (registers the tables)
from deployments.vector_io.files import FileService
from deployments.vector_io.store import VectorStoreService
from deployments.vector_io.tables import vector_stores
from serve.protocol.vector_io import AttachFileRequest, CreateVectorStoreRequest, SearchRequest
from serve.storage import Database, LocalBlobStore
from tests.fake_embedding import MODEL, embed, model_info

TEXTS = {"bees.txt": "Honeybees dance the waggle dance to show where flowers are.",
         "lava.txt": "Lava flows slowly downhill from the volcano.",
         "tides.txt": "Tides rise and fall twice a day with the moon."}


@pytest.fixture
def db(database_url):
    database = Database(database_url)
    yield database
    database.dispose()


def _statements(db: Database) -> list[str]:
    seen: list[str] = []
    sa.event.listen(db.engine, "before_cursor_execute", lambda conn, cur, stmt, *a: seen.append(stmt))
    return seen


def test_search_sql(db, tmp_path):
    async def go():
        files = FileService(db, LocalBlobStore(tmp_path / "blobs"), max_bytes=1 << 20)
        stores = VectorStoreService(db, files, embed, {MODEL: model_info()}, MODEL, {"type": "flat"})
        store = (await stores.create_store(CreateVectorStoreRequest(name="s")))["id"]
        ids = {}
        for i, (name, text) in enumerate(TEXTS.items()):
            ids[name] = files.create(name, "assistants", text.encode())["id"]
            await stores.attach_file(store, AttachFileRequest(file_id=ids[name], attributes={"n": i}))
        while stores._tasks:
            await asyncio.gather(*list(stores._tasks))
        await stores.insert_chunks(store, ["The moon pulls the tides."], [{"document_id": "doc-moon"}], [None])

        def set_active(value: int) -> None:
            with db.begin() as c:
                c.execute(vector_stores.update().where(vector_stores.c.id == store).values(last_active_at=value))

        set_active(0)
        first = await stores.search(store, SearchRequest(query="waggle dance", search_mode="keyword"))
        assert first["data"][0]["file_id"] == ids["bees.txt"] and first["data"][0]["attributes"] == {"n": 0}
        assert (await stores.get_store(store))["last_active_at"] > 0  # the first search of a store touches it
        set_active(0)
        seen = _statements(db)
        for mode in ("vector", "keyword", "hybrid"):
            page = await stores.search(store, SearchRequest(query="moon tides", search_mode=mode))
            by_file = {d["file_id"]: d["attributes"] for d in page["data"]}
            assert by_file[ids["tides.txt"]] == {"n": 2} and by_file["doc-moon"] == {"document_id": "doc-moon"}
        assert not [s for s in seen if s.lstrip().upper().startswith(("UPDATE", "INSERT", "DELETE"))]
        assert len(seen) == 6  # per search: the store row, then the hit chunks joined with their files' attributes
        assert (await stores.get_store(store))["last_active_at"] == 0  # within the interval: not written again

        stores.touch_every_s = 0.0  # an interval that has passed: the next search writes it again
        await stores.search(store, SearchRequest(query="lava"))
        assert (await stores.get_store(store))["last_active_at"] > 0

    asyncio.run(go())
