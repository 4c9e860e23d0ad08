"""The kubernetes deploy driver against a fake of a remote Kubernetes API server.

No API server can run on this machine. `FakeKubernetesApi` answers as the real one did
when the driver was tried against kube-apiserver 1.36 (issue #20): server-side apply with
dry-run (no change), defaulting (`progressDeadlineSeconds: 600`), HTTP 422 for an invalid
Service port, HTTP 500 "field not declared in schema" for an unknown field in an apply,
immutable ConfigMaps and selectors; its errors go through the driver's own classification
(`api_error`) from the status and JSON body the real server sends.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from conveyor.adapters.kubernetes import (
    FIELD_MANAGER,
    ClientKubernetesApi,
    KubernetesDeployer,
    ManifestObject,
    api_error,
    comparable,
    rollout_state,
)
from conveyor.adapters.manifests import CONFIG_OF_LABEL, load_manifests, pin_image
from conveyor.errors import ActionError, ActionFailed, Unavailable

OLD = "127.0.0.1:5002/webapp@sha256:" + "0" * 64
NEW = "127.0.0.1:5002/webapp@sha256:" + "1" * 64

Key = tuple[str, str | None, str]

# the fields the fake's schema knows (the real one knows more; these are the ones used here)
_SCHEMA: dict[str, frozenset[str]] = {
    "Deployment.spec": frozenset(
        {
            "replicas",
            "selector",
            "template",
            "strategy",
            "progressDeadlineSeconds",
            "revisionHistoryLimit",
            "minReadySeconds",
            "paused",
        }
    ),
    "container": frozenset(
        {
            "name",
            "image",
            "imagePullPolicy",
            "ports",
            "env",
            "envFrom",
            "command",
            "args",
            "resources",
            "readinessProbe",
            "livenessProbe",
            "startupProbe",
            "securityContext",
            "volumeMounts",
            "workingDir",
        }
    ),
}


def _status(code: int, reason: str, message: str, field: str | None = None) -> str:
    """A `Status` body as the API server sends it (with the cause's field for a 422)."""
    doc: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if field:
        doc["details"] = {
            "causes": [{"reason": "FieldValueInvalid", "message": message, "field": field}]
        }
    return json.dumps(doc)


class FakeKubernetesApi:
    """A fake of a remote Kubernetes API server (objects in memory) and its controllers.

    `behaviour` of the Deployment controller: "ok" (rolls out after `polls` reads), "stuck"
    (never available), "deadline" (ProgressDeadlineExceeded after `polls` reads).
    `fail_apply`: (kind, HTTP status, Status body) answered to the next real (not dry-run)
    apply of that kind, e.g. an etcd timeout after the dry run passed.
    A dry run admits and answers the object as a write would, and stores nothing. Every
    request's `fieldValidation` is recorded; an apply is strict about unknown fields
    whatever it says (server-side apply always is: HTTP 500 "field not declared in schema").
    """

    def __init__(
        self, behaviour: str = "ok", polls: int = 2, namespaces: tuple[str, ...] = ()
    ) -> None:
        self.behaviour = behaviour
        self.polls = polls
        self.namespaces = set(namespaces)
        self.objects: dict[Key, dict[str, Any]] = {}
        self.calls: list[tuple[str, str]] = []
        self.requests: list[dict[str, Any]] = []  # every apply: ref, dryRun, fieldValidation
        self.reads: dict[str, int] = {}
        self.fail_apply: tuple[str, int, str] | None = None
        self._version = 100
        self._clock = 0

    # -- the API ---------------------------------------------------------------------------

    def namespace_exists(self, name: str) -> bool:
        return name in self.namespaces

    def create_namespace(self, name: str) -> None:
        self.calls.append(("create_namespace", name))
        self.namespaces.add(name)

    def apply(
        self,
        obj: Mapping[str, Any],
        namespace: str | None,
        *,
        dry_run: bool = False,
        field_validation: str = "Strict",
    ) -> dict[str, Any]:
        kind, name = str(obj["kind"]), str(obj["metadata"]["name"])
        self.calls.append(("dry-run" if dry_run else "apply", f"{kind}/{name}"))
        self.requests.append(
            {"ref": f"{kind}/{name}", "dryRun": dry_run, "fieldValidation": field_validation}
        )
        if namespace is not None and namespace not in self.namespaces:
            raise api_error(404, _status(404, "NotFound", f'namespaces "{namespace}" not found'))
        key = (kind, namespace, name)
        old = self.objects.get(key)
        new = self._admit(copy.deepcopy(dict(obj)), old, namespace)
        if dry_run:
            return copy.deepcopy(new)
        if self.fail_apply and self.fail_apply[0] == kind:
            _, code, body = self.fail_apply
            self.fail_apply = None
            raise api_error(code, body)
        if old is not None and comparable(old) == comparable(new):
            return copy.deepcopy(old)  # an apply that changes nothing writes nothing
        self.objects[key] = new
        if kind == "Deployment" and new["metadata"]["generation"] != (old or {"metadata": {}})[
            "metadata"
        ].get("generation"):
            self.reads[name] = 0
        return copy.deepcopy(new)

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

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None) -> None:
        self.calls.append(("delete", f"{kind}/{name}"))
        self.objects.pop((kind, namespace, name), None)

    def list(
        self, api_version: str, kind: str, namespace: str, label_selector: str
    ) -> list[dict[str, Any]]:
        label, _, value = label_selector.partition("=")
        return [
            copy.deepcopy(o)
            for (k, ns, _), o in self.objects.items()
            if k == kind and ns == namespace and o["metadata"].get("labels", {}).get(label) == value
        ]

    # -- what the real server does with an apply -------------------------------------------

    def _admit(
        self, body: dict[str, Any], old: dict[str, Any] | None, namespace: str | None
    ) -> dict[str, Any]:
        kind, name = body["kind"], body["metadata"]["name"]
        where = f"{namespace}/{name}; {body['apiVersion']}, Kind={kind}"
        for path in self._unknown_fields(body):
            raise api_error(
                500,
                _status(
                    500,
                    "",
                    f"failed to create typed patch object ({where}): {path}: "
                    "field not declared in schema",
                ),
            )
        spec = body.get("spec") or {}
        if kind == "Service":
            for i, p in enumerate(spec.get("ports") or []):
                if not 1 <= int(p.get("port", 0)) <= 65535:
                    raise api_error(
                        422,
                        _status(
                            422,
                            "Invalid",
                            f'Service "{name}" is invalid: spec.ports[{i}].port: Invalid '
                            f"value: {p.get('port')}: must be between 1 and 65535, inclusive",
                            f"spec.ports[{i}].port",
                        ),
                    )
            spec.setdefault("type", "ClusterIP")
            spec["clusterIP"] = (old or {}).get("spec", {}).get("clusterIP") or "10.96.0.17"
        if (
            kind == "ConfigMap"
            and old is not None
            and old.get("immutable")
            and old.get("data") != body.get("data")
        ):
            raise api_error(
                422,
                _status(
                    422,
                    "Invalid",
                    f'ConfigMap "{name}" is invalid: data: Forbidden: field is immutable '
                    "when `immutable` is set",
                ),
            )
        if kind == "Deployment":
            spec.setdefault("progressDeadlineSeconds", 600)
            spec.setdefault("revisionHistoryLimit", 10)
            if old is not None and old["spec"].get("selector") != spec.get("selector"):
                raise api_error(
                    422,
                    _status(
                        422,
                        "Invalid",
                        f'Deployment.apps "{name}" is invalid: spec.selector: Invalid value: '
                        f"{spec.get('selector')}: field is immutable",
                    ),
                )
        meta = body["metadata"]
        if old is None:
            self._clock += 1
            meta["uid"] = f"uid-{kind}-{name}"
            meta["creationTimestamp"] = (
                f"2026-11-30T22:{self._clock // 60:02d}:{self._clock % 60:02d}Z"
            )
            meta["generation"] = 1
        else:
            for k in ("uid", "creationTimestamp"):
                meta[k] = old["metadata"][k]
            changed = old.get("spec") != body.get("spec")
            meta["generation"] = old["metadata"]["generation"] + (1 if changed else 0)
        meta["managedFields"] = [{"manager": FIELD_MANAGER, "operation": "Apply"}]
        if old is None or comparable(old) != comparable(body):
            self._version += 1
            meta["resourceVersion"] = str(self._version)
        else:
            meta["resourceVersion"] = old["metadata"]["resourceVersion"]
        if kind == "Deployment":
            replicas = int(spec.get("replicas", 1))
            if old is not None and meta["generation"] == old["metadata"]["generation"]:
                body["status"] = copy.deepcopy(old.get("status"))
            else:
                body["status"] = {
                    "observedGeneration": meta["generation"] - 1,
                    "replicas": replicas * 2 if old else 0,
                    "updatedReplicas": 0,
                    "availableReplicas": 0,
                }
        return body

    @staticmethod
    def _unknown_fields(body: Mapping[str, Any]) -> list[str]:
        if body["kind"] != "Deployment":
            return []
        spec = body.get("spec") or {}
        bad = [f".spec.{k}" for k in spec if k not in _SCHEMA["Deployment.spec"]]
        pod = (spec.get("template") or {}).get("spec") or {}
        for c in pod.get("containers") or []:
            bad += [
                f'.spec.template.spec.containers[name="{c.get("name")}"].{k}'
                for k in c
                if k not in _SCHEMA["container"]
            ]
        return bad

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

    # -- helpers for the tests --------------------------------------------------------------

    def settle(self) -> None:
        """The controllers finish what they were doing (a rollout completes)."""
        for (kind, _, name), obj in self.objects.items():
            if kind == "Deployment":
                replicas = int(obj["spec"].get("replicas", 1))
                obj["status"] = {
                    "observedGeneration": obj["metadata"]["generation"],
                    "replicas": replicas,
                    "updatedReplicas": replicas,
                    "availableReplicas": replicas,
                }
                self.reads.pop(name, None)

    def snapshot(self) -> dict[Key, dict[str, Any]]:
        return copy.deepcopy(self.objects)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


