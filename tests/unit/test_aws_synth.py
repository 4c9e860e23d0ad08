"""The CloudFormation synthesizer: what the template contains, determinism, refusals."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from conveyor.aws.buildspecs import deploy_buildspec, monitor_buildspec, promote_buildspec
from conveyor.aws.synth import Unmappable, synthesize
from conveyor.aws.template import render
from conveyor.buildspec.spec import parse_buildspec
from conveyor.spec.pipeline_file import load_pipeline

SEED = Path(__file__).resolve().parent / "data" / "seed_eks.yaml"
LOCAL_SEED = (
    Path(__file__).resolve().parents[2] / "src" / "conveyor" / "templates" / "pipeline.yaml"
)


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return synthesize(load_pipeline(SEED)).template


def _of_type(t: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in t["Resources"].items() if v["Type"] == kind}


def _statements(role: dict[str, Any]) -> list[dict[str, Any]]:
    """Every statement of a role, the conditional ones (Fn::If) included."""
    out = []
    for p in role["Properties"]["Policies"]:
        for s in p["PolicyDocument"]["Statement"]:
            out.append(s["Fn::If"][1] if "Fn::If" in s else s)
    return out


def test_same_input_same_bytes() -> None:
    """Two syntheses of the same file render to identical YAML and JSON."""
    a, b = synthesize(load_pipeline(SEED)).template, synthesize(load_pipeline(SEED)).template
    assert render(a, "yaml") == render(b, "yaml")
    assert render(a, "json") == render(b, "json")


def test_pipeline_keeps_stages_actions_and_order(template: dict[str, Any]) -> None:
    """V2, with the seed's stages, action names, runOrder, artifacts and namespaces."""
    props = template["Resources"]["Pipeline"]["Properties"]
    assert (props["PipelineType"], props["ExecutionMode"]) == ("V2", "SUPERSEDED")
    stages = {s["Name"]: s for s in props["Stages"]}
    assert list(stages) == [
        "Source",
        "Build",
        "DeployToEKS",
        "RunSeleniumTest",
        "DeployToEKSProdApproval",
        "DeployToEKSProd",
    ]
    prod = stages["DeployToEKSProd"]
    assert [(a["Name"], a["RunOrder"]) for a in prod["Actions"]] == [
        ("PushImageToEcrProd", 1),
        ("DeployToEKSNamespaceProd", 2),
        ("Monitor", 3),
    ]
    build = stages["Build"]["Actions"][0]
    assert (build["InputArtifacts"], build["OutputArtifacts"], build["Namespace"]) == (
        [{"Name": "app_src"}],
        [{"Name": "build_out"}],
        "Build",
    )
    assert [a["RunOrder"] for a in stages["Source"]["Actions"]] == [1, 1]
    assert props["Variables"] == [{"Name": "APP_VERSION", "DefaultValue": "1.0.0"}]


def test_monitor_is_a_probe_action_with_optional_alarm(template: dict[str, Any]) -> None:
    """The monitor runs the local probes in a CodeBuild Test action (its failure rolls the stage
    back); the CloudWatch alarm condition is optional and treats missing data as healthy."""
    prod = template["Resources"]["Pipeline"]["Properties"]["Stages"][-1]
    monitor = prod["Actions"][-1]
    assert monitor["ActionTypeId"]["Category"] == "Test"
    assert json.loads(monitor["Configuration"]["EnvironmentVariables"]) == [
        {"name": "URL", "value": "#{DeployProd.URL}", "type": "PLAINTEXT"}
    ]
    project = template["Resources"]["MonitorProject"]["Properties"]
    env = {
        v["Name"]: v["Value"] for v in project["Environment"]["EnvironmentVariables"] if "Name" in v
    }
    assert (env["BAKE_SECONDS"], json.loads(env["PROBES"])) == (
        "600",
        [{"path": "/healthz", "minAvailability": 0.99}],
    )
    assert "python3 /tmp/conveyor-probes.py" in project["Source"]["BuildSpec"]
    assert prod["OnFailure"] == {"Result": "ROLLBACK"}
    when, cond, otherwise = prod["OnSuccess"]["Fn::If"]
    assert (when, otherwise) == ("UseMonitorAlarm", {"Ref": "AWS::NoValue"})
    rule = cond["Conditions"][0]["Rules"][0]
    assert rule["RuleTypeId"]["Provider"] == "CloudWatchAlarm"
    assert rule["Configuration"]["AlarmName"] == {"Fn::Sub": "${AWS::StackName}-Monitor"}
    alarm = template["Resources"]["MonitorAlarm"]
    assert alarm["Condition"] == "UseMonitorAlarm"
    assert alarm["Properties"]["AlarmName"] == rule["Configuration"]["AlarmName"]
    assert alarm["Properties"]["TreatMissingData"] == "notBreaching"
    assert template["Parameters"]["UseMonitorAlarm"]["Default"] == "false"


