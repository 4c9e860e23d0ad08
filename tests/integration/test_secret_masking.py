"""Secrets stay masked everywhere the probe saw them (issue 12): multi-line values, their
encodings, copies exported as variables, and JUnit failure messages, on a real engine run."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

PEM = (
    "-----BEGIN PRIVATE KEY-----\n"
    "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj\n"
    "MzEfYyjiWA4R4/M2bS1GB4t7NXp98C3SC6dVMvDuictGeurT8jNbvJZHtCSuYEvu\n"
    "NMoSfm76oqFvAp8Gy0iz5sxjZmSnXyCdPEovGhLa0VzMaQ8s+CLOyS56YyCFGeJZ\n"
    "-----END PRIVATE KEY-----"
)
JSON_SECRET = json.dumps({"user": "svc", "password": "p@ss w/rd&more"}, indent=2)
DB_PASS = "s3cr3t-Db-Pass!"

BUILDSPEC = """version: 0.2
env:
  shell: bash
  secrets-manager:
    KEY: TEST_PEM_KEY
    CREDS: TEST_JSON_CREDS
    DB_PASS: TEST_DB_PASS
  exported-variables: [COPY, SAFE]
phases:
  build:
    commands:
      - printf '%s\\n' "$KEY"
      - printf '%s' "$KEY" | base64
      - printf '%s' "$KEY" | base64 -w0; echo
      - python3 -c 'import json,os; print(json.dumps(os.environ["KEY"]))'
      - python3 -c 'import os,urllib.parse as u; print(u.quote(os.environ["CREDS"], safe=""))'
      - echo "$CREDS"
      - python3 -c 'import json,os; print(json.dumps(json.loads(os.environ["CREDS"])))'
      - printf '%s' "$KEY" | head -c 100; sleep 0.2; printf '%s\\n' "${KEY:100}"
      - export COPY="$DB_PASS" SAFE=fine
      - mkdir -p reports
      - |
        cat > reports/junit.xml <<EOF
        <testsuite name="s" tests="1" failures="1"><testcase classname="c" name="t">
        <failure message="login failed with $DB_PASS">password was $DB_PASS</failure>
        </testcase></testsuite>
        EOF
reports:
  unit:
    files: [reports/junit.xml]
