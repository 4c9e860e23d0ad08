"""Bad settings and broken components: one line and the right exit code, never a hang (issue 12)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

PG_URL = os.environ.get("CONVEYOR_TEST_PG_URL")


def cli(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("CONVEYOR_")}
    full.update({"CONVEYOR_HOME": str(home), "NO_COLOR": "1", **env})
    return subprocess.run(
        [sys.executable, "-m", "conveyor", *args],
        env=full,
        capture_output=True,
        text=True,
        timeout=90,  # a hang guard, far above the connect timeout under test
        check=False,
    )


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("CONVEYOR_SERVER_PORT", "CONVEYOR_SERVER_PORT='abc' is not a port number (1-65535)"),
        ("CONVEYOR_LEASE_SECONDS", "CONVEYOR_LEASE_SECONDS='abc' is not a positive number"),
    ],
)
def test_bad_setting_is_one_line_and_exit_2(tmp_path: Path, name: str, expected: str) -> None:
    """A non-numeric port or lease gives one line naming the variable, exit 2, no traceback."""
    res = cli(tmp_path / "home", "history", **{name: "abc"})
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], res.stderr


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A local TCP port that accepts connections and never answers."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(srv.accept()[0])
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    yield srv.getsockname()[1]
    stop.set()
    t.join()
    for c in held:
        c.close()
    srv.close()


def test_postgresql_that_never_answers_fails_after_the_connect_timeout(
    tmp_path: Path, silent_port: int
) -> None:
    """`conveyor history` against a port that accepts and never answers exits 3 (no hang)."""
    res = cli(
        tmp_path / "home",
        "history",
        CONVEYOR_DATABASE_URL=f"postgresql://u@127.0.0.1:{silent_port}/db",
        CONVEYOR_DB_CONNECT_TIMEOUT="2",
    )
    assert res.returncode == 3
    assert res.stderr.strip().splitlines() == [
        f"error: cannot open database postgresql+psycopg://***@127.0.0.1:{silent_port}/db: "
        "connection timeout expired"
    ]


@pytest.mark.skipif(not PG_URL, reason="CONVEYOR_TEST_PG_URL is not set")
def test_postgresql_statement_timeout_comes_from_the_settings(tmp_path: Path) -> None:
    """A statement running longer than the statement timeout is cut and reported as unavailable."""
    from sqlalchemy import text

    from conveyor.errors import Unavailable
    from conveyor.settings import Settings
    from conveyor.store.db import Store

    assert PG_URL
    settings = Settings.from_env(
        tmp_path,
        {"CONVEYOR_DATABASE_URL": PG_URL, "CONVEYOR_DB_STATEMENT_TIMEOUT": "0.5"},
    )
    store = Store.from_settings(settings, migrate_schema=False)
    try:
        with pytest.raises(Unavailable, match="statement timeout"), store.tx() as c:
            c.execute(text("SELECT pg_sleep(5)"))
    finally:
        store.close()


def test_broken_stores_are_one_line_and_exit_3(tmp_path: Path) -> None:
    """A non-database SQLite file, mysql://, a garbage URL and a file as CONVEYOR_HOME exit 3."""
    notdb = tmp_path / "notdb.db"
    notdb.write_text("this is not a database\n" * 10)
    afile = tmp_path / "afile"
    afile.write_text("x")
    cases = [
        (
            tmp_path / "h1",
            {"CONVEYOR_DATABASE_URL": f"sqlite:///{notdb}"},
            "file is not a database",
        ),
        (tmp_path / "h2", {"CONVEYOR_DATABASE_URL": "mysql://u:pw@localhost/db"}, "unsupported"),
        (tmp_path / "h3", {"CONVEYOR_DATABASE_URL": "::garbage::"}, "unsupported database URL"),
        (afile, {}, "is a file, not a directory"),
    ]
    for home, env, expected in cases:
        res = cli(home, "history", **env)
        assert res.returncode == 3, (env, res.stderr)
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0], res.stderr
        assert "pw" not in res.stderr


def test_sqlite_directory_is_created_only_inside_the_state_dir(tmp_path: Path) -> None:
    """A database outside CONVEYOR_HOME in a missing directory is refused unless asked for."""
    outside = tmp_path / "elsewhere" / "deeper"
    url = f"sqlite:///{outside / 'c.db'}"
    res = cli(tmp_path / "home", "history", CONVEYOR_DATABASE_URL=url)
    assert res.returncode == 3
    assert "does not exist" in res.stderr and "CONVEYOR_DATABASE_CREATE_DIRS=1" in res.stderr
    assert not (tmp_path / "elsewhere").exists()
    res = cli(
        tmp_path / "home", "history", CONVEYOR_DATABASE_URL=url, CONVEYOR_DATABASE_CREATE_DIRS="1"
    )
    assert res.returncode == 0, res.stderr
    assert (outside / "c.db").is_file()
    inside = tmp_path / "home2" / "db" / "c.db"
    res = cli(tmp_path / "home2", "history", CONVEYOR_DATABASE_URL=f"sqlite:///{inside}")
    assert res.returncode == 0, res.stderr
    assert inside.is_file()