DEPLOYMENT = """\
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
          env:
            - name: APP_BANNER
              valueFrom: {configMapKeyRef: {name: webapp-config, key: APP_BANNER}}
"""
CONFIG = """\
apiVersion: v1
kind: ConfigMap
metadata: {name: webapp-config}
data: {APP_BANNER: "v1 banner"}
"""
SERVICE = """\
apiVersion: v1
kind: Service
metadata: {name: webapp}
spec: {selector: {app: webapp}, ports: [{port: 80, targetPort: 8080}]}
"""


def release(
    tmp_path: Path,
    *,
    image: str = NEW,
    banner: str = "v1 banner",
    port: int = 80,
    deadline: int | None = None,
    extra_container_field: str = "",
    hashed: bool = True,
) -> list[ManifestObject]:
    """The example's three files, changed as a test needs, pinned and ready to apply."""
    from conveyor.actions.deploy import kubernetes_release
    from conveyor.model.pipeline import Environment

    k8s = tmp_path / "k8s"
    k8s.mkdir(parents=True, exist_ok=True)
    dep = DEPLOYMENT
    if deadline is not None:
        dep = dep.replace(
            "  replicas: 2\n", f"  replicas: 2\n  progressDeadlineSeconds: {deadline}\n"
        )
    if extra_container_field:
        dep += f"          {extra_container_field}\n"
    (k8s / "configmap.yaml").write_text(CONFIG.replace("v1 banner", banner))
    (k8s / "deployment.yaml").write_text(dep)
    (k8s / "service.yaml").write_text(SERVICE)
    mset = load_manifests(tmp_path, "k8s")
    pin_image(mset, image)
    env = Environment(name="test", driver="kubernetes", settings={"hashConfigMaps": hashed})
    objects = kubernetes_release(env, mset, lambda _m: None)
    for o in objects:  # a port Conveyor's own checks refuse: set after them, for the server
        if o.kind == "Service":
            o.body["spec"]["ports"][0]["port"] = port
    return objects


