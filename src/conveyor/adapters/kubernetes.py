"""The `kubernetes` deploy driver: server-side apply, wait for the rollout, undo on failure.

`KubernetesDeployer(api).deploy(objects, namespace=..., timeout=...)`:

1. creates the namespace if it is missing;
2. remembers each Deployment's current pod template (to undo to);
3. server-side applies every object into the namespace (field manager `conveyor`,
   conflicts forced: Conveyor owns what it applies), config first (Namespace, ConfigMap,
   Secret, ServiceAccount), then Services, then workloads;
4. waits for each Deployment's rollout as `kubectl rollout status` does: the controller
   has observed the new generation, all replicas are updated and available, no old replica
   is left; the `Progressing` condition with reason `ProgressDeadlineExceeded` is a failure;
5. on failure or timeout, undoes the rollout — the previous pod template is put back
   (JSON patch of `spec.template`, what `kubectl rollout undo` amounts to) — and fails with
   the Deployment's conditions. A Deployment that did not exist before has nothing to go
   back to and is left as it is, with that said in the message.

`KubernetesApi` is the narrow surface the deployer needs; `ClientKubernetesApi`
implements it with the official `kubernetes` client (dynamic client, the user's kubeconfig
and context, as `kubectl` would use). Unit tests drive the deployer with a fake API.

Try it against a real cluster (no cluster runs on the build machine):

    kind create cluster --name conveyor           # or: minikube start
    kind load docker-image ...  # or push to a registry the cluster can pull from
    # pipeline.yaml: environments: {test: {driver: kubernetes, context: kind-conveyor,
    #                                      namespace: webapp-test, url: http://...}}
    # EKS: aws eks update-kubeconfig --name CLUSTER --alias eks-prod; context: eks-prod
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from conveyor.errors import ActionError, ActionFailed, ConfigError, Unavailable

Log = Callable[[str], None]
FIELD_MANAGER = "conveyor"
CLUSTER_SCOPED = frozenset(
    {
        "Namespace",
        "ClusterRole",
        "ClusterRoleBinding",
        "PersistentVolume",
        "StorageClass",
        "CustomResourceDefinition",
        "IngressClass",
    }
)
_ORDER = {
    "Namespace": 0,
    "ServiceAccount": 1,
    "ConfigMap": 1,
    "Secret": 1,
    "PersistentVolumeClaim": 1,
    "Role": 1,
    "RoleBinding": 1,
    "Service": 2,
}


class KubernetesApi(Protocol):
    """What the deployer needs from a cluster; objects are plain camelCase dicts."""

    def namespace_exists(self, name: str) -> bool: ...

    def create_namespace(self, name: str) -> None: ...

    def apply(self, obj: Mapping[str, Any], namespace: str | None) -> dict[str, Any]: ...

    def get(
        self, api_version: str, kind: str, name: str, namespace: str | None
    ) -> dict[str, Any] | None: ...

    def replace_pod_template(
        self, name: str, namespace: str, template: Mapping[str, Any]
    ) -> None: ...


@dataclass(frozen=True)
class ManifestObject:
    """An object to apply and where it came from (`k8s/deployment.yaml:3`) for messages."""

    body: Mapping[str, Any]
    where: str = ""

    @property
    def kind(self) -> str:
        return str(self.body.get("kind", ""))

    @property
    def name(self) -> str:
        return str((self.body.get("metadata") or {}).get("name", ""))


@dataclass
class RolloutState:
    done: bool
    failed: bool
    message: str


def rollout_state(dep: Mapping[str, Any]) -> RolloutState:
    """A Deployment's rollout, judged as `kubectl rollout status` does."""
    meta = dep.get("metadata") or {}
    spec = dep.get("spec") or {}
    status = dep.get("status") or {}
    name = meta.get("name", "?")
    generation = int(meta.get("generation") or 0)
    observed = int(status.get("observedGeneration") or 0)
    if observed < generation:
        return RolloutState(
            False,
            False,
            f"deployment '{name}': waiting for the controller to observe generation {generation}",
        )
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            return RolloutState(
                False,
                True,
                f"deployment '{name}' exceeded its progress deadline: {cond.get('message', '')}",
            )
    replicas = int(spec.get("replicas", 1) if spec.get("replicas") is not None else 1)
    updated = int(status.get("updatedReplicas") or 0)
    total = int(status.get("replicas") or 0)
    available = int(status.get("availableReplicas") or 0)
    if updated < replicas:
        return RolloutState(
            False,
            False,
            f"deployment '{name}': {updated} of {replicas} new replicas have been updated",
        )
    if total > updated:
        return RolloutState(
            False,
            False,
            f"deployment '{name}': {total - updated} old replicas are pending termination",
        )
    if available < updated:
        return RolloutState(
            False,
            False,
            f"deployment '{name}': {available} of {updated} updated replicas are available",
        )
    return RolloutState(True, False, f"deployment '{name}' successfully rolled out")


