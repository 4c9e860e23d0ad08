"""`conveyor env diff ENV`: the next deploy's changes from the API server's dry run.

The cluster is the fake of a remote API server of tests/unit/test_kubernetes_driver.py,
put in place of the real client; the command, the manifests and the pipeline file are real.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from conveyor.cli.main import cli
from tests.unit.test_kubernetes_driver import FakeKubernetesApi, deployer, release

pytestmark = pytest.mark.integration

IMAGE = "registry.example.com/team/webapp@sha256:" + "2" * 64
PIPELINE = """\
name: web
environments:
  prod: {driver: kubernetes, context: prod-cluster, namespace: ns}
  test: {registry: test}
stages:
  - name: Deploy
    actions:
      - name: DeployProd
        type: deploy
        environment: prod
        inputs: [app_src]
        config: {manifests: k8s/}
"""


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeKubernetesApi:
    """Namespace `ns` serving the good release; the CLI talks to it; cwd holds the files."""
    api = FakeKubernetesApi(namespaces=("ns",))
    deployer(api).deploy(release(tmp_path / "live", image=IMAGE), namespace="ns", timeout=60)
    api.settle()
    monkeypatch.setattr("conveyor.actions.deploy.ClientKubernetesApi", lambda **_kw: api)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CONVEYOR_HOME", str(tmp_path / "state"))
    (tmp_path / "pipeline.yaml").write_text(PIPELINE)
    return api


def env_diff(*args: str) -> Result:
    return CliRunner().invoke(
        cli, ["env", "diff", *args, "--file", "pipeline.yaml", "--image", IMAGE]
    )


def test_a_changed_release_prints_a_diff_per_object_and_exits_1(
    cluster: FakeKubernetesApi, tmp_path: Path
) -> None:
    """A new banner: a new ConfigMap, the Deployment's reference; the Service unchanged."""
    before = cluster.snapshot()
    release(tmp_path, image=IMAGE, banner="v2 banner")
    result = env_diff("prod")
    assert result.exit_code == 1, result.output
    out = result.output
    assert "Service/webapp (k8s/service.yaml:1): unchanged" in out
    assert "Deployment/webapp (k8s/deployment.yaml:1): update" in out
    assert "+  APP_BANNER: v2 banner" in out
    assert "-              name: webapp-config-" in out
    assert "2 of 3 object(s) would change in namespace ns" in out
    assert cluster.objects == before


def test_the_same_release_changes_nothing_and_exits_0(
    cluster: FakeKubernetesApi, tmp_path: Path
) -> None:
    """What runs, diffed again: every object unchanged, exit 0, as JSON too."""
    release(tmp_path, image=IMAGE)
    result = env_diff("prod", "--json")
    assert result.exit_code == 0, result.output
    doc: dict[str, Any] = json.loads(result.output)
    assert doc["changes"] == 0
    assert [o["change"] for o in doc["objects"]] == ["unchanged"] * 3


def test_a_manifest_the_server_refuses_is_exit_2_at_its_line(
    cluster: FakeKubernetesApi, tmp_path: Path
) -> None:
    """An unknown field: the dry run's refusal, file and line, exit 2; nothing changes."""
    before = cluster.snapshot()
    release(tmp_path, image=IMAGE, extra_container_field="imagePullPolicyy: Always")
    result = env_diff("prod")
    assert result.exit_code == 2
    assert "k8s/deployment.yaml:19: Deployment 'webapp'" in result.output
    assert "field not declared in schema" in result.output
    assert "Traceback" not in result.output
    assert cluster.objects == before


def test_a_podman_environment_has_no_server_to_diff_against(
    cluster: FakeKubernetesApi, tmp_path: Path
) -> None:
    """`env diff test` (podman driver): one line saying why, exit 2."""
    release(tmp_path, image=IMAGE)
    result = env_diff("test")
    assert result.exit_code == 2
    assert "environment 'test' uses the podman driver" in result.output
