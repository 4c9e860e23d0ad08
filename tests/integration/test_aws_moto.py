"""The boto3 operations against moto in server mode: a FAKE of AWS on a real HTTP endpoint.

Nothing here touches a real AWS account. moto (5.x) cannot create every resource of the
synthesized template through CloudFormation (CodePipeline, CodeBuild, EKS access entries,
CloudWatch alarms, SNS subscriptions and bucket policies are not in its CloudFormation
model), so the deploy tests use the template with those resources, and whatever references
them, removed; and moto has no CodePipeline GetPipelineState / PutApprovalResult /
ListActionExecutions, so approval and status are tested with botocore's Stubber (another
fake, named as such) on recorded API shapes.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conveyor.aws.operations import Aws, Change, check_stack_name, state_rows
from conveyor.aws.synth import synthesize
from conveyor.errors import AuthError, ConfigError, Conflict, NotFound
from conveyor.spec.codepipeline import export_pipeline, import_document, load_json
from conveyor.spec.pipeline_file import load_pipeline

pytestmark = pytest.mark.integration

FIXTURE = Path(__file__).resolve().parents[2] / "tests" / "unit" / "data" / "seed_eks.yaml"
MOTO_CFN_TYPES = {
    "AWS::ECR::Repository",
    "AWS::Events::Rule",
    "AWS::IAM::Role",
    "AWS::Logs::LogGroup",
    "AWS::S3::Bucket",
    "AWS::SNS::Topic",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def fake_aws_server() -> Iterator[str]:
    """A moto server (fake AWS) on 127.0.0.1, stopped by its pid at the end."""
    port = _free_port()
    exe = Path(sys.executable).parent / "moto_server"
    proc = subprocess.Popen(
        [str(exe), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"moto_server did not start on port {port}")
            time.sleep(0.1)
    yield url
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def fake_aws(fake_aws_server: str, monkeypatch: pytest.MonkeyPatch) -> Aws:
    monkeypatch.setenv("CONVEYOR_AWS_ENDPOINT_URL", fake_aws_server)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    return Aws("us-east-1")


def _refs(v: Any) -> set[str]:
    if isinstance(v, dict):
        out: set[str] = set()
        for k, x in v.items():
            if k == "Ref" and isinstance(x, str):
                out.add(x)
            elif k == "Fn::GetAtt":
                out.add(x[0] if isinstance(x, list) else str(x).split(".")[0])
            elif k == "Fn::Sub":
                import re

                text = x if isinstance(x, str) else x[0]
                out |= {m.split(".")[0] for m in re.findall(r"\$\{([^}!]+)\}", text)}
            out |= _refs(x)
        return out
    if isinstance(v, list):
        return set().union(*map(_refs, v)) if v else set()
    return set()


def _else(v: Any) -> Any:
    """Every `Fn::If` replaced by its else branch (moto evaluates no conditions)."""
    if isinstance(v, dict):
        if "Fn::If" in v:
            return _else(v["Fn::If"][2])
        return {k: _else(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_else(x) for x in v if not (isinstance(x, dict) and _else(x) == _NO_VALUE)]
    return v


_NO_VALUE = {"Ref": "AWS::NoValue"}


def moto_subset(template: dict[str, Any]) -> dict[str, Any]:
    """The template without what moto's CloudFormation cannot create, nor what refers to it."""
    t = json.loads(json.dumps(template))
    removed = {
        k
        for k, r in t["Resources"].items()
        if r["Type"] not in MOTO_CFN_TYPES or "Condition" in r  # moto ignores Condition
    }
    while True:
        more = {k for k, r in t["Resources"].items() if k not in removed and _refs(r) & removed}
        if not more:
            break
        removed |= more
    t["Resources"] = {k: _else(r) for k, r in t["Resources"].items() if k not in removed}
    t["Outputs"] = {k: o for k, o in t["Outputs"].items() if not _refs(o) & removed}
    t.pop("Conditions", None)
    used = _refs(t)
    t["Parameters"] = {k: v for k, v in t["Parameters"].items() if k in used}
    return t