def _conditions(dep: Mapping[str, Any] | None) -> str:
    if not dep:
        return ""
    conds = (dep.get("status") or {}).get("conditions") or []
    return "; ".join(
        f"{c.get('type')}={c.get('status')} ({c.get('reason')}: {c.get('message', '')})"
        for c in conds
    )


@dataclass
class KubernetesDeployer:
    api: KubernetesApi
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    poll: float = 1.0
    log: Log = field(default=lambda _m: None)

    def deploy(
        self,
        objects: Sequence[ManifestObject],
        *,
        namespace: str,
        timeout: float,
        cancel: threading.Event | None = None,
    ) -> dict[str, Any]:
        if not objects:
            raise ConfigError("no Kubernetes object to apply")
        if not self.api.namespace_exists(namespace):
            self.log(f"creating namespace {namespace}")
            self.api.create_namespace(namespace)
        ordered = sorted(objects, key=lambda o: _ORDER.get(o.kind, 3))
        deployments = [o for o in ordered if o.kind == "Deployment"]
        previous: dict[str, dict[str, Any] | None] = {}
        for o in deployments:
            previous[o.name] = self.api.get("apps/v1", "Deployment", o.name, namespace)
        applied: list[str] = []
        for o in ordered:
            body = copy.deepcopy(dict(o.body))
            scoped = o.kind not in CLUSTER_SCOPED
            if scoped:
                meta = body.setdefault("metadata", {})
                if meta.get("namespace") and meta["namespace"] != namespace:
                    self.log(
                        f"{o.where}: {o.kind} '{o.name}' names namespace "
                        f"'{meta['namespace']}'; applying it into '{namespace}'"
                    )
                meta["namespace"] = namespace
            try:
                self.api.apply(body, namespace if scoped else None)
            except ActionError as exc:
                raise type(exc)(
                    f"{o.where}: applying {o.kind} '{o.name}' failed: {exc.message}"
                ) from exc
            applied.append(f"{o.kind}/{o.name}")
            self.log(f"applied {o.kind}/{o.name} (server-side, field manager {FIELD_MANAGER})")
        end = self.clock() + timeout
        for o in deployments:
            state = self._wait(o.name, namespace, end, cancel)
            if not state.done:
                undone = self._undo(deployments, previous, namespace)
                current = self.api.get("apps/v1", "Deployment", o.name, namespace)
                conds = _conditions(current)
                why = (
                    state.message
                    if state.failed
                    else (f"rollout not complete after {timeout:.0f}s: {state.message}")
                )
                raise ActionFailed(
                    f"namespace {namespace}: {why}"
                    f"{'; conditions: ' + conds if conds else ''}; {undone}"
                )
        return {
            "driver": "kubernetes",
            "namespace": namespace,
            "applied": applied,
            "previous_images": {n: _images(p) for n, p in previous.items() if p},
        }

    def _wait(
        self, name: str, namespace: str, end: float, cancel: threading.Event | None
    ) -> RolloutState:
        last = ""
        while True:
            dep = self.api.get("apps/v1", "Deployment", name, namespace)
            if dep is None:
                return RolloutState(
                    False, True, f"deployment '{name}' disappeared during the rollout"
                )
            state = rollout_state(dep)
            if state.message != last:
                self.log(state.message)
                last = state.message
            if state.done or state.failed:
                return state
            if cancel is not None and cancel.is_set():
                return RolloutState(False, True, f"cancelled: {state.message}")
            if self.clock() >= end:
                return state
            self.sleep(self.poll)

    def _undo(
        self,
        deployments: Sequence[ManifestObject],
        previous: Mapping[str, dict[str, Any] | None],
        namespace: str,
    ) -> str:
        done: list[str] = []
        fresh: list[str] = []
        for o in deployments:
            prev = previous.get(o.name)
            if not prev:
                fresh.append(o.name)
                continue
            template = (prev.get("spec") or {}).get("template")
            if template:
                self.api.replace_pod_template(o.name, namespace, template)
                done.append(f"{o.name} -> {', '.join(_images(prev)) or 'previous template'}")
        parts = []
        if done:
            parts.append("rolled back (previous pod template restored): " + "; ".join(done))
        if fresh:
            parts.append("no previous version to roll back to for " + ", ".join(fresh))
        msg = "; ".join(parts) or "nothing to roll back"
        self.log(msg)
        return msg