def test_project_timeouts_leave_a_provisioning_margin(template: dict[str, Any]) -> None:
    """Each project's timeout is its action's plus 10 minutes, so `rollout undo` can run."""
    projects = _of_type(template, "AWS::CodeBuild::Project")
    deploy = projects["DeployToEKSProject"]["Properties"]
    env = {
        v["Name"]: v["Value"] for v in deploy["Environment"]["EnvironmentVariables"] if "Name" in v
    }
    assert int(env["ROLLOUT_TIMEOUT"]) == 300
    assert deploy["TimeoutInMinutes"] == 5 + 10


def test_kubectl_role_is_assumable_when_given(template: dict[str, Any]) -> None:
    """With EksKubectlRoleArn, each kubectl project's role may assume exactly that role."""
    for name in ("DeployToEKSRole", "RunTestSeleniumonEc2Role", "MonitorRole"):
        role = template["Resources"][name]
        conditional = [
            s["Fn::If"]
            for p in role["Properties"]["Policies"]
            for s in p["PolicyDocument"]["Statement"]
            if "Fn::If" in s
        ]
        assert conditional == [
            [
                "HasKubectlRole",
                {
                    "Sid": "AssumeKubectlRole",
                    "Effect": "Allow",
                    "Action": "sts:AssumeRole",
                    "Resource": {"Ref": "EksKubectlRoleArn"},
                },
                {"Ref": "AWS::NoValue"},
            ]
        ], name


def test_selenium_project_has_a_browser_and_port_forward(template: dict[str, Any]) -> None:
    """The suite reading the test URL gets the image's browser paths (installed by its
    buildspec), the cluster for port-forward, and read-only + port-forward access there."""
    project = template["Resources"]["RunTestSeleniumonEc2Project"]["Properties"]
    env = {
        v["Name"]: v["Value"] for v in project["Environment"]["EnvironmentVariables"] if "Name" in v
    }
    assert env["CHROME_BINARY"] == "/usr/bin/google-chrome"
    assert env["CHROMEDRIVER"] == "/usr/local/bin/chromedriver"
    assert env["INSTALL_BROWSER"] == "google-chrome"
    assert env["EKS_CLUSTER"] == {"Ref": "TestEksClusterName"}
    entry = template["Resources"]["RunTestSeleniumonEc2AccessEntry"]["Properties"]
    assert entry["KubernetesGroups"] == ["conveyor-port-forward"]
    policy = entry["AccessPolicies"][0]
    assert policy["PolicyArn"]["Fn::Sub"].endswith("AmazonEKSViewPolicy")
    assert policy["AccessScope"] == {"Type": "namespace", "Namespaces": [{"Ref": "TestNamespace"}]}


def test_sources_are_codecommit_with_parameters_and_eventbridge(template: dict[str, Any]) -> None:
    """Bare repository names become CodeCommit sources (parameters) with a push rule."""
    src = template["Resources"]["Pipeline"]["Properties"]["Stages"][0]["Actions"][0]
    assert src["ActionTypeId"]["Provider"] == "CodeCommit"
    assert src["Configuration"]["RepositoryName"] == {"Ref": "CodeCommitDMFRepositoryName"}
    assert template["Parameters"]["CodeCommitDMFRepositoryName"]["Default"] == "webapp"
    rule = template["Resources"]["CodeCommitDMFPushRule"]
    assert rule["Properties"]["EventPattern"]["detail"]["referenceName"] == ["main"]
    assert "file-path filters cannot apply" in rule["Metadata"]["Conveyor"]["why"]
    assert "Triggers" not in template["Resources"]["Pipeline"]["Properties"]