def test_deploy_creates_stack_through_change_set(fake_aws: Aws) -> None:
    """`deploy` creates the stack via a change set: shows changes, executes, streams events."""
    t = moto_subset(synthesize(load_pipeline(FIXTURE)).template)
    assert {"ArtifactBucket", "TestRepository", "ProdRepository"} <= set(t["Resources"])
    seen_changes: list[Change] = []
    events: list[dict[str, Any]] = []

    def confirm(changes: list[Change]) -> bool:
        seen_changes.extend(changes)
        return True

    final = fake_aws.deploy(
        "conveyor-seed-test",
        json.dumps(t),
        {},
        confirm=confirm,
        on_event=events.append,
        poll_seconds=0.2,
    )
    assert final == "CREATE_COMPLETE"
    assert ("Add", "ProdRepository", "AWS::ECR::Repository") in {
        (c.action, c.logical_id, c.resource_type) for c in seen_changes
    }
    # moto records stack-level events only (AWS adds one per resource): new ones stream in order
    assert [(e["LogicalResourceId"], e["ResourceStatus"]) for e in events] == [
        ("conveyor-seed-test", "CREATE_IN_PROGRESS"),
        ("conveyor-seed-test", "CREATE_COMPLETE"),
    ]
    repos = fake_aws.client("ecr").describe_repositories()["repositories"]
    by_name = {r["repositoryName"]: r for r in repos}
    assert by_name["webapp-prod"]["imageTagMutability"] == "IMMUTABLE"
    assert (
        by_name["webapp-test"]["imageTagMutability"] == "MUTABLE"
    )  # moto ignores ScanOnPush via CFN


def test_declined_change_set_leaves_nothing(fake_aws: Aws) -> None:
    """Answering no deletes the change set and the empty stack: nothing is created."""
    t = moto_subset(synthesize(load_pipeline(FIXTURE)).template)
    final = fake_aws.deploy(
        "conveyor-declined",
        json.dumps(t),
        {},
        confirm=lambda c: False,
        on_event=lambda e: None,
        poll_seconds=0.2,
    )
    assert final == "CANCELLED"
    assert fake_aws.stack_status("conveyor-declined") in (None, "DELETE_COMPLETE")


def test_exported_pipeline_is_accepted_by_codepipeline_api(fake_aws: Aws) -> None:
    """`export codepipeline` JSON goes through create_pipeline; get_pipeline gives it back."""
    iam = fake_aws.client("iam")
    role = iam.create_role(
        RoleName="pipeline-role",
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Action": "sts:AssumeRole",
                        "Principal": {"Service": "codepipeline.amazonaws.com"},
                    }
                ],
            }
        ),
    )
    p = load_pipeline(FIXTURE)
    doc, _ = export_pipeline(p, role_arn=role["Role"]["Arn"], artifact_bucket="artifacts")
    cp = fake_aws.client("codepipeline")
    cp.create_pipeline(pipeline=doc["pipeline"])
    got = cp.get_pipeline(name=p.name)
    got.pop("ResponseMetadata", None)
    text = json.dumps(got, default=str, indent=1)
    again = import_document(*load_json(text, "get-pipeline.json")).pipeline
    # CodeBuild actions without inputs read the build's output (AWS requires 1-5 inputs)
    assert [
        (s.name, [(a.name, a.run_order, a.inputs, a.outputs, a.namespace) for a in s.actions])
        for s in again.stages
    ] == [
        (
            s.name,
            [
                (
                    a.name,
                    a.run_order,
                    a.inputs or (("build_out",) if a.type in ("image.promote", "monitor") else ()),
                    a.outputs,
                    a.namespace,
                )
                for a in s.actions
            ],
        )
        for s in p.stages
    ]


def test_pipeline_state_api_is_missing_from_moto(fake_aws: Aws) -> None:
    """moto lacks GetPipelineState: say so (status/approve are covered with Stubber below)."""
    from botocore.exceptions import ClientError

    try:
        fake_aws.client("codepipeline").get_pipeline_state(name="seed-webapp")
    except (ClientError, NotImplementedError) as e:
        pytest.skip(
            f"moto has no CodePipeline GetPipelineState ({type(e).__name__}); covered with Stubber"
        )
    pytest.fail("moto now implements GetPipelineState: test `conveyor aws status` against it")