def deployer(api: FakeKubernetesApi, log: list[str] | None = None) -> KubernetesDeployer:
    clock = FakeClock()
    sink = log if log is not None else []
    return KubernetesDeployer(api, clock=clock, sleep=clock.sleep, poll=1.0, log=sink.append)


def live_release(api: FakeKubernetesApi, tmp_path: Path, *, hashed: bool = True) -> None:
    """The environment serving the good release: OLD image, "v1 banner", port 80."""
    api.namespaces.add("ns")
    deployer(api).deploy(release(tmp_path, image=OLD, hashed=hashed), namespace="ns", timeout=60)
    api.settle()
    api.calls.clear()
    api.requests.clear()


def assert_unchanged(before: dict[Key, dict[str, Any]], api: FakeKubernetesApi) -> None:
    """Every object of the environment is as it was (the same set, the same content)."""
    assert sorted(api.objects) == sorted(before)
    for key, obj in before.items():
        assert comparable(api.objects[key]) == comparable(obj), key


def dep_of(api: FakeKubernetesApi) -> dict[str, Any]:
    return api.objects[("Deployment", "ns", "webapp")]


# ---- the dry run and the order of writes -------------------------------------------------------


def test_every_object_is_dry_run_before_anything_is_written_config_first(tmp_path: Path) -> None:
    """A missing namespace is created, the whole release dry-run, then applied config first."""
    api = FakeKubernetesApi()
    result = deployer(api).deploy(release(tmp_path), namespace="webapp-test", timeout=60)
    cm = next(n for k, _, n in api.objects if k == "ConfigMap")
    assert api.calls == [
        ("create_namespace", "webapp-test"),
        ("dry-run", f"ConfigMap/{cm}"),
        ("dry-run", "Service/webapp"),
        ("dry-run", "Deployment/webapp"),
        ("apply", f"ConfigMap/{cm}"),
        ("apply", "Service/webapp"),
        ("apply", "Deployment/webapp"),
    ]
    assert result["applied"] == [f"ConfigMap/{cm}", "Service/webapp", "Deployment/webapp"]
    assert result["added"] == result["applied"]


