"""SQL storage through SQLAlchemy Core: one schema for every stateful service, sqlite by default.

Every replica of every deployment opens the same database, so what one replica writes the others read (sqlite in
WAL mode on one node; a server database URL for multi-node clusters). Table definitions live with the services
that own them and register on `METADATA`; `Database` creates whatever is missing.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event

METADATA = sa.MetaData()


def default_database_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / 'stackserve.db'}"


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")  # readers never block the writer; replicas share the file
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


class Database:
    """A SQLAlchemy engine plus the schema (`METADATA`, or a separate one such as the span store's).
    Calls are blocking: services run them in worker threads."""

    _create_lock = threading.Lock()

    def __init__(self, url: str, metadata: sa.MetaData = METADATA):
        self.url = url
        kwargs: dict[str, Any] = {"future": True}
        if url.startswith("sqlite"):
            path = url.split("///", 1)[-1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        self.engine = sa.create_engine(url, **kwargs)
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        with self._create_lock:
            try:
                metadata.create_all(self.engine)
            except sa.exc.DatabaseError:  # another process created a table between our check and CREATE
                metadata.create_all(self.engine)

    def begin(self):
        """A transaction: `with db.begin() as conn: ...` commits on success, rolls back on error."""
        return self.engine.begin()

    def connect(self):
        return self.engine.connect()

    def dispose(self) -> None:
        self.engine.dispose()
