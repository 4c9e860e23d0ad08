"""`conveyor.testing`: built-in action types run on the fakes, through their typed seams."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.actions.approval import Approval
from conveyor.actions.deploy import Deploy
from conveyor.actions.registry import ActionRegistry
from conveyor.actions.rollback import RollbackDeploy
from conveyor.errors import ActionError, ActionFailed, ConfigError, NotFound
from conveyor.model.pipeline import Action, Environment
from conveyor.testing import FakePlatform, FakeRegistry, fake_services, make_context

DEPLOYMENT = """apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: placeholder, ports: [{containerPort: 80}]}]
"""
TEST_ENV = Environment("test", driver="podman")


def manifests(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    (src / "k8s").mkdir(parents=True)
    (src / "k8s" / "deployment.yaml").write_text(DEPLOYMENT)
    return src


def test_a_deploy_pins_its_image_through_the_services_registry(tmp_path: Path) -> None:
    """Deploy asks `services.registry` for the tag's digest and deploys through
    `services.platform`: no registry client or local platform of its own."""
    platform = FakePlatform()
    image = platform.registry.push("127.0.0.1:5001/web:1.0")
    action = Action("Deploy", "deploy", environment="test", inputs=("src",))
    ctx = make_context(
        tmp_path,
        action,
        config={"image": "127.0.0.1:5001/web:1.0"},
        environments={"test": TEST_ENV},
        inputs={"src": manifests(tmp_path)},
        services=fake_services(tmp_path / "state", platform=platform),
    )
    result = Deploy().run(ctx)
    assert result.variables["ImageDigest"] == image.digest
    [release] = platform.environments["test"].deployed
    assert release["image"] == str(image) and release["primary"] == "web"
    assert f"resolved to {image.digest}" in ctx.log.text


def test_a_deploy_of_a_tag_the_registry_lacks_fails_naming_it(tmp_path: Path) -> None:
    """An image the registry does not have is the action failing, with the reference."""
    action = Action("Deploy", "deploy", environment="test", inputs=("src",))
    ctx = make_context(
        tmp_path,
        action,
        config={"image": "127.0.0.1:5001/web:9.9"},
        environments={"test": TEST_ENV},
        inputs={"src": manifests(tmp_path)},
    )
    with pytest.raises(ActionFailed, match="127.0.0.1:5001/web:9.9"):
        Deploy().run(ctx)


def test_a_deploy_without_an_environment_says_which_action(tmp_path: Path) -> None:
    """The check shared by deploy and monitor names the action and the missing key."""
    ctx = make_context(tmp_path, Action("Ship", "deploy"), config={})
    with pytest.raises(ConfigError, match="action 'Ship' deploys to no environment"):
        Deploy().run(ctx)


def test_a_rollback_restores_manifests_from_the_services_artifact_store(tmp_path: Path) -> None:
    """deploy.rollback reads the manifests by digest from `services.artifacts`."""
    registry = FakeRegistry()
    ref = registry.push("127.0.0.1:5001/web:1.0")
    services = fake_services(tmp_path / "state", registry=registry)
    stored = services.artifacts.put(manifests(tmp_path))
    action = Action("Deploy", "deploy.rollback", environment="test")
    config = {"image": str(ref), "artifacts": {"src": stored.digest}, "to": "ex1"}
    ctx = make_context(
        tmp_path, action, config=config, environments={"test": TEST_ENV}, services=services
    )
    result = RollbackDeploy().run(ctx)
    assert result.details["deployment"]["kind"] == "rollback"
    assert result.details["deployment"]["artifacts"] == {"src": stored.digest}


def test_the_rollback_type_is_known_without_an_engine() -> None:
    """`deploy.rollback` comes through the action registry like any type, not from an engine."""
    assert ActionRegistry().get("deploy.rollback") is RollbackDeploy


def test_the_fake_registry_answers_like_a_registry() -> None:
    """Tags move, digests stay; an unknown reference is NotFound."""
    registry = FakeRegistry()
    old = registry.push("127.0.0.1:5001/web:1", b"a")
    new = registry.push("127.0.0.1:5001/web:1", b"b")
    assert registry.resolve("127.0.0.1:5001/web:1") == new.digest != old.digest
    assert registry.resolve(str(old)) == old.digest
    assert registry.has_manifest("127.0.0.1:5001", "web", old.digest)
    [blob] = registry.blobs(new)
    assert registry.has_blob("127.0.0.1:5001", "web", blob.digest)
    assert not registry.has_blob("127.0.0.1:5002", "web", blob.digest)
    with pytest.raises(NotFound):
        registry.resolve("127.0.0.1:5001/web:2")


def test_an_approval_without_a_gate_is_a_tool_error(tmp_path: Path) -> None:
    """The approval type needs the engine's gate; a context without one says so."""
    ctx = make_context(tmp_path, Action("Approve", "approval"), config={})
    with pytest.raises(ActionError, match="approval gate"):
        Approval().run(ctx)
