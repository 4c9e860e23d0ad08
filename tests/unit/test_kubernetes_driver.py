"""The kubernetes deploy driver's logic against a fake Kubernetes API (no cluster runs here)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from conveyor.adapters.kubernetes import (
    ClientKubernetesApi,
    KubernetesDeployer,
    ManifestObject,
    rollout_state,
)
from conveyor.adapters.manifests import load_manifests, pin_image
from conveyor.errors import ActionFailed, Unavailable

OLD = "127.0.0.1:5002/webapp@sha256:" + "0" * 64
NEW = "127.0.0.1:5002/webapp@sha256:" + "1" * 64


class FakeKubernetesApi:
    """An in-memory API server whose Deployment controller follows a scripted behaviour.

    `behaviour`: "ok" (rolls out after `polls` reads), "stuck" (never available),
    "deadline" (reports ProgressDeadlineExceeded after `polls` reads).
    """

    def __init__(
        self, behaviour: str = "ok", polls: int = 2, namespaces: tuple[str, ...] = ()
    ) -> None:
        self.behaviour = behaviour
        self.polls = polls
        self.namespaces = set(namespaces)
        self.objects: dict[tuple[str, str | None, str], dict[str, Any]] = {}
        self.calls: list[tuple[str, str]] = []
        self.reads: dict[str, int] = {}
        self.undone: list[tuple[str, Mapping[str, Any]]] = []

    def seed_deployment(self, name: str, namespace: str, image: str) -> None:
        self.objects[("Deployment", namespace, name)] = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace, "generation": 1},
            "spec": {
                "replicas": 2,
                "template": {"spec": {"containers": [{"name": "web", "image": image}]}},
            },
            "status": {
                "observedGeneration": 1,
                "replicas": 2,
                "updatedReplicas": 2,
                "availableReplicas": 2,
            },
        }

    def namespace_exists(self, name: str) -> bool:
        return name in self.namespaces

    def create_namespace(self, name: str) -> None:
        self.calls.append(("create_namespace", name))
        self.namespaces.add(name)

    def apply(self, obj: Mapping[str, Any], namespace: str | None) -> dict[str, Any]:
        kind, name = str(obj["kind"]), str(obj["metadata"]["name"])
        self.calls.append(("apply", f"{kind}/{name}"))
        if namespace is not None and namespace not in self.namespaces:
            raise AssertionError(f"namespace {namespace} does not exist")
        key = (kind, namespace, name)
        body = copy.deepcopy(dict(obj))
        old = self.objects.get(key)
        gen = int(old["metadata"].get("generation", 1)) + 1 if old else 1
        body["metadata"]["generation"] = gen
        if kind == "Deployment":
            replicas = int(body["spec"].get("replicas", 1))
            body["status"] = {
                "observedGeneration": gen - 1,
                "replicas": replicas * 2 if old else 0,
                "updatedReplicas": 0,
                "availableReplicas": 0,
            }
            self.reads[name] = 0
        self.objects[key] = body
        return body

    def get(
        self, api_version: str, kind: str, name: str, namespace: str | None
    ) -> dict[str, Any] | None:
        obj = self.objects.get((kind, namespace, name))
        if obj is None:
            return None
        if kind == "Deployment" and name in self.reads:
            self.reads[name] += 1
            self._progress(obj, self.reads[name])
        return copy.deepcopy(obj)

    def _progress(self, obj: dict[str, Any], reads: int) -> None:
        meta, spec, status = obj["metadata"], obj["spec"], obj["status"]
        status["observedGeneration"] = meta["generation"]
        replicas = int(spec.get("replicas", 1))
        if self.behaviour == "ok" and reads >= self.polls:
            status.update(replicas=replicas, updatedReplicas=replicas, availableReplicas=replicas)
        elif self.behaviour in ("stuck", "deadline"):
            status.update(updatedReplicas=replicas, availableReplicas=0, replicas=replicas)
            if self.behaviour == "deadline" and reads >= self.polls:
                status["conditions"] = [
                    {
                        "type": "Progressing",
                        "status": "False",
                        "reason": "ProgressDeadlineExceeded",
                        "message": 'ReplicaSet "webapp-7d9" has timed out progressing.',
                    }
                ]

    def replace_pod_template(self, name: str, namespace: str, template: Mapping[str, Any]) -> None:
        self.undone.append((name, template))
        obj = self.objects[("Deployment", namespace, name)]
        obj["spec"]["template"] = copy.deepcopy(dict(template))
        self.reads.pop(name, None)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


MANIFESTS = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: webapp
  namespace: somewhere-else
spec:
  replicas: 2
  selector: {matchLabels: {app: webapp}}
  template:
    metadata: {labels: {app: webapp}}
    spec:
      containers:
        - name: web
          image: webapp:latest
          ports: [{containerPort: 8080}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: webapp-config}
data: {GREETING: hello}
---
apiVersion: v1
kind: Service
metadata: {name: webapp}
spec: {selector: {app: webapp}, ports: [{port: 80, targetPort: 8080}]}
"""


