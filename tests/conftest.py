"""Shared fixtures: a private state dir per test, the store on SQLite and (in `make test`) PostgreSQL."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
# The shared corpus (real buildspecs and pipelines) is referenced by path, never copied in: a
# plain clone has no ../shared, so tests marked `corpus` skip and say why; under CI=true the
# corpus is required and its absence fails them.
CORPUS = Path(os.environ.get("CONVEYOR_CORPUS") or REPO.parent / "shared" / "corpus")
CORPUS_REQUIRED = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "corpus: needs the shared corpus (../shared/corpus or CONVEYOR_CORPUS)"
    )


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("corpus") is None or CORPUS.is_dir():
        return
    why = (
        f"the shared corpus is not at {CORPUS}: a plain clone has no ../shared "
        "(put it beside the clone or set CONVEYOR_CORPUS)"
    )
    if CORPUS_REQUIRED:
        pytest.fail(f"{why}; CI=true requires it", pytrace=False)
    pytest.skip(why)


def corpus_cases(paths: list[Path]) -> list[Any]:
    """Parametrize cases from corpus files; without the corpus, one case that the `corpus`
    marker skips (or fails under CI) with the reason, instead of an empty parameter set."""
    return list(paths) or [pytest.param(CORPUS / "absent", id="corpus-absent")]


PG_URL = os.environ.get("CONVEYOR_TEST_PG_URL")


@pytest.fixture
def settings(tmp_path: Path) -> Any:
    from conveyor.settings import Settings

    return Settings(
        state_dir=tmp_path / "state",
        database_url=f"sqlite:///{tmp_path / 'state' / 'c.db'}",
        lease_seconds=3.0,
        heartbeat_seconds=0.5,
        poll_seconds=0.05,
    )


def _fresh_pg_url() -> str:
    """A new empty schema-less database per test on the test PostgreSQL server."""
    import sqlalchemy as sa

    assert PG_URL
    name = f"t_{uuid.uuid4().hex[:10]}"
    base = PG_URL.replace("postgresql://", "postgresql+psycopg://", 1)
    eng = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with eng.connect() as c:
        c.execute(sa.text(f"CREATE DATABASE {name}"))
    eng.dispose()
    return PG_URL.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    if not PG_URL:
        if os.environ.get("CI"):
            pytest.fail(
                "CONVEYOR_TEST_PG_URL is not set: `make test` starts PostgreSQL for the store tests"
            )
        pytest.skip("no PostgreSQL: run through `make test`, which starts one")
    return _fresh_pg_url()


@pytest.fixture
def app(settings: Any) -> Any:
    from conveyor.bootstrap import build

    a = build(settings)
    yield a
    a.store.close()


def write_pipeline(tmp_path: Path, text: str, name: str = "pipeline.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def run_pipeline(
    app: Any,
    text: str,
    tmp_path: Path,
    *,
    variables: dict[str, str] | None = None,
    until: Callable[[Any], bool] | None = None,
    timeout: float = 60,
) -> str:
    """Register and run a pipeline with an in-process engine until the execution ends."""
    from conveyor.spec.pipeline_file import load_pipeline
    from conveyor.spec.yamlfile import load

    path = write_pipeline(tmp_path, text)
    p = load_pipeline(path, app.registry.catalogue())
    doc, _ = load(path)
    app.store.save_pipeline(p.name, doc, str(path))
    eng = app.engine()
    ex = eng.start(p.name, variables=variables)
    drive(
        app,
        eng,
        until or (lambda a: a.store.execution(ex).status not in ("InProgress", "Stopping")),
        timeout,
    )
    return ex


def drive(app: Any, eng: Any, until: Callable[[Any], bool], timeout: float = 60) -> None:
    stop = threading.Event()
    deadline = time.time() + timeout
    t = threading.Thread(target=eng.run, args=(stop,), daemon=True)
    t.start()
    try:
        while not until(app):
            if time.time() > deadline:
                raise AssertionError("the execution did not reach the expected state in time")
            time.sleep(0.05)
    finally:
        stop.set()
        t.join(10)
        eng.shutdown(wait=True, timeout=30)