def test_every_apply_is_strict_and_the_dry_run_changes_nothing(tmp_path: Path) -> None:
    """Dry runs and applies all ask for fieldValidation=Strict; a dry run alone writes nothing."""
    api = FakeKubernetesApi()
    live_release(api, tmp_path)
    before = api.snapshot()
    deployer(api).dry_run(release(tmp_path, banner="new", deadline=5), "ns")
    assert_unchanged(before, api)
    assert {r["fieldValidation"] for r in api.requests} == {"Strict"}
    assert all(r["dryRun"] for r in api.requests)


def test_objects_go_into_the_environment_namespace_with_the_pinned_digest(tmp_path: Path) -> None:
    """The Deployment lands in the environment's namespace (not the file's) running the digest."""
    api = FakeKubernetesApi(namespaces=("webapp-prod",))
    log: list[str] = []
    deployer(api, log).deploy(release(tmp_path), namespace="webapp-prod", timeout=60)
    dep = api.objects[("Deployment", "webapp-prod", "webapp")]
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == NEW
    assert ("create_namespace", "webapp-prod") not in api.calls
    assert any("names namespace 'somewhere-else'; applying it into 'webapp-prod'" in m for m in log)


def test_the_deploy_waits_until_every_replica_is_updated_and_available(tmp_path: Path) -> None:
    """Success comes only after the controller reports the rollout complete."""
    api = FakeKubernetesApi(polls=5)
    log: list[str] = []
    deployer(api, log).deploy(release(tmp_path), namespace="ns", timeout=60)
    assert api.reads["webapp"] == 5
    assert log[-1] == "deployment 'webapp' successfully rolled out"


def test_an_unchanged_release_changes_no_resource_version(tmp_path: Path) -> None:
    """Deploying what runs again writes nothing: every resourceVersion stays."""
    api = FakeKubernetesApi()
    live_release(api, tmp_path)
    before = api.snapshot()
    result = deployer(api).deploy(release(tmp_path, image=OLD), namespace="ns", timeout=60)
    assert api.objects == before
    assert result["changed"] == [] and result["added"] == []


# ---- defect 1: a rejected manifest left the namespace half-updated ---------------------------