def objects(tmp_path: Path) -> list[ManifestObject]:
    (tmp_path / "k8s").mkdir(exist_ok=True)
    (tmp_path / "k8s" / "app.yaml").write_text(MANIFESTS)
    mset = load_manifests(tmp_path, "k8s")
    pin_image(mset, NEW)
    return [
        ManifestObject(body, f"{d.file}:{d.line}")
        for d, body in zip(mset.documents, mset.plain(), strict=True)
    ]


def deployer(api: FakeKubernetesApi, log: list[str] | None = None) -> KubernetesDeployer:
    clock = FakeClock()
    sink = log if log is not None else []
    return KubernetesDeployer(api, clock=clock, sleep=clock.sleep, poll=1.0, log=sink.append)


def test_the_namespace_is_created_and_objects_applied_config_first(tmp_path: Path) -> None:
    """A missing namespace is created; ConfigMap, then Service, then Deployment are applied."""
    api = FakeKubernetesApi()
    result = deployer(api).deploy(objects(tmp_path), namespace="webapp-test", timeout=60)
    assert api.calls == [
        ("create_namespace", "webapp-test"),
        ("apply", "ConfigMap/webapp-config"),
        ("apply", "Service/webapp"),
        ("apply", "Deployment/webapp"),
    ]
    assert result["applied"] == ["ConfigMap/webapp-config", "Service/webapp", "Deployment/webapp"]


def test_objects_go_into_the_environment_namespace_with_the_pinned_digest(tmp_path: Path) -> None:
    """The Deployment lands in the environment's namespace (not the file's) running the digest."""
    api = FakeKubernetesApi(namespaces=("webapp-prod",))
    log: list[str] = []
    deployer(api, log).deploy(objects(tmp_path), namespace="webapp-prod", timeout=60)
    dep = api.objects[("Deployment", "webapp-prod", "webapp")]
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == NEW
    assert ("create_namespace", "webapp-prod") not in api.calls
    assert any("names namespace 'somewhere-else'; applying it into 'webapp-prod'" in m for m in log)


def test_the_deploy_waits_until_every_replica_is_updated_and_available(tmp_path: Path) -> None:
    """Success comes only after the controller reports the rollout complete."""
    api = FakeKubernetesApi(polls=5)
    log: list[str] = []
    deployer(api, log).deploy(objects(tmp_path), namespace="ns", timeout=60)
    assert api.reads["webapp"] == 5
    assert log[-1] == "deployment 'webapp' successfully rolled out"