def test_github_source_uses_connection_and_v2_trigger() -> None:
    """A GitHub URL becomes a CodeStar connection source with a filtered V2 trigger."""
    p = load_pipeline(SEED)
    stages = list(p.stages)
    src = stages[0].actions[0]
    stages[0] = replace(
        stages[0],
        actions=(
            replace(
                src, config={"repository": "https://github.com/acme/webapp.git", "branch": "main"}
            ),
            *stages[0].actions[1:],
        ),
    )
    t = synthesize(replace(p, stages=tuple(stages))).template
    action = t["Resources"]["Pipeline"]["Properties"]["Stages"][0]["Actions"][0]
    assert action["ActionTypeId"]["Provider"] == "CodeStarSourceConnection"
    assert action["Configuration"]["ConnectionArn"] == {"Ref": "ConnectionArn"}
    assert t["Parameters"]["CodeCommitDMFFullRepositoryId"]["Default"] == "acme/webapp"
    [trigger] = t["Resources"]["Pipeline"]["Properties"]["Triggers"]
    assert trigger["GitConfiguration"]["Push"] == [
        {"Branches": {"Includes": ["main"]}, "FilePaths": {"Excludes": ["docs/**"]}}
    ]


def test_one_project_per_codebuild_action_with_buildspecs(template: dict[str, Any]) -> None:
    """Builds run their source's buildspec; deploy and promote get generated ones inline."""
    projects = _of_type(template, "AWS::CodeBuild::Project")
    assert sorted(projects) == [
        "AngularBuildAndCreateDockerImageProject",
        "DeployToEKSNamespaceProdProject",
        "DeployToEKSProject",
        "MonitorProject",
        "PushImageToEcrProdProject",
        "RunTestSeleniumonEc2Project",
    ]
    assert (
        projects["AngularBuildAndCreateDockerImageProject"]["Properties"]["Source"]["BuildSpec"]
        == "buildspec.yml"
    )
    assert (
        projects["AngularBuildAndCreateDockerImageProject"]["Properties"]["Environment"][
            "PrivilegedMode"
        ]
        is True
    )
    deploy = projects["DeployToEKSProject"]["Properties"]["Source"]["BuildSpec"]
    assert "aws eks update-kubeconfig" in deploy and "kubectl rollout status" in deploy
    promote = projects["PushImageToEcrProdProject"]["Properties"]["Source"]["BuildSpec"]
    assert "crane copy" in promote and "aws ecr describe-images" in promote
    selenium = projects["RunTestSeleniumonEc2Project"]["Properties"]["Environment"]["Image"]
    assert selenium == {"Ref": "CodeBuildImage"}
    assert template["Parameters"]["CodeBuildImage"]["Default"] == "aws/codebuild/standard:7.0"


@pytest.mark.parametrize(
    "text",
    [deploy_buildspec(), promote_buildspec(), monitor_buildspec()],
    ids=["deploy", "promote", "monitor"],
)
def test_generated_buildspecs_are_valid(text: str) -> None:
    """The generated buildspecs pass Conveyor's own buildspec 0.2 parser."""
    spec = parse_buildspec(text, "generated.yml")
    assert spec.version == "0.2"