def test_build_logs_read_from_cloudwatch(fake_aws: Aws) -> None:
    """Logs come back oldest first; a build without a log stream is a clear error."""
    logs = fake_aws.client("logs")
    now = int(time.time() * 1000)  # CloudWatch Logs (and moto) refuse events older than 14 days
    logs.create_log_group(logGroupName="/aws/codebuild/logs-test")
    logs.create_log_stream(logGroupName="/aws/codebuild/logs-test", logStreamName="b1")
    logs.put_log_events(
        logGroupName="/aws/codebuild/logs-test",
        logStreamName="b1",
        logEvents=[{"timestamp": now + i, "message": f"line {i}\n"} for i in range(5)],
    )
    assert list(fake_aws.log_lines("/aws/codebuild/logs-test", "b1")) == [
        f"line {i}" for i in range(5)
    ]
    cb = fake_aws.client("codebuild")
    cb.create_project(
        name="p1",
        source={"type": "S3", "location": "bucket/src.zip"},
        artifacts={"type": "NO_ARTIFACTS"},
        environment={
            "type": "LINUX_CONTAINER",
            "image": "aws/codebuild/standard:7.0",
            "computeType": "BUILD_GENERAL1_SMALL",
        },
        serviceRole="arn:aws:iam::123456789012:role/x",
    )
    build = cb.start_build(projectName="p1")["build"]
    with pytest.raises(NotFound, match="no CloudWatch Logs stream recorded"):
        list(fake_aws.build_logs(build["id"]))


# ---------------------------------------------------------------- bad input (no network at all)


def test_no_credentials_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without credentials, the message says so and suggests `aws configure`."""
    for var in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "CONVEYOR_AWS_ENDPOINT_URL",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", raising=False)
    monkeypatch.delenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", raising=False)
    with pytest.raises(AuthError, match="no AWS credentials found: run `aws configure`"):
        Aws("us-east-1").stack_status("anything")


def test_wrong_region_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A misspelt region is refused before any call, with a did-you-mean."""
    monkeypatch.delenv("CONVEYOR_AWS_ENDPOINT_URL", raising=False)
    with pytest.raises(
        ConfigError, match=r"unknown AWS region 'eu-wst-1' \(did you mean 'eu-west-1'\?\)"
    ):
        Aws("eu-wst-1")


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [
        ("1pipeline", "--stack-name pipeline"),
        ("my_stack", "--stack-name my-stack"),
        ("a" * 129, "--stack-name " + "a" * 128),
    ],
)
def test_stack_name_beyond_limits(name: str, suggestion: str) -> None:
    """A stack name CloudFormation would refuse is an error naming a valid one."""
    with pytest.raises(ConfigError) as e:
        check_stack_name(name)
    assert suggestion in e.value.message


def _stubbed(service: str, aws: Aws) -> Any:
    from botocore.stub import Stubber

    client = aws.session.client(service, region_name="us-east-1")
    aws._clients[service] = client
    stub = Stubber(client)
    stub.activate()
    return stub