def test_a_rollout_that_does_not_finish_in_time_is_undone(tmp_path: Path) -> None:
    """On timeout the previous pod template (old digest) is restored and the deploy fails."""
    api = FakeKubernetesApi(behaviour="stuck", namespaces=("ns",))
    api.seed_deployment("webapp", "ns", OLD)
    with pytest.raises(ActionFailed) as info:
        deployer(api).deploy(objects(tmp_path), namespace="ns", timeout=30)
    msg = info.value.message
    assert "rollout not complete after 30s" in msg
    assert "0 of 2 updated replicas are available" in msg
    assert f"rolled back (previous pod template restored): webapp -> {OLD}" in msg
    assert api.undone and api.undone[0][1]["spec"]["containers"][0]["image"] == OLD
    dep = api.objects[("Deployment", "ns", "webapp")]
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == OLD


def test_a_progress_deadline_fails_at_once_with_the_condition(tmp_path: Path) -> None:
    """ProgressDeadlineExceeded ends the wait before the timeout, quoting the condition."""
    api = FakeKubernetesApi(behaviour="deadline", polls=3, namespaces=("ns",))
    api.seed_deployment("webapp", "ns", OLD)
    d = deployer(api)
    with pytest.raises(
        ActionFailed,
        match='exceeded its progress deadline: ReplicaSet "webapp-7d9" has timed out progressing',
    ):
        d.deploy(objects(tmp_path), namespace="ns", timeout=600)
    assert d.clock() < 600
    assert len(api.undone) == 1


def test_a_new_deployment_that_fails_says_there_is_nothing_to_go_back_to(tmp_path: Path) -> None:
    """A first deploy that fails cannot be undone, and the message says so."""
    api = FakeKubernetesApi(behaviour="stuck")
    with pytest.raises(ActionFailed, match="no previous version to roll back to for webapp"):
        deployer(api).deploy(objects(tmp_path), namespace="ns", timeout=10)
    assert api.undone == []


def test_an_api_rejection_names_the_manifest_file_and_line(tmp_path: Path) -> None:
    """An object the API server refuses is reported at its place in the manifests."""

    class RejectingFakeApi(FakeKubernetesApi):
        def apply(self, obj: Mapping[str, Any], namespace: str | None) -> dict[str, Any]:
            if obj["kind"] == "Service":
                raise ActionFailed(
                    "the API server rejected it (HTTP 422): spec.ports[0].port: Invalid value: 0"
                )
            return super().apply(obj, namespace)

    with pytest.raises(
        ActionFailed,
        match=r"k8s/app.yaml:22: applying Service 'webapp' failed: "
        r"the API server rejected it \(HTTP 422\)",
    ):
        deployer(RejectingFakeApi()).deploy(objects(tmp_path), namespace="ns", timeout=10)


def test_rollout_state_waits_for_the_controller_to_observe_the_generation() -> None:
    """A status from before the latest spec change is not taken as success."""
    dep = {
        "metadata": {"name": "w", "generation": 3},
        "spec": {"replicas": 1},
        "status": {
            "observedGeneration": 2,
            "replicas": 1,
            "updatedReplicas": 1,
            "availableReplicas": 1,
        },
    }
    state = rollout_state(dep)
    assert not state.done and "observe generation 3" in state.message
    dep["status"]["observedGeneration"] = 3
    assert rollout_state(dep).done


def test_rollout_state_waits_for_old_replicas_to_terminate() -> None:
    """Old replicas still running keep the rollout in progress."""
    dep = {
        "metadata": {"name": "w", "generation": 2},
        "spec": {"replicas": 2},
        "status": {
            "observedGeneration": 2,
            "replicas": 3,
            "updatedReplicas": 2,
            "availableReplicas": 2,
        },
    }
    assert rollout_state(dep).message == "deployment 'w': 1 old replicas are pending termination"


def test_a_missing_kubeconfig_context_is_a_clear_error(tmp_path: Path) -> None:
    """The real client with a kubeconfig that does not exist explains how to get one."""
    with pytest.raises(
        Unavailable, match="cannot load Kubernetes context 'kind-conveyor'.*kind create cluster"
    ):
        ClientKubernetesApi(context="kind-conveyor", kubeconfig=str(tmp_path / "nope"))