def test_repositories_bucket_and_topic(template: dict[str, Any]) -> None:
    """ECR prod immutable, scan on push; bucket encrypted, versioned, private, TLS-only; SNS."""
    repos = _of_type(template, "AWS::ECR::Repository")
    assert repos["ProdRepository"]["Properties"]["ImageTagMutability"] == "IMMUTABLE"
    assert repos["TestRepository"]["Properties"]["ImageTagMutability"] == "MUTABLE"
    assert all(
        r["Properties"]["ImageScanningConfiguration"] == {"ScanOnPush": True}
        for r in repos.values()
    )
    assert all("LifecyclePolicyText" in r["Properties"]["LifecyclePolicy"] for r in repos.values())
    bucket = template["Resources"]["ArtifactBucket"]["Properties"]
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    assert set(bucket["PublicAccessBlockConfiguration"].values()) == {True}
    policy = template["Resources"]["ArtifactBucketPolicy"]["Properties"]["PolicyDocument"][
        "Statement"
    ][0]
    assert (policy["Effect"], policy["Condition"]) == (
        "Deny",
        {"Bool": {"aws:SecureTransport": "false"}},
    )
    assert template["Resources"]["ApprovalSubscription"]["Condition"] == "HasApprovalSubscriber"
    approval = template["Resources"]["Pipeline"]["Properties"]["Stages"][4]["Actions"][0][
        "Configuration"
    ]
    assert approval["NotificationArn"] == {"Ref": "ApprovalTopic"}
    assert "ExternalEntityLink" in approval and approval["CustomData"].startswith(
        "Read the Selenium reports"
    )


def test_least_privilege(template: dict[str, Any]) -> None:
    """No `*` actions; only ecr:GetAuthorizationToken (IAM cannot scope it) has Resource `*`."""
    for name, role in _of_type(template, "AWS::IAM::Role").items():
        for st in _statements(role):
            actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
            assert not any(a == "*" or a.endswith(":*") for a in actions), name
            if st["Resource"] == "*":
                assert actions == ["ecr:GetAuthorizationToken"], name
                assert "justification" in role["Metadata"]["Conveyor"]


def test_eks_access_entries_scoped_to_namespace(template: dict[str, Any]) -> None:
    """Each deploy project's role gets an EKS access entry limited to its namespace."""
    entries = _of_type(template, "AWS::EKS::AccessEntry")
    assert sorted(entries) == [
        "DeployToEKSAccessEntry",
        "DeployToEKSNamespaceProdAccessEntry",
        "MonitorAccessEntry",
        "RunTestSeleniumonEc2AccessEntry",
    ]
    prod = entries["DeployToEKSNamespaceProdAccessEntry"]["Properties"]
    assert prod["ClusterName"] == {"Ref": "ProdEksClusterName"}
    assert prod["AccessPolicies"][0]["AccessScope"] == {
        "Type": "namespace",
        "Namespaces": [{"Ref": "ProdNamespace"}],
    }
    assert template["Parameters"]["ProdEksClusterName"]["Default"] == "seed-prod"


def test_podman_environment_is_refused_unless_mapped() -> None:
    """The local seed (podman) is refused naming each environment; `--target-env` maps it."""
    p = load_pipeline(LOCAL_SEED)
    with pytest.raises(Unmappable) as e:
        synthesize(p)
    assert [f.path for f in e.value.findings] == [
        ("environments", "test", "driver"),
        ("environments", "prod", "driver"),
    ]
    assert "--target-env test=eks" in e.value.findings[0].message
    t = synthesize(p, {"test": "eks", "prod": "eks"}).template
    assert "ProdEksClusterName" in t["Parameters"]


def test_unmapped_action_type_and_local_repository_are_refused() -> None:
    """An action type with no AWS form, and a repository that is a local path, are each named."""
    p = load_pipeline(SEED)
    s0 = p.stages[0]
    bad_src = replace(s0.actions[1], config={"repository": "/srv/git/e2e.git", "branch": "main"})
    odd = replace(p.stages[1].actions[0], type="test.selenium")
    p = replace(
        p,
        stages=(
            replace(s0, actions=(s0.actions[0], bad_src)),
            replace(p.stages[1], actions=(odd,)),
            *p.stages[2:],
        ),
    )
    with pytest.raises(Unmappable) as e:
        synthesize(p)
    messages = [f.message for f in e.value.findings]
    assert any("'/srv/git/e2e.git' is neither a CodeCommit repository name" in m for m in messages)
    assert any("action type 'test.selenium' has no AWS mapping" in m for m in messages)


def test_pipeline_name_beyond_limit_is_refused() -> None:
    """A pipeline name over CodePipeline's 100 characters is a clear error."""
    p = replace(load_pipeline(SEED), name="p" * 101)
    with pytest.raises(Unmappable) as e:
        synthesize(p)
    assert "1-100 characters" in e.value.findings[0].message