@pytest.mark.parametrize("hashed", [True, False], ids=["hashed-configmaps", "plain-configmaps"])
def test_a_service_rejected_with_422_leaves_every_object_as_it_was(
    tmp_path: Path, hashed: bool
) -> None:
    """ConfigMap changed, then the Service refused (port 70000): nothing changes, file:line."""
    api = FakeKubernetesApi()
    live_release(api, tmp_path, hashed=hashed)
    before = api.snapshot()
    with pytest.raises(ActionFailed) as info:
        deployer(api).deploy(
            release(tmp_path, banner="NEW BANNER", port=70000, hashed=hashed),
            namespace="ns",
            timeout=60,
        )
    msg = info.value.message
    assert "nothing was changed" in msg
    assert (
        "k8s/service.yaml:4: Service 'webapp': the API server rejected it (HTTP 422 Invalid): "
        'Service "webapp" is invalid: spec.ports[0].port: Invalid value: 70000' in msg
    )
    assert [c for c in api.calls if c[0] != "dry-run"] == []
    assert_unchanged(before, api)
    banners = [o["data"]["APP_BANNER"] for (k, _, _), o in api.objects.items() if k == "ConfigMap"]
    assert banners == ["v1 banner"]


def test_every_rejected_object_is_reported_at_once(tmp_path: Path) -> None:
    """Two bad objects: the dry run names both, each at its file and line."""
    api = FakeKubernetesApi(namespaces=("ns",))
    with pytest.raises(ActionFailed) as info:
        deployer(api).deploy(
            release(tmp_path, port=0, extra_container_field="imagePullPolicyy: Always"),
            namespace="ns",
            timeout=60,
        )
    assert "rejected 2 of 3 object(s)" in info.value.message
    assert "k8s/service.yaml:4: Service 'webapp'" in info.value.message
    assert "k8s/deployment.yaml:19: Deployment 'webapp'" in info.value.message
    assert api.objects == {}


# ---- defect 2: undo restored only the pod template --------------------------------------------


@pytest.mark.parametrize("hashed", [True, False], ids=["hashed-configmaps", "plain-configmaps"])
def test_a_failed_rollout_restores_every_object_and_deployment_field(
    tmp_path: Path, hashed: bool
) -> None:
    """FAILED-RELEASE config and progressDeadlineSeconds 5 fail: all of it goes back."""
    api = FakeKubernetesApi(polls=3)
    live_release(api, tmp_path, hashed=hashed)
    before = api.snapshot()
    api.behaviour = "deadline"
    with pytest.raises(ActionFailed) as info:
        deployer(api).deploy(
            release(tmp_path, banner="FAILED-RELEASE", deadline=5, hashed=hashed),
            namespace="ns",
            timeout=600,
        )
    msg = info.value.message
    assert 'exceeded its progress deadline: ReplicaSet "webapp-7d9" has timed out' in msg
    assert "restored as before the release: " in msg and f"Deployment/webapp ({OLD})" in msg
    assert_unchanged(before, api)
    dep = dep_of(api)
    assert dep["spec"]["progressDeadlineSeconds"] == 600
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == OLD
    banners = [o["data"]["APP_BANNER"] for (k, _, _), o in api.objects.items() if k == "ConfigMap"]
    assert banners == ["v1 banner"]
    if hashed:
        assert "removed (new in this release): ConfigMap/webapp-config-" in msg


def test_a_rollout_that_does_not_finish_in_time_is_undone(tmp_path: Path) -> None:
    """On timeout the previous Deployment (old digest) is restored and the deploy fails."""
    api = FakeKubernetesApi()
    live_release(api, tmp_path)
    before = api.snapshot()
    api.behaviour = "stuck"
    with pytest.raises(ActionFailed) as info:
        deployer(api).deploy(release(tmp_path), namespace="ns", timeout=30)
    msg = info.value.message
    assert "rollout not complete after 30s" in msg
    assert "0 of 2 updated replicas are available" in msg
    assert_unchanged(before, api)


def test_a_first_release_that_fails_is_removed_object_by_object(tmp_path: Path) -> None:
    """Nothing ran before: the objects the failed release added are deleted, and said so."""
    api = FakeKubernetesApi(behaviour="stuck", namespaces=("ns",))
    with pytest.raises(ActionFailed, match=r"removed \(new in this release\): ConfigMap/"):
        deployer(api).deploy(release(tmp_path), namespace="ns", timeout=10)
    assert api.objects == {}