def _images(dep: Mapping[str, Any] | None) -> list[str]:
    spec = ((dep or {}).get("spec") or {}).get("template", {}).get("spec", {})
    return [str(c.get("image")) for c in spec.get("containers") or []]


class ClientKubernetesApi:
    """`KubernetesApi` over the official client; kubeconfig and context as kubectl uses them."""

    def __init__(self, *, context: str | None = None, kubeconfig: str | None = None) -> None:
        try:
            from kubernetes import config as kconfig
            from kubernetes.dynamic import DynamicClient
        except ImportError as exc:  # pragma: no cover - a declared dependency
            raise Unavailable(
                "the `kubernetes` Python package is missing: pip install kubernetes"
            ) from exc
        try:
            api_client = kconfig.new_client_from_config(  # type: ignore[no-untyped-call]  # untyped lib
                config_file=kubeconfig, context=context
            )
        except Exception as exc:  # noqa: BLE001 - ConfigException and file errors alike
            where = kubeconfig or "~/.kube/config (or $KUBECONFIG)"
            raise Unavailable(
                f"cannot load Kubernetes context '{context or '(current)'}' from "
                f"{where}: {exc}; create it with `kind create cluster`, "
                "`minikube start` or `aws eks update-kubeconfig`"
            ) from exc
        try:
            self.client = DynamicClient(api_client)  # type: ignore[no-untyped-call]  # untyped lib
        except Exception as exc:  # noqa: BLE001 - discovery errors: urllib3, API
            raise Unavailable(
                f"the Kubernetes API server of context '{context or '(current)'}' "
                f"does not answer: {_short(exc)}"
            ) from exc

    def _resource(self, api_version: str, kind: str) -> Any:
        try:
            return self.client.resources.get(api_version=api_version, kind=kind)
        except Exception as exc:  # noqa: BLE001 - ResourceNotFoundError
            raise ActionFailed(
                f"the cluster does not know {kind} in {api_version}: {_short(exc)}"
            ) from exc

    def namespace_exists(self, name: str) -> bool:
        return self.get("v1", "Namespace", name, None) is not None

    def create_namespace(self, name: str) -> None:
        self.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}, None)

    def apply(self, obj: Mapping[str, Any], namespace: str | None) -> dict[str, Any]:
        res = self._resource(str(obj["apiVersion"]), str(obj["kind"]))
        try:
            out = self.client.server_side_apply(  # type: ignore[no-untyped-call]  # untyped lib
                res,
                body=dict(obj),
                namespace=namespace,
                field_manager=FIELD_MANAGER,
                force_conflicts=True,
            )
        except Exception as exc:  # noqa: BLE001 - ApiException and transport errors
            raise _translate(exc) from exc
        result: dict[str, Any] = out.to_dict()
        return result

    def get(
        self, api_version: str, kind: str, name: str, namespace: str | None
    ) -> dict[str, Any] | None:
        from kubernetes.dynamic.exceptions import NotFoundError

        res = self._resource(api_version, kind)
        try:
            out = self.client.get(  # type: ignore[no-untyped-call]  # untyped lib
                res, name=name, namespace=namespace
            )
        except NotFoundError:
            return None
        except Exception as exc:  # noqa: BLE001
            raise _translate(exc) from exc
        result: dict[str, Any] = out.to_dict()
        return result

    def replace_pod_template(self, name: str, namespace: str, template: Mapping[str, Any]) -> None:
        res = self._resource("apps/v1", "Deployment")
        patch = [{"op": "replace", "path": "/spec/template", "value": dict(template)}]
        try:
            self.client.patch(  # type: ignore[no-untyped-call]  # untyped lib
                res,
                body=patch,
                name=name,
                namespace=namespace,
                content_type="application/json-patch+json",
            )
        except Exception as exc:  # noqa: BLE001
            raise _translate(exc) from exc


def _short(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__


def _translate(exc: BaseException) -> ActionError:
    status = getattr(exc, "status", None)
    body = getattr(exc, "body", None) or getattr(exc, "summary", lambda: "")()
    text = body.decode() if isinstance(body, bytes) else str(body or _short(exc))
    if status in (400, 422):
        return ActionFailed(f"the API server rejected it (HTTP {status}): {text[:500]}")
    if status in (401, 403):
        return ActionError(
            f"not allowed (HTTP {status}): {text[:300]}; check the context's credentials and RBAC"
        )
    if status is None:
        return ActionError(f"the Kubernetes API server did not answer: {_short(exc)}")
    return ActionError(f"Kubernetes API error HTTP {status}: {text[:300]}")
