"""`conveyor rollback` deploys into the environment as recorded at the deployment it restores."""

from __future__ import annotations

from typing import Any

import pytest

from conveyor.engine.rollback import plan_rollback, start_rollback
from conveyor.store.db import Store

pytestmark = pytest.mark.integration

OLD_ENV = {
    "driver": "kubernetes",
    "context": "old-cluster",
    "namespace": "webapp-prod",
    "settings": {"kubeconfig": "/etc/conveyor/old.kubeconfig"},
}
NEW_ENV = {
    "driver": "kubernetes",
    "context": "new-cluster",
    "namespace": "webapp-prod-2",
    "settings": {"kubeconfig": "/etc/conveyor/new.kubeconfig"},
}


def _deployment(store: Store, env_def: dict[str, Any], digest: str, *, record: bool) -> str:
    ex = store.create_execution(
        "web", {"name": "web", "environments": {"prod": env_def}}, variables={}, trigger={}
    )
    details: dict[str, Any] = {
        "stage": "Deploy",
        "action": "DeployProd",
        "artifacts": {"app_src": "sha256:" + "a" * 64},
        "deploy_config": {"manifests": "k8s/"},
    }
    if record:
        details["environment_definition"] = env_def
        details["applied"] = [
            "ConfigMap/webapp-config-h2m4k6b8d9",
            "Service/webapp",
            "Service/extra",
        ]
        details["hashed_config_maps"] = ["ConfigMap/webapp-config-h2m4k6b8d9"]
    store.record_deployment(
        environment="prod",
        pipeline="web",
        execution_id=ex,
        image=f"127.0.0.1:5002/webapp@{digest}",
        digest=digest,
        details=details,
    )
    return ex


@pytest.mark.parametrize("recorded", [True, False], ids=["recorded", "older-deployment"])
def test_a_rollback_targets_the_environment_of_the_restored_deployment(
    db_url: str, recorded: bool
) -> None:
    """The pipeline now names another context/namespace: the rollback uses the recorded one."""
    store = Store(db_url)
    try:
        old = _deployment(store, OLD_ENV, "sha256:" + "0" * 64, record=recorded)
        _deployment(store, NEW_ENV, "sha256:" + "1" * 64, record=True)
        store.save_pipeline("web", {"name": "web", "environments": {"prod": NEW_ENV}}, None)
        plan = plan_rollback(store, "prod", to=old)
        rb = start_rollback(store, plan, failed_execution=None, reason="test", actor="me")
        definition = store.execution(rb).definition
        assert definition["environments"]["prod"] == OLD_ENV
        config = definition["stages"][0]["actions"][0]["config"]
        assert config["replaces"] == ["Service/webapp", "Service/extra"]
    finally:
        store.close()


def test_a_deployment_records_its_environment_as_the_pipeline_file_wrote_it() -> None:
    """What the deploy records reads back as the same environment (context, namespace...)."""
    from conveyor.actions.deploy import environment_definition
    from conveyor.spec.pipeline_file import PipelineFile, to_model

    doc = {
        "name": "web",
        "environments": {"prod": OLD_ENV},
        "stages": [{"name": "S", "actions": [{"name": "A", "type": "shell"}]}],
    }
    env = to_model(PipelineFile.model_validate(doc)).environments["prod"]
    assert environment_definition(env) == OLD_ENV