def test_an_apply_that_fails_half_way_restores_what_was_applied(tmp_path: Path) -> None:
    """The dry run passed but the server fails on the Deployment: the rest is put back."""
    api = FakeKubernetesApi()
    live_release(api, tmp_path, hashed=False)
    before = api.snapshot()
    api.fail_apply = (
        "Deployment",
        500,
        _status(500, "InternalError", "etcdserver: request timed out"),
    )
    with pytest.raises(ActionError) as info:
        deployer(api).deploy(
            release(tmp_path, banner="NEW", port=81, hashed=False), namespace="ns", timeout=10
        )
    assert not isinstance(info.value, ActionFailed)
    assert "k8s/deployment.yaml:1: applying Deployment/webapp failed" in info.value.message
    assert "restored as before the release: ConfigMap/webapp-config, Service/webapp" in (
        info.value.message
    )
    assert_unchanged(before, api)


# ---- defect 3: a typo in a field name was a broken tool ----------------------------------------


def test_an_unknown_field_answered_with_500_is_a_manifest_error(tmp_path: Path) -> None:
    """`imagePullPolicyy` gets HTTP 500 "field not declared in schema": ActionFailed, file:line."""
    api = FakeKubernetesApi()
    live_release(api, tmp_path)
    before = api.snapshot()
    with pytest.raises(ActionFailed) as info:
        deployer(api).deploy(
            release(tmp_path, banner="NEW", extra_container_field="imagePullPolicyy: Always"),
            namespace="ns",
            timeout=10,
        )
    assert info.value.reason == "ActionFailed"
    assert (
        "k8s/deployment.yaml:19: Deployment 'webapp': the API server rejected it (HTTP 500): "
        "failed to create typed patch object (ns/webapp; apps/v1, Kind=Deployment): "
        '.spec.template.spec.containers[name="web"].imagePullPolicyy: field not declared '
        "in schema"
    ) in info.value.message
    assert_unchanged(before, api)


@pytest.mark.parametrize(
    ("status", "reason", "message"),
    [
        (
            500,
            "",
            "failed to create typed patch object (...): .spec.x: field not declared in schema",
        ),
        (400, "BadRequest", 'strict decoding error: unknown field "spec.template.spec.foo"'),
        (400, "BadRequest", 'strict decoding error: json: duplicate field "image"'),
        (422, "Invalid", 'Deployment.apps "w" is invalid: spec.selector: field is immutable'),
        (422, "Invalid", "spec.replicas: Invalid value: -1: must be greater than or equal to 0"),
    ],
)
def test_manifest_errors_are_action_failed_whatever_the_code(
    status: int, reason: str, message: str
) -> None:
    """Schema errors, invalid values and immutable fields say: the manifest is wrong."""
    err = api_error(status, _status(status, reason, message))
    assert isinstance(err, ActionFailed)
    assert message in err.message


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (500, _status(500, "InternalError", "etcdserver: request timed out")),
        (503, "service unavailable"),
        (401, _status(401, "Unauthorized", "Unauthorized")),
        (None, "Connection refused"),
    ],
)
def test_a_failing_or_unreachable_server_is_a_tool_error(status: int | None, body: str) -> None:
    """Only the server's own trouble (or missing rights) is ToolError, not ActionFailed."""
    err = api_error(status, body)
    assert not isinstance(err, ActionFailed)
    assert err.reason == "ToolError"


# ---- content-hashed ConfigMaps -----------------------------------------------------------------


def test_a_changed_config_is_a_new_configmap_and_the_old_one_stays(tmp_path: Path) -> None:
    """The release's Deployment points at a new hashed ConfigMap; the running one is untouched."""
    api = FakeKubernetesApi()
    live_release(api, tmp_path)
    old_cm = {k: copy.deepcopy(o) for k, o in api.objects.items() if k[0] == "ConfigMap"}
    deployer(api).deploy(release(tmp_path, banner="v2 banner"), namespace="ns", timeout=60)
    for key, obj in old_cm.items():
        assert api.objects[key] == obj
    ref = dep_of(api)["spec"]["template"]["spec"]["containers"][0]["env"][0]["valueFrom"]
    name = ref["configMapKeyRef"]["name"]
    assert name.startswith("webapp-config-") and ("ConfigMap", "ns", name) not in old_cm
    assert api.objects[("ConfigMap", "ns", name)]["data"] == {"APP_BANNER": "v2 banner"}
    assert api.objects[("ConfigMap", "ns", name)]["immutable"] is True