def test_json_render_is_json(template: dict[str, Any]) -> None:
    """The JSON rendering parses back to the same template."""
    assert json.loads(render(template, "json")) == template


def test_fixture_is_a_valid_pipeline() -> None:
    """The synth fixture passes Conveyor's own validation with the installed action types."""
    from conveyor.actions.registry import ActionRegistry

    p = load_pipeline(SEED, ActionRegistry().catalogue())
    assert [a.type for _, a in p.all_actions()][-1] == "monitor"


def test_shell_command_reads_variables_from_the_environment() -> None:
    """A `#{...}` in a shell command becomes a CodePipeline environment variable, quoted in the command."""
    from conveyor.model.pipeline import Action, Stage

    p = load_pipeline(SEED)
    check = Action(
        name="Echo",
        type="shell",
        inputs=(p.stages[0].actions[0].outputs[0],),
        config={"commands": ['echo "#{SourceApp.CommitMessage}"']},
    )
    p = replace(p, stages=(*p.stages, Stage(name="Check", actions=(check,))))
    t = synthesize(p).template
    action = t["Resources"]["Pipeline"]["Properties"]["Stages"][-1]["Actions"][0]
    assert action["Commands"] == ['echo "${CONVEYOR_VAR_SOURCEAPP_COMMITMESSAGE}"']
    assert action["EnvironmentVariables"] == [
        {
            "Name": "CONVEYOR_VAR_SOURCEAPP_COMMITMESSAGE",
            "Value": "#{SourceApp.CommitMessage}",
            "Type": "PLAINTEXT",
        }
    ]


def test_report_groups_cache_and_log_groups() -> None:
    """The buildspecs' report groups are stack resources named as CodeBuild names them; the build
    project has an S3 cache; log groups have a retention and deletion policies."""
    t = synthesize(
        load_pipeline(SEED),
        report_groups={"AngularBuildAndCreateDockerImage": ["unit-tests"]},
    ).template
    group = t["Resources"]["AngularBuildAndCreateDockerImageUnitTestsReportGroup"]
    assert group["Type"] == "AWS::CodeBuild::ReportGroup"
    assert group["Properties"]["Name"] == "seed-webapp-AngularBuildAndCreateDockerImage-unit-tests"
    build = t["Resources"]["AngularBuildAndCreateDockerImageProject"]["Properties"]
    assert build["Cache"]["Type"] == "S3"
    for lid, log in _of_type(t, "AWS::Logs::LogGroup").items():
        assert log["Properties"]["RetentionInDays"] == 30, lid
        assert (log["DeletionPolicy"], log["UpdateReplacePolicy"]) == ("Delete", "Delete"), lid


def test_checkov_findings_are_justified_in_metadata(template: dict[str, Any]) -> None:
    """What checkov flags (log groups and ECR without KMS, the test repository's mutable tags,
    no access logs on the artifact bucket) carries a one-line justification checkov reads."""
    expected = {
        "AWS::Logs::LogGroup": {"CKV_AWS_158"},
        "AWS::ECR::Repository": {"CKV_AWS_136"},
        "AWS::S3::Bucket": {"CKV_AWS_18"},
    }
    for lid, res in template["Resources"].items():
        for check in expected.get(res["Type"], set()):
            skips = res["Metadata"]["checkov"]["skip"]
            assert any(s["id"] == check and len(s["comment"]) > 20 for s in skips), (lid, check)
    test_repo = template["Resources"]["TestRepository"]["Metadata"]["checkov"]["skip"]
    assert "CKV_AWS_51" in {s["id"] for s in test_repo}


NATIVE = """\
name: native-demo
environments:
  prod: {registry: prod, repository: webapp, driver: eks, cluster: c1, namespace: webapp-prod}
stages:
  - name: Source
    actions:
      - {name: Src, type: source.git, outputs: [src], namespace: S,
         config: {repository: webapp, branch: main}}
  - name: Deploy
    actions:
      - {name: DeployProd, type: deploy, environment: prod, inputs: [src],
         config: {manifests: k8s/, image: "#{S.CommitId}"}}
"""