"""

PIPELINE = """name: secrets
stages:
  - name: Build
    actions:
      - name: Leaky
        type: build
        namespace: Leaky
        config:
          buildspec: |
{spec}
"""


def _env(home: Path) -> dict[str, str]:
    return {
        **os.environ,
        "CONVEYOR_HOME": str(home),
        "NO_COLOR": "1",
        "TEST_PEM_KEY": PEM,
        "TEST_JSON_CREDS": JSON_SECRET,
        "TEST_DB_PASS": DB_PASS,
    }


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "conveyor", *args],
        env=_env(home),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def leaks(text: str) -> list[str]:
    """Every form of a secret found in `text`."""
    import base64
    from urllib.parse import quote

    forms = {
        "pem": PEM,
        "pem line": PEM.splitlines()[2],
        "pem base64": base64.b64encode(PEM.encode()).decode(),
        "pem base64 line": base64.encodebytes(PEM.encode()).decode().splitlines()[1],
        "pem json": json.dumps(PEM)[1:-1],
        "creds": JSON_SECRET,
        "creds password": "p@ss w/rd&more",
        "creds url": quote(JSON_SECRET, safe=""),
        "creds compact": json.dumps(json.loads(JSON_SECRET)),
        "db pass": DB_PASS,
    }
    return [name for name, form in forms.items() if form in text]


def test_secrets_are_masked_in_every_view(tmp_path: Path) -> None:
    """Logs, `conveyor logs`, build.log, status --json and the DB rows show no form of a secret;
    the copy is not exported and the log says why; the JUnit failure is masked."""
    home = tmp_path / "home"
    spec = "\n".join("            " + line for line in BUILDSPEC.splitlines())
    pipeline = tmp_path / "p.yaml"
    pipeline.write_text(PIPELINE.format(spec=spec))
    res = cli(home, "run", str(pipeline), "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    assert leaks(res.stdout + res.stderr) == []
    ex = json.loads(res.stdout)["id"] if res.stdout.strip().startswith("{") else None
    status = cli(home, "status", *([ex] if ex else []), "--json")
    assert status.returncode in (0, 1), status.stderr
    assert leaks(status.stdout) == []
    attempt = json.loads(status.stdout)["stages"][0]["actions"][0]
    assert "COPY" not in json.dumps(attempt.get("variables") or {})
    logs = cli(home, "logs", ex or json.loads(status.stdout)["id"])
    assert leaks(logs.stdout) == []
    assert "exported variable COPY holds a secret value" in logs.stdout
    assert "***" in logs.stdout
    # what the views read: the action logs, build.log, the stored report copies, the DB rows
    # (the build's own workspace holds what the build wrote; it is not a view of Conveyor's)
    viewed = [
        *(home / "logs").rglob("*.log"),
        *home.rglob("build.log"),
        *(f for f in home.glob("work/*/*/reports/**/*") if f.is_file()),
        *home.glob("conveyor.db*"),
    ]
    assert len(viewed) >= 4
    for f in viewed:
        text = f.read_bytes().decode("utf-8", errors="replace")
        assert leaks(text) == [], f
    build_log = next(home.rglob("build.log")).read_text()
    _check_api(home, ex or json.loads(status.stdout)["id"])
    [report] = [f for f in home.glob("work/*/*/reports/**/junit.xml")]
    assert "login failed with ***" in report.read_text()
    assert leaks(build_log) == [] and "***" in build_log


def _check_api(home: Path, ex: str) -> None:
    """The API as a viewer reads it: the execution, its log, its log stream, its reports."""
    import asyncio

    import httpx

    from conveyor.server.app import create_app
    from conveyor.server.auth import Users
    from conveyor.settings import Settings
    from conveyor.store.db import Store

    settings = Settings.from_env(home, {})
    store = Store.from_settings(settings)
    token = Users(store).add("viewer", "viewer")
    base = f"/api/v1/executions/{ex}"
    app = create_app(settings, store)

    async def read() -> dict[str, httpx.Response]:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://test",
            headers={"Authorization": f"Bearer {token}"},
        ) as c:
            return {
                url: await c.get(url)
                for url in (
                    base,
                    f"{base}/actions/Build/Leaky/log",
                    f"{base}/actions/Build/Leaky/log/stream",
                    f"{base}/artifacts",
                )
            }

    try:
        # the approval evidence a later approval of this execution would show
        from conveyor.engine.engine import pipeline_of
        from conveyor.service.evidence import gather
        from conveyor.store.artifacts import ArtifactStore

        ex_row = store.execution(ex)
        store.create_approval(
            f"{ex}/Approve/Gate/1", ex, token="t", summary="", digest=None, expires_at=2e9
        )
        approval = store.approval(f"{ex}/Approve/Gate/1")
        assert approval is not None
        pipeline = pipeline_of(ex_row.definition, "secrets")
        evidence = gather(
            store, ArtifactStore(home / "artifacts"), settings, pipeline, ex_row, approval
        )
        assert evidence["failures"] and leaks(json.dumps(evidence)) == []
        assert evidence["failures"][0]["message"] == "login failed with ***"
        for url, r in asyncio.run(read()).items():
            assert r.status_code == 200, (url, r.text)
            assert leaks(r.text) == [], url
            assert "***" in r.text or url.endswith(("artifacts", ex)), url
    finally:
        store.close()


def test_buildspec_run_output_is_masked(tmp_path: Path) -> None:
    """`conveyor buildspec run` prints no form of a secret, and refuses to export a copy."""
    src = tmp_path / "src"
    src.mkdir()
    spec = tmp_path / "buildspec.yml"
    spec.write_text(BUILDSPEC)
    res = cli(tmp_path / "home", "buildspec", "run", str(spec), "--source", str(src), "--json")
    assert leaks(res.stdout + res.stderr) == [], res.stderr
    summary = json.loads(res.stdout)
    assert "COPY" not in summary["exportedVariables"]
    assert summary["exportedVariables"]["SAFE"] == "fine"


def test_stream_masker_masks_a_secret_split_across_writes() -> None:
    """A multi-line secret written in random pieces is masked, whatever the boundaries."""
    from conveyor.model.masking import Masker, StreamMasker

    text = f"before\n{PEM}\nmiddle {DB_PASS} after\n"
    rnd = random.Random(12)
    for _ in range(200):
        stream = StreamMasker(Masker([PEM, DB_PASS]))
        cuts = sorted(rnd.sample(range(1, len(text)), 6))
        pieces = [text[i:j] for i, j in zip([0, *cuts], [*cuts, len(text)], strict=True)]
        out = "".join(stream.feed(p) for p in pieces) + stream.flush()
        assert out == "before\n***\nmiddle *** after\n"


def test_file_log_masks_across_lines(tmp_path: Path) -> None:
    """The engine's action log masks a PEM key written line by line, as a process prints it."""
    from conveyor.engine.logs import FileLog

    log = FileLog(tmp_path / "a.log")
    log.mask(PEM)
    for line in f"key:\n{PEM}\ndone\n".splitlines(keepends=True):
        log.write(line)
    log.close()
    assert (tmp_path / "a.log").read_text() == "key:\n***\ndone\n"