def test_going_back_to_a_release_reuses_its_configmap(tmp_path: Path) -> None:
    """Redeploying the previous release is a pointer change: its ConfigMap is not rewritten."""
    api = FakeKubernetesApi()
    live_release(api, tmp_path)
    first = {k: copy.deepcopy(o) for k, o in api.objects.items() if k[0] == "ConfigMap"}
    deployer(api).deploy(release(tmp_path, image=NEW, banner="v2"), namespace="ns", timeout=60)
    api.settle()
    deployer(api).deploy(release(tmp_path, image=OLD), namespace="ns", timeout=60)
    for key, obj in first.items():
        assert api.objects[key]["metadata"]["resourceVersion"] == obj["metadata"]["resourceVersion"]
    ref = dep_of(api)["spec"]["template"]["spec"]["containers"][0]["env"][0]["valueFrom"]
    assert ("ConfigMap", "ns", ref["configMapKeyRef"]["name"]) in first


def test_hashed_configmaps_of_the_last_five_releases_are_kept(tmp_path: Path) -> None:
    """Seven releases with seven configs: the five newest ConfigMaps stay, the current among them."""
    api = FakeKubernetesApi(namespaces=("ns",))
    names: list[str] = []
    removed: list[str] = []
    for i in range(7):
        result = deployer(api).deploy(
            release(tmp_path, banner=f"release {i}"), namespace="ns", timeout=60
        )
        api.settle()
        names.append(next(r for r in result["applied"] if r.startswith("ConfigMap/")))
        removed += result["removed_config_maps"]
    left = sorted(f"ConfigMap/{n}" for k, _, n in api.objects if k == "ConfigMap")
    assert left == sorted(names[2:])
    assert removed == names[:2]
    assert all(
        o["metadata"]["labels"][CONFIG_OF_LABEL] == "webapp-config"
        for (k, _, _), o in api.objects.items()
        if k == "ConfigMap"
    )


# ---- env diff --------------------------------------------------------------------------------


def test_the_diff_shows_what_the_next_deploy_changes_per_object(tmp_path: Path) -> None:
    """A new banner and a deadline: a new ConfigMap, a Deployment diff; nothing is written."""
    api = FakeKubernetesApi()
    live_release(api, tmp_path)
    before = api.snapshot()
    diffs = deployer(api).diff(release(tmp_path, image=OLD, banner="v2", deadline=5), "ns")
    assert api.objects == before
    by_ref = {d.ref.split("-")[0] if d.ref.startswith("ConfigMap") else d.ref: d for d in diffs}
    assert by_ref["ConfigMap/webapp"].change == "create"
    assert "+  APP_BANNER: v2" in by_ref["ConfigMap/webapp"].diff
    assert by_ref["Service/webapp"].change == "unchanged"
    dep = by_ref["Deployment/webapp"]
    assert dep.change == "update" and dep.where == "k8s/deployment.yaml:1"
    assert "--- live/Deployment/webapp" in dep.diff
    assert "-  progressDeadlineSeconds: 600\n+  progressDeadlineSeconds: 5\n" in dep.diff
    assert "managedFields" not in dep.diff and "status" not in dep.diff
    assert "resourceVersion" not in dep.diff


def test_the_diff_of_an_unchanged_release_is_empty(tmp_path: Path) -> None:
    """What runs, diffed against itself: every object unchanged."""
    api = FakeKubernetesApi()
    live_release(api, tmp_path)
    diffs = deployer(api).diff(release(tmp_path, image=OLD), "ns")
    assert [d.change for d in diffs] == ["unchanged"] * 3


def test_the_diff_into_a_missing_namespace_creates_everything(tmp_path: Path) -> None:
    """No namespace yet: every object would be created; the namespace is not created."""
    api = FakeKubernetesApi()
    diffs = deployer(api).diff(release(tmp_path), "new-ns")
    assert [d.change for d in diffs] == ["create"] * 3
    assert api.namespaces == set() and api.calls == []


# ---- rollout status and the real client ---------------------------------------------------------


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
