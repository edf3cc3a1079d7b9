"""SQL storage through SQLAlchemy Core: one schema for every stateful service, sqlite by default, PostgreSQL by URL.

Every replica of every deployment opens the same database, so what one replica writes the others read (sqlite in
WAL mode on one node; PostgreSQL, `postgresql+psycopg://...`, for multi-node clusters). Table definitions live with
the services that own them and register on `METADATA`; `Database` creates whatever is missing.

Both backends must behave the same, so the types here refuse (400, on both) what only one of them would store:
strings longer than their column or holding NUL characters, and NaN/Infinity inside JSON.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.exc import DontWrapMixin

from serve.errors import InvalidRequestError
from serve.principal import DEFAULT_PRINCIPAL, current_principal

METADATA = sa.MetaData()
_SCHEMA_LOCK_KEY = 0x5374616B  # pg_advisory_xact_lock key: replicas creating the schema at once take turns


class UnstorableValueError(DontWrapMixin, InvalidRequestError):
    """A value the database cannot store (raised while binding parameters; SQLAlchemy passes it through)."""


class Str(sa.TypeDecorator):
    """A string column (bounded when `length` is given) that refuses what PostgreSQL refuses and sqlite would keep:
    values longer than the column and NUL characters. Compared values are only checked for NUL, so looking up an
    over-long id finds nothing (404), as it would anywhere."""

    impl = sa.String
    cache_ok = True

    def __init__(self, length: int | None = None):
        super().__init__(length)
        self.length = length

    def process_bind_param(self, value, dialect):
        if value is None:
            return value
        if "\x00" in value:
            raise UnstorableValueError("text must not contain NUL (\\u0000) characters")
        if self.length and len(value) > self.length:
            raise UnstorableValueError(f"a text value of {len(value)} characters exceeds the limit of "
                                       f"{self.length}")
        return value

    def coerce_compared_value(self, op, value):
        return Str()


def owner_column() -> sa.Column:
    """The principal who created the row (serve/principal.py); rows from before access control belong to `default`."""
    return sa.Column("owner", Str(128), nullable=False, server_default=DEFAULT_PRINCIPAL, index=True)


def owner() -> str:
    """The owner to record on a new row: the calling principal."""
    p = current_principal()
    return p.name if p is not None else DEFAULT_PRINCIPAL


def owned(table: sa.Table) -> Any:
    """WHERE clause: the rows of `table` the calling principal may see (all of them in internal work, or when
    access control is off: then no principal travels with calls)."""
    p = current_principal()
    if p is None or "owner" not in table.c:
        return sa.true()
    return table.c.owner == p.name


def _json_dumps(value: Any) -> str:
    try:
        return json.dumps(value, allow_nan=False)
    except ValueError:
        raise UnstorableValueError("JSON values must be finite numbers (NaN and Infinity are not JSON)") from None


def default_database_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / 'stackserve.db'}"


def _driver_url(url: str) -> str:
    """`postgresql://` (libpq style) means the psycopg 3 driver we ship, not SQLAlchemy's default psycopg2."""
    for scheme in ("postgresql://", "postgres://"):
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url[len(scheme):]
    return url


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA busy_timeout=30000")
    # readers never block the writer; replicas share the file. Switching a new file to WAL while other processes
    # open it can answer "database is locked" at once (no busy wait for that lock): retry for a while
    for attempt in range(300):
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or attempt == 299:
                raise
            time.sleep(0.1)
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


class Database:
    """A SQLAlchemy engine plus the schema (`METADATA`, or a separate one such as the span store's).
    Calls are blocking: services run them in worker threads."""

    _create_lock = threading.Lock()

    def __init__(self, url: str, metadata: sa.MetaData = METADATA):
        self.url = url = _driver_url(url)
        kwargs: dict[str, Any] = {"future": True, "json_serializer": _json_dumps}
        if url.startswith("sqlite"):
            path = url.split("///", 1)[-1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        else:
            kwargs["pool_pre_ping"] = True  # a restarted database server leaves dead pooled connections
        self.engine = sa.create_engine(url, **kwargs)
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
        with self._create_lock:
            self._create_schema(metadata)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def _create_schema(self, metadata: sa.MetaData) -> None:
        """Create missing tables. Replicas of several deployments start together and each does this, and a table
        created by another process between the check and CREATE TABLE fails the statement: so they take turns,
        under an advisory lock on PostgreSQL (DDL is transactional there) and a write lock on sqlite."""
        if self.dialect == "postgresql":
            with self.engine.begin() as conn:
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK_KEY})
                metadata.create_all(conn)
                _add_missing_columns(conn, metadata)
        elif self.dialect == "sqlite":
            with self.engine.connect() as conn:
                conn.execution_options(isolation_level="AUTOCOMMIT")  # the driver leaves BEGIN/COMMIT to us
                conn.exec_driver_sql("BEGIN IMMEDIATE")  # waits (busy_timeout) while another process holds it
                try:
                    metadata.create_all(conn)
                    _add_missing_columns(conn, metadata)
                    conn.exec_driver_sql("COMMIT")
                except BaseException:
                    conn.exec_driver_sql("ROLLBACK")
                    raise
        else:
            metadata.create_all(self.engine)
            with self.engine.begin() as conn:
                _add_missing_columns(conn, metadata)

    def create_tables(self, metadata: sa.MetaData) -> None:
        """Create the missing tables of another schema on this database (a store whose tables are not on
        `METADATA`, such as the SQL blob store's), taking turns with other replicas as the constructor does."""
        with self._create_lock:
            self._create_schema(metadata)

    def row_or_raise(self, table: sa.Table, row_id: Any, missing: Exception) -> Any:
        """The row of `table` whose `id` is `row_id`; raises `missing` (the caller's 404) when there is none or it
        belongs to another principal."""
        with self.engine.connect() as c:
            row = c.execute(sa.select(table).where(table.c.id == row_id, owned(table))).first()
        if row is None:
            raise missing
        return row

    def begin(self):
        """A transaction: `with db.begin() as conn: ...` commits on success, rolls back on error."""
        return self.engine.begin()

    def connect(self):
        return self.engine.connect()

    def ping(self) -> None:
        """Raises unless the database answers a query (a deployment's health check)."""
        with self.connect() as c:
            c.execute(sa.text("SELECT 1"))

    def dispose(self) -> None:
        self.engine.dispose()


def _add_missing_columns(conn: sa.Connection, metadata: sa.MetaData) -> None:
    """Columns added to a table since a database was created (each has a default or is nullable): ALTER them in."""
    inspector = sa.inspect(conn)
    for table in metadata.sorted_tables:
        have = {c["name"] for c in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name not in have:
                ddl = sa.schema.CreateColumn(column).compile(dialect=conn.dialect)
                conn.exec_driver_sql(f"ALTER TABLE {table.name} ADD COLUMN {ddl}")


def upsert(conn: sa.Connection, table: sa.Table, values: dict[str, Any], key: list[str],
           update: list[str] | None = None) -> None:
    """Insert `values`, or set the `update` columns (default: all but `key`) of the row with the same `key`, in one
    atomic statement: two replicas saving the same row at once must not fail on the unique key."""
    update = update or [c for c in values if c not in key]
    name = conn.dialect.name
    if name in ("postgresql", "sqlite"):
        if name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        stmt = insert(table).values(values)
        conn.execute(stmt.on_conflict_do_update(index_elements=key, set_={c: stmt.excluded[c] for c in update}))
        return
    where = [table.c[k] == values[k] for k in key]
    if conn.execute(table.update().where(*where).values({c: values[c] for c in update})).rowcount == 0:
        conn.execute(table.insert().values(values))
