"""A throwaway PostgreSQL server for tests: initdb in a temp directory, pg_ctl on a free loopback port.

initdb refuses to run as root, so as root the server runs as the `postgres` user (`runuser`); as anyone else it
runs as that user. `stop()` stops only this server (pg_ctl on its own data directory) and removes the directory.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path


def find_bindir() -> Path | None:
    """Where initdb and pg_ctl live: Debian keeps them in /usr/lib/postgresql/<major>/bin, off the PATH."""
    for initdb in sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_major, reverse=True):
        return Path(initdb).parent
    found = shutil.which("initdb")
    return Path(found).parent if found and shutil.which("pg_ctl") else None


def _major(path: str) -> int:
    part = Path(path).parent.parent.name
    return int(part) if part.isdigit() else 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    def __init__(self, bindir: Path):
        self.bindir = bindir
        self.datadir: Path | None = None
        self.port = 0
        as_root = os.geteuid() == 0
        if as_root and not shutil.which("runuser"):
            raise RuntimeError("running as root needs `runuser` to start PostgreSQL as the postgres user")
        self._prefix = ["runuser", "-u", "postgres", "--"] if as_root else []
        self.user = "postgres" if as_root else os.environ.get("USER") or "postgres"

    def _run(self, *args: str, timeout: float = 120) -> None:
        out = subprocess.run([*self._prefix, *args], capture_output=True, text=True, timeout=timeout)
        if out.returncode != 0:
            log = (self.datadir / "server.log") if self.datadir else None
            tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
            raise RuntimeError(f"{Path(args[0]).name} failed ({out.returncode}): {out.stderr.strip()}\n{tail}")

    def start(self) -> str:
        """initdb + start; returns the SQLAlchemy URL of the `postgres` database."""
        self.datadir = Path(tempfile.mkdtemp(prefix="stackserve-pg-"))
        if self._prefix:
            shutil.chown(self.datadir, "postgres", "postgres")
        self._run(str(self.bindir / "initdb"), "-D", str(self.datadir), "-U", self.user, "-A", "trust",
                  "-E", "UTF8", "--locale=C", "--no-sync")
        # durability off: a test server's data is thrown away; the socket lives in the data directory
        opts = (f"-p {{port}} -k {self.datadir} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        for attempt in range(3):  # the free port can be taken between probing and binding
            self.port = _free_port()
            try:
                self._run(str(self.bindir / "pg_ctl"), "start", "-D", str(self.datadir), "-w", "-t", "60",
                          "-l", str(self.datadir / "server.log"), "-o", opts.format(port=self.port))
                break
            except RuntimeError:
                if attempt == 2:
                    raise
        return self.url("postgres")

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{database}"

    def stop(self) -> None:
        if self.datadir is None:
            return
        try:
            if (self.datadir / "postmaster.pid").exists():
                self._run(str(self.bindir / "pg_ctl"), "stop", "-D", str(self.datadir), "-m", "fast", "-w",
                          "-t", "60")
        finally:
            shutil.rmtree(self.datadir, ignore_errors=True)
            self.datadir = None


def unavailable(reason: str) -> None:
    """Skip a PostgreSQL test with `reason`; under CI (`CI` set) fail instead: there the backend must be tested."""
    import pytest

    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set, so the PostgreSQL tests must run)", pytrace=False)
    pytest.skip(reason)


def start_for_tests() -> PostgresServer:
    """A started server, or skip/fail (see `unavailable`) saying what is missing."""
    bindir = find_bindir()
    if bindir is None:
        unavailable("PostgreSQL is not installed: `make install` adds it when run as root with apt-get")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        unavailable("psycopg is not installed: pip install -e '.[test]'")
    server = PostgresServer(bindir)
    try:
        server.start()
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
        server.stop()
        unavailable(f"PostgreSQL could not be started: {e}")
    return server


class DatabaseFactory:
    """Fresh, empty databases on one server, one per test, dropped afterwards."""

    def __init__(self, server: PostgresServer):
        import sqlalchemy as sa

        self.server = server
        self.admin = sa.create_engine(server.url("postgres"), isolation_level="AUTOCOMMIT")
        self.count = 0

    def create(self) -> str:
        import sqlalchemy as sa

        self.count += 1
        name = f"t{os.getpid()}_{self.count}"
        with self.admin.connect() as c:
            c.execute(sa.text(f'CREATE DATABASE "{name}"'))
        return self.server.url(name)

    def drop(self, url: str) -> None:
        import sqlalchemy as sa

        with self.admin.connect() as c:
            c.execute(sa.text(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)'))