@pytest.fixture
def stub_aws(monkeypatch: pytest.MonkeyPatch) -> Aws:
    monkeypatch.delenv("CONVEYOR_AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    return Aws("us-east-1")


def test_rollback_complete_stack_is_refused_fake_aws(stub_aws: Aws) -> None:
    """(Stubber fake) A ROLLBACK_COMPLETE stack is refused with the delete-stack command."""
    stub = _stubbed("cloudformation", stub_aws)
    stub.add_response(
        "describe_stacks",
        {
            "Stacks": [
                {
                    "StackName": "s",
                    "StackStatus": "ROLLBACK_COMPLETE",
                    "CreationTime": "2024-01-01T00:00:00Z",
                }
            ]
        },
    )
    with pytest.raises(Conflict) as e:
        stub_aws.deploy("s", "{}", {}, confirm=lambda c: True, on_event=lambda e: None)
    assert "aws cloudformation delete-stack --stack-name s --region us-east-1" in e.value.message


STATE = {
    "pipelineName": "seed-webapp",
    "pipelineVersion": 1,
    "stageStates": [
        {
            "stageName": "Build",
            "latestExecution": {"pipelineExecutionId": "e-1", "status": "Succeeded"},
            "actionStates": [
                {
                    "actionName": "AngularBuildAndCreateDockerImage",
                    "latestExecution": {
                        "status": "Succeeded",
                        "externalExecutionId": "seed-webapp-Angular:b-1",
                        "summary": "built",
                    },
                }
            ],
        },
        {
            "stageName": "DeployToEKSProdApproval",
            "latestExecution": {"pipelineExecutionId": "e-1", "status": "InProgress"},
            "actionStates": [
                {
                    "actionName": "DeployToEKSProdApproval",
                    "latestExecution": {"status": "InProgress", "token": "tok-123"},
                }
            ],
        },
    ],
}


def test_approve_uses_the_token_from_pipeline_state_fake_aws(stub_aws: Aws) -> None:
    """(Stubber fake) approve sends the waiting approval's token from get_pipeline_state."""
    stub = _stubbed("codepipeline", stub_aws)
    stub.add_response("get_pipeline_state", STATE, {"name": "seed-webapp"})
    stub.add_response(
        "put_approval_result",
        {"approvedAt": "2024-01-01T00:00:00Z"},
        {
            "pipelineName": "seed-webapp",
            "stageName": "DeployToEKSProdApproval",
            "actionName": "DeployToEKSProdApproval",
            "token": "tok-123",
            "result": {"summary": "reports read", "status": "Approved"},
        },
    )
    done = stub_aws.decide("seed-webapp", True, "reports read")
    assert (done["execution"], done["token"]) == ("e-1", "tok-123")
    stub.assert_no_pending_responses()


def test_reject_with_nothing_waiting_fake_aws(stub_aws: Aws) -> None:
    """(Stubber fake) With no approval waiting for that execution, reject says so."""
    stub = _stubbed("codepipeline", stub_aws)
    stub.add_response("get_pipeline_state", STATE, {"name": "seed-webapp"})
    with pytest.raises(
        NotFound, match="no approval is waiting in pipeline 'seed-webapp' for execution e-2"
    ):
        stub_aws.decide("seed-webapp", False, "no", execution="e-2")


def test_state_rows_and_build_id_fake_aws(stub_aws: Aws) -> None:
    """(Stubber fake) State becomes stage/action rows; `logs ACTION` finds the build id."""
    rows = state_rows(STATE)
    assert [(r["stage"], r["action"], r["status"]) for r in rows] == [
        ("Build", "AngularBuildAndCreateDockerImage", "Succeeded"),
        ("DeployToEKSProdApproval", "DeployToEKSProdApproval", "InProgress"),
    ]
    stub = _stubbed("codepipeline", stub_aws)
    stub.add_response("get_pipeline_state", STATE, {"name": "seed-webapp"})
    assert (
        stub_aws.build_id_of("seed-webapp", "AngularBuildAndCreateDockerImage")
        == "seed-webapp-Angular:b-1"
    )


def test_endpoint_comes_from_environment(fake_aws: Aws) -> None:
    """Every client talks to CONVEYOR_AWS_ENDPOINT_URL (here the fake), not to AWS."""
    assert (
        fake_aws.client("cloudformation").meta.endpoint_url
        == os.environ["CONVEYOR_AWS_ENDPOINT_URL"]
    )


def test_images_push_logs_in_to_ecr_with_a_token_from_boto3(fake_aws: Aws) -> None:
    """`conveyor images push` to an ECR host asks ECR for a login token (through the same boto3
    session as every other AWS call) and gets `user:password` for the private auth file."""
    from conveyor.images.push import ECR_HOST, ecr_login

    host = "123456789012.dkr.ecr.us-east-1.amazonaws.com"
    assert ECR_HOST.fullmatch(host) and not ECR_HOST.fullmatch("127.0.0.1:5001")
    user, sep, password = ecr_login(host).partition(":")
    assert (user, sep) == ("AWS", ":") and password
