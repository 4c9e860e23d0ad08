"""The `deploy` and `deploy.rollback` actions on a Kubernetes environment.

The cluster is the fake of a remote API server of tests/unit/test_kubernetes_driver.py,
put in place of the real client; the actions, the manifests and the artifact store are real.
"""

from __future__ import annotations

import secrets
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest

from conveyor.actions.base import ActionContext, ActionResult
from conveyor.actions.deploy import Deploy
from conveyor.actions.rollback import RollbackDeploy
from conveyor.bootstrap import build_services
from conveyor.model.pipeline import Action, Environment, Pipeline, Stage
from conveyor.settings import Settings
from conveyor.store.artifacts import ArtifactStore
from tests.integration.testimages import Log
from tests.unit.test_kubernetes_driver import CONFIG, DEPLOYMENT, SERVICE, FakeKubernetesApi

pytestmark = pytest.mark.integration

V1 = "registry.example.com/team/webapp@sha256:" + "1" * 64
V2 = "registry.example.com/team/webapp@sha256:" + "2" * 64
ENV = Environment(
    "prod",
    driver="kubernetes",
    context="prod-cluster",
    namespace="webapp-prod",
    settings={"keepConfigMaps": 3},
)
METRICS = "apiVersion: v1\nkind: Service\nmetadata: {name: webapp-metrics}\nspec: {ports: [{port: 9090}]}\n"


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch) -> FakeKubernetesApi:
    api = FakeKubernetesApi(namespaces=("webapp-prod",))
    monkeypatch.setattr("conveyor.actions.deploy.ClientKubernetesApi", lambda **_kw: api)
    return api


def sources(tmp_path: Path, banner: str, *, metrics: bool = False) -> Path:
    src = tmp_path / f"src-{secrets.token_hex(2)}"
    (src / "k8s").mkdir(parents=True)
    (src / "k8s" / "configmap.yaml").write_text(CONFIG.replace("v1 banner", banner))
    (src / "k8s" / "deployment.yaml").write_text(DEPLOYMENT)
    (src / "k8s" / "service.yaml").write_text(SERVICE)
    if metrics:
        (src / "k8s" / "metrics.yaml").write_text(METRICS)
    return src


def context(
    tmp_path: Path, action: Action, config: dict[str, Any], inputs: dict[str, Path]
) -> ActionContext:
    workdir = tmp_path / secrets.token_hex(2)
    workdir.mkdir()
    settings = Settings(state_dir=tmp_path / "state", database_url="sqlite://")
    return ActionContext(
        execution_id=secrets.token_hex(6),
        pipeline=Pipeline("webapp", (Stage("Deploy", (action,)),), environments={"prod": ENV}),
        stage="Deploy",
        action=action,
        attempt=1,
        config=config,
        inputs=inputs,
        outputs={},
        workdir=workdir,
        log=Log(),
        cancel=threading.Event(),
        deadline=None,
        state_dir=settings.state_dir,
        services=build_services(settings, ArtifactStore(tmp_path / "artifacts")),
    )


def deploy(tmp_path: Path, src: Path, image: str) -> ActionResult:
    action = Action("DeployProd", "deploy", environment="prod", inputs=("app_src",))
    return Deploy().run(context(tmp_path, action, {"image": image}, {"app_src": src}))


def test_a_kubernetes_deploy_records_its_release_and_environment(
    cluster: FakeKubernetesApi, tmp_path: Path
) -> None:
    """The deployment says what it applied, which ConfigMap is hashed, and where it went."""
    result = deploy(tmp_path, sources(tmp_path, "v1 banner"), V1)
    dep = result.details["deployment"]
    assert dep["driver"] == "kubernetes" and dep["namespace"] == "webapp-prod"
    [cm] = dep["hashed_config_maps"]
    assert cm.startswith("ConfigMap/webapp-config-")
    assert dep["applied"] == [cm, "Service/webapp", "Deployment/webapp"]
    assert dep["environment_definition"] == {
        "driver": "kubernetes",
        "namespace": "webapp-prod",
        "context": "prod-cluster",
        "settings": {"keepConfigMaps": 3},
    }
    assert ("ConfigMap", "webapp-prod", cm.split("/", 1)[1]) in cluster.objects


def test_a_rollback_reapplies_the_whole_release_and_reports_what_it_keeps(
    cluster: FakeKubernetesApi, tmp_path: Path
) -> None:
    """Back to v1: its image and ConfigMap again; the Service v2 added is kept and named."""
    store = ArtifactStore(tmp_path / "artifacts")
    v1_src = sources(tmp_path, "v1 banner")
    first = deploy(tmp_path, v1_src, V1).details["deployment"]
    cluster.settle()
    second = deploy(tmp_path, sources(tmp_path, "v2 banner", metrics=True), V2)
    cluster.settle()
    assert "Service/webapp-metrics" in second.details["deployment"]["added"]
    digest = store.put(v1_src).digest
    shutil.rmtree(v1_src)
    action = Action("DeployProd", "deploy.rollback", environment="prod")
    replaces = [
        r
        for r in second.details["deployment"]["applied"]
        if r not in second.details["deployment"]["hashed_config_maps"]
    ]
    result = RollbackDeploy().run(
        context(
            tmp_path,
            action,
            {"image": V1, "artifacts": {"app_src": digest}, "to": "ex1", "replaces": replaces},
            {},
        )
    )
    dep = result.details["deployment"]
    assert dep["kept"] == ["Service/webapp-metrics"]
    assert "kept 1 object(s) the rolled-back release added: Service/webapp-metrics" in (
        result.message
    )
    live = cluster.objects[("Deployment", "webapp-prod", "webapp")]["spec"]["template"]["spec"]
    assert live["containers"][0]["image"] == V1
    ref = live["containers"][0]["env"][0]["valueFrom"]["configMapKeyRef"]["name"]
    assert f"ConfigMap/{ref}" == first["hashed_config_maps"][0]
    assert ("Service", "webapp-prod", "webapp-metrics") in cluster.objects
