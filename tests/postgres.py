"""A throwaway PostgreSQL for tests: ``initdb`` in a temporary folder, a free loopback port.

Use the session-scoped ``postgres`` fixture (exposed in ``tests/conftest.py``)::

    def test_something(postgres):
        postgres.psql("CREATE TABLE t (id int)")
        with psycopg.connect(postgres.dsn) as con: ...

The server object has ``.dsn`` (libpq key/value string, user ``postgres``, database
``postgres``, trust authentication over TCP on 127.0.0.1), ``.port``, ``.socket_dir`` (the
unix socket's folder) and ``.psql(sql) -> str`` (what ``psql -X -A -t -q`` prints; raises on
the first error). It writes a csvlog in its data folder (``SELECT pg_current_logfile()``).

When PostgreSQL is not installed the tests that use it skip, naming the Debian package;
with the environment variable ``CI`` set they fail instead, so CI cannot pass by skipping.
As root (CI), the server runs as the ``postgres`` system user (``runuser``), since
PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest

__all__ = ["PostgresServer", "missing", "postgres", "server_bin"]


def missing(what: str, package: str) -> NoReturn:
    """Skip the test because ``what`` is not installed, or fail when running in CI."""
    message = f"{what} is not installed (Debian package: {package})"
    if os.environ.get("CI"):
        pytest.fail(f"{message}; CI must install it", pytrace=False)
    pytest.skip(message)


def server_bin() -> Path | None:
    """The newest installed PostgreSQL's bin folder (Debian layout), or None."""
    root = Path("/usr/lib/postgresql")
    found = sorted(
        (p for p in root.glob("*/bin") if (p / "initdb").exists() and p.parent.name.isdigit()),
        key=lambda p: int(p.parent.name),
    ) if root.is_dir() else []
    if found:
        return found[-1]
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PostgresServer:
    """A running throwaway cluster (see the module docstring)."""

    bin_dir: Path
    base: Path
    port: int
    major: int
    prefix: Sequence[str]

    @property
    def socket_dir(self) -> Path:
        return self.base

    @property
    def data_dir(self) -> Path:
        return self.base / "data"

    @property
    def dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"

    def run(self, args: Sequence[str], stdin: str | None = None, check: bool = True) -> str:
        result = subprocess.run(
            [*self.prefix, *args], input=stdin, capture_output=True, text=True, check=False
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"{Path(args[0]).name} failed ({result.returncode}): "
                               f"{result.stderr.strip()}")
        return result.stdout

    def psql(self, sql: str) -> str:
        """What ``psql -X -A -t -q`` prints for ``sql`` in database ``postgres``."""
        return self.run(
            [str(self.bin_dir / "psql"), "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1",
             "-h", str(self.socket_dir), "-p", str(self.port), "-U", "postgres",
             "-d", "postgres"],
            stdin=sql,
        )

    def start(self) -> None:
        self.run([str(self.bin_dir / "initdb"), "-D", str(self.data_dir), "-U", "postgres",
                  "-A", "trust", "--no-sync", "-E", "UTF8", "--locale=C"])
        with (self.data_dir / "postgresql.conf").open("a") as f:
            f.write(
                f"""
listen_addresses = '127.0.0.1'
port = {self.port}
unix_socket_directories = '{self.socket_dir}'
logging_collector = on
log_destination = 'csvlog'
log_directory = 'log'
fsync = off
synchronous_commit = off
full_page_writes = off
jit = off
"""
            )
        self.run([str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-w",
                  "-l", str(self.base / "startup.log"), "start"])

    def stop(self) -> None:
        if (self.data_dir / "postmaster.pid").exists():
            self.run([str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", "immediate",
                      "-w", "stop"], check=False)


def _start() -> Iterator[PostgresServer]:
    bin_dir = server_bin()
    if bin_dir is None:
        missing("PostgreSQL", "postgresql")
    as_root = os.geteuid() == 0
    if as_root and shutil.which("runuser") is None:
        missing("runuser (to run PostgreSQL as the postgres user)", "util-linux")
    # A short path: unix socket paths are limited to about 100 characters.
    base = Path(tempfile.mkdtemp(prefix="latkit-pg-"))
    if as_root:
        shutil.chown(base, "postgres", "postgres")
    major = int(bin_dir.parent.name) if bin_dir.parent.name.isdigit() else 0
    server = PostgresServer(bin_dir, base, _free_port(), major,
                            ["runuser", "-u", "postgres", "--"] if as_root else [])
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL for the whole test session (see ``tests/postgres.py``)."""
    yield from _start()
