"""`conveyor aws prepare-cluster` against a fake Kubernetes API (no cluster runs here)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from conveyor.aws.cluster import prepare_cluster
from conveyor.cli.main import cli


class FakeKubernetesApiForPrepare:
    """An in-memory API server: namespaces and namespaced objects, every call recorded."""

    def __init__(self, namespaces: tuple[str, ...] = ()) -> None:
        self.namespaces = set(namespaces)
        self.objects: dict[tuple[str, str | None, str], dict[str, Any]] = {}
        self.calls: list[tuple[str, str]] = []

    def namespace_exists(self, name: str) -> bool:
        return name in self.namespaces

    def create_namespace(self, name: str) -> None:
        self.calls.append(("create_namespace", name))
        self.namespaces.add(name)

    def apply(self, obj: Mapping[str, Any], namespace: str | None) -> dict[str, Any]:
        assert namespace in self.namespaces, f"namespace {namespace} does not exist"
        key = (str(obj["kind"]), namespace, str(obj["metadata"]["name"]))
        self.calls.append(("apply", f"{key[0]}/{key[2]} in {namespace}"))
        self.objects[key] = dict(obj)
        return dict(obj)

    def get(
        self, api_version: str, kind: str, name: str, namespace: str | None
    ) -> dict[str, Any] | None:
        return self.objects.get((kind, namespace, name))

    def replace_pod_template(self, name: str, namespace: str, template: Mapping[str, Any]) -> None:
        raise AssertionError("not used")


def test_missing_namespaces_are_created_with_the_port_forward_role() -> None:
    """A fresh cluster gets both namespaces, each with the Role and RoleBinding for the group."""
    api = FakeKubernetesApiForPrepare()
    created = prepare_cluster(api, ["webapp-test", "webapp-prod"], say=lambda _: None)
    assert created == ["webapp-test", "webapp-prod"]
    role = api.objects[("Role", "webapp-test", "conveyor-port-forward")]
    assert {"apiGroups": [""], "resources": ["pods/portforward"], "verbs": ["create"]} in role[
        "rules"
    ]
    binding = api.objects[("RoleBinding", "webapp-prod", "conveyor-port-forward")]
    assert binding["subjects"][0]["kind"] == "Group"
    assert binding["subjects"][0]["name"] == "conveyor-port-forward"


def test_existing_namespaces_are_kept() -> None:
    """A second run creates nothing and only re-applies the Role (idempotent)."""
    api = FakeKubernetesApiForPrepare(namespaces=("webapp-test",))
    assert prepare_cluster(api, ["webapp-test"], say=lambda _: None) == []
    assert ("create_namespace", "webapp-test") not in api.calls


def test_unreachable_context_is_a_clear_error(tmp_path: Path) -> None:
    """A kubeconfig that does not exist: one line naming it, exit 3 (component unavailable)."""
    missing = tmp_path / "nope.kubeconfig"
    r = CliRunner().invoke(
        cli,
        ["aws", "prepare-cluster", "--kubeconfig", str(missing), "--namespace", "webapp-test"],
    )
    assert r.exit_code == 3, r.output
    assert "cannot load Kubernetes context" in r.output
    assert "Traceback" not in r.output