def test_native_eks_deploy_where_nothing_reads_its_variables(tmp_path: Path) -> None:
    """--eks-deploy native: a deploy whose variables nothing reads becomes Deploy/AWS/EKS/1 with
    the cluster, namespace and manifests, and the pipeline role gets namespace-scoped access."""
    f = tmp_path / "p.yaml"
    f.write_text(NATIVE)
    synthesis = synthesize(load_pipeline(f), eks_deploy="native")
    t = synthesis.template
    action = t["Resources"]["Pipeline"]["Properties"]["Stages"][1]["Actions"][0]
    assert action["ActionTypeId"] == {
        "Category": "Deploy",
        "Owner": "AWS",
        "Provider": "EKS",
        "Version": "1",
    }
    assert action["Configuration"] == {
        "ClusterName": {"Ref": "ProdEksClusterName"},
        "Namespace": {"Ref": "ProdNamespace"},
        "ManifestFiles": "k8s/",
    }
    entry = t["Resources"]["DeployProdAccessEntry"]["Properties"]
    assert entry["PrincipalArn"] == {"Fn::GetAtt": ["PipelineRole", "Arn"]}
    assert "DeployProdProject" not in t["Resources"]
    assert any("must already name the image by digest" in w for w in synthesis.warnings)


def test_native_eks_deploy_keeps_codebuild_where_its_url_is_read() -> None:
    """In the seed, the Selenium suite and the monitor read the deploys' URLs: they stay
    CodeBuild deploys, with a warning naming the readers."""
    synthesis = synthesize(load_pipeline(SEED), eks_deploy="native")
    providers = {
        a["Name"]: a["ActionTypeId"]["Provider"]
        for s in synthesis.template["Resources"]["Pipeline"]["Properties"]["Stages"]
        for a in s["Actions"]
    }
    assert providers["DeployToEKS"] == providers["DeployToEKSNamespaceProd"] == "CodeBuild"
    assert any("RunTestSeleniumonEc2" in w and "stays a CodeBuild" in w for w in synthesis.warnings)


def test_publishes_base_builds_from_an_ecr_copy_of_the_recipe_tag() -> None:
    """`publishes.base: web` gives the image's project BASE_IMAGE = the stack's base repository
    at the recipe's hash, pull rights on that repository only, an immutable repository, its URI
    as an output, and a warning saying how to fill it; without `base` none of it."""
    from conveyor.images.recipe import WEB

    t = synthesize(load_pipeline(LOCAL_SEED), {"test": "eks", "prod": "eks"})
    res = t.template["Resources"]
    repo = res["WebBaseRepository"]["Properties"]
    assert repo["ImageTagMutability"] == "IMMUTABLE"
    assert t.template["Parameters"]["WebBaseRepositoryName"]["Default"] == "seed-webapp-base-web"
    assert t.template["Outputs"]["WebBaseRepositoryUri"]["Value"] == {
        "Fn::GetAtt": ["WebBaseRepository", "RepositoryUri"]
    }
    project = res["AngularBuildAndCreateDockerImageProject"]["Properties"]
    env = {
        v["Name"]: v["Value"] for v in project["Environment"]["EnvironmentVariables"] if "Name" in v
    }
    assert env["BASE_IMAGE"] == {
        "Fn::Sub": "${WebBaseRepository.RepositoryUri}:" + WEB.content_hash()
    }
    role = res[project["ServiceRole"]["Fn::GetAtt"][0]]
    pull = [s for s in _statements(role) if s.get("Sid") == "EcrPullBase"]
    assert pull and pull[0]["Resource"] == {"Fn::GetAtt": ["WebBaseRepository", "Arn"]}
    assert not any("ecr:PutImage" in s["Action"] for s in pull)
    assert any("conveyor images push web --to" in w for w in t.warnings)
    # the other projects and a pipeline without `base` get nothing of it
    others = [
        v["Properties"]
        for k, v in _of_type(t.template, "AWS::CodeBuild::Project").items()
        if k != "AngularBuildAndCreateDockerImageProject"
    ]
    assert others and all("BASE_IMAGE" not in json.dumps(p["Environment"]) for p in others)
    plain = synthesize(load_pipeline(SEED)).template
    assert "WebBaseRepository" not in plain["Resources"]
