"""A real imported pipeline (the AWS CLI's get-pipeline example: an S3 source, then CodeDeploy)
run by the local engine: the S3 source runs from a directory or an S3-compatible server (moto,
a fake of AWS), and the CodeDeploy passthrough fails with "runs on AWS only"."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conveyor.store.records import AttemptRecord
from tests.conftest import CORPUS, drive

pytestmark = pytest.mark.integration

GET_PIPELINE = (
    CORPUS
    / "pipelines"
    / "aws__aws-cli__awscli_examples_codepipeline_get-pipeline.rst__output.json"
)
BUCKET, KEY = "awscodepipeline-demo-bucket", "aws-codepipeline-s3-aws-codedeploy_linux.zip"


@pytest.fixture(autouse=True)
def _corpus() -> None:
    if not GET_PIPELINE.is_file():
        if os.environ.get("CI"):
            pytest.fail(f"corpus not found at {CORPUS} (set CONVEYOR_CORPUS)")
        pytest.skip(f"corpus not found at {CORPUS} (set CONVEYOR_CORPUS)")


def _run_imported(app: Any) -> tuple[str, dict[str, AttemptRecord]]:
    from conveyor.spec.codepipeline import load_codepipeline
    from conveyor.spec.pipeline_file import from_model

    pipeline = load_codepipeline(GET_PIPELINE).pipeline
    app.store.save_pipeline(pipeline.name, from_model(pipeline), str(GET_PIPELINE))
    eng = app.engine()
    ex = eng.start(pipeline.name)
    drive(app, eng, lambda a: a.store.execution(ex).status not in ("InProgress", "Stopping"))
    return ex, {a.action: a for a in app.store.attempts_for(ex)}


def test_s3_source_from_a_directory_then_codedeploy_runs_on_aws_only(app: Any) -> None:
    """The S3 source reads <state>/s3/BUCKET/KEY (a directory); CodeDeploy fails, saying AWS only."""
    local = app.settings.state_dir / "s3" / BUCKET / KEY
    (local / "scripts").mkdir(parents=True)
    (local / "appspec.yml").write_text("version: 0.0\nos: linux\n")
    (local / "scripts" / "start.sh").write_text("echo start\n")
    ex, attempts = _run_imported(app)
    assert attempts["Source"].status == "Succeeded", attempts["Source"].message
    assert attempts["Source"].variables["ObjectKey"] == KEY
    deploy = attempts["CodePipelineDemoFleet"]
    assert deploy.status == "Failed"
    assert deploy.message.startswith("runs on AWS only: action 'CodePipelineDemoFleet'")
    assert "AWS/Deploy/CodeDeploy" in deploy.message
    assert app.store.execution(ex).status == "Failed"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def fake_s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A moto server (a fake of AWS S3) on loopback, stopped by its pid at the end."""
    port = _free_port()
    exe = Path(sys.executable).parent / "moto_server"
    proc = subprocess.Popen(
        [str(exe), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.time() > deadline:
                    pytest.fail(f"moto_server did not start on port {port}")
                time.sleep(0.1)
        for k, v in {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "CONVEYOR_S3_ENDPOINT": url,
        }.items():
            monkeypatch.setenv(k, v)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_s3_source_from_an_s3_compatible_url_extracts_the_zip(app: Any, fake_s3: str) -> None:
    """With CONVEYOR_S3_ENDPOINT, the S3 source downloads BUCKET/KEY and extracts the zip."""
    import boto3

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("appspec.yml", "version: 0.0\nos: linux\n")
        z.writestr("scripts/start.sh", "echo start\n")
    s3 = boto3.client("s3", endpoint_url=fake_s3, region_name="us-east-1")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key=KEY, Body=buf.getvalue())
    _, attempts = _run_imported(app)
    src = attempts["Source"]
    assert src.status == "Succeeded", src.message
    digest = src.artifacts["MyApp"]
    out = app.settings.state_dir / "check"
    from conveyor.store.artifacts import ArtifactStore

    ArtifactStore(app.settings.state_dir / "artifacts").get(digest, out)
    assert (out / "scripts" / "start.sh").read_text() == "echo start\n"
    assert attempts["CodePipelineDemoFleet"].message.startswith("runs on AWS only")
