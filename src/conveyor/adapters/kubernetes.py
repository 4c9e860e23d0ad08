"""The `kubernetes` deploy driver: a release is the whole set of objects, all or nothing.

`KubernetesDeployer(api).deploy(objects, namespace=..., timeout=...)`:

1. creates the namespace if it is missing (the one change a rejected first release leaves:
   an empty namespace);
2. reads what is live for every object of the release (its state before), then runs a
   **server-side dry run** of every object (`dryRun=All`, field manager `conveyor`,
   `fieldValidation=Strict`). If any is rejected, every rejection is reported at its place
   in the manifests (`k8s/service.yaml:3: Service 'webapp': ...` with the API server's
   message) and nothing was changed;
3. server-side applies every object (same manager, conflicts forced: Conveyor owns what it
   applies), config first (Namespace, ConfigMap, Secret, ServiceAccount), then Services,
   then workloads;
4. waits for each Deployment's rollout as `kubectl rollout status` does: the controller
   has observed the new generation, all replicas are updated and available, no old replica
   is left; `Progressing` with reason `ProgressDeadlineExceeded` is a failure;
5. on failure, timeout or an apply that fails half-way, **restores the whole set**: every
   object the release changed is re-applied as it was live before (ConfigMaps, Services,
   every Deployment field, not only the pod template), and every object the release added
   is deleted (the documented choice: the environment is left exactly as it was; a
   Namespace is never deleted);
6. after a successful rollout, garbage-collects content-hashed ConfigMaps
   (`webapp-config-<hash>`, label `conveyor/config-of`, see
   `conveyor.adapters.manifests.hash_config_maps`): per ConfigMap of the manifests, those of
   the last `keep_config_maps` releases (default 5) are kept, plus the one in use.

`diff(objects, namespace)` is what the next deploy would change (`conveyor env diff`): per
object, the dry run's result against the live object, as a unified diff of YAML with the
server's bookkeeping (managedFields, status, resourceVersion...) left out.

Errors are classified by what the API server says, whatever the HTTP code (`api_error`):
schema errors (unknown or duplicate fields, "field not declared in schema" — answered with
HTTP 500 to a server-side apply —, strict decoding errors), invalid values and immutable
fields are `ActionFailed` (the manifest is wrong); only an unreachable or failing server,
or missing rights, is `ActionError` (reason ToolError).

`KubernetesApi` is the narrow surface the deployer needs; `ClientKubernetesApi`
implements it with the official `kubernetes` client (dynamic client, the user's kubeconfig
and context, as `kubectl` would use). Unit tests drive the deployer with a fake of a remote
API server (tests/unit/test_kubernetes_driver.py).

Try it against a real cluster (no cluster runs on the build machine):

    kind create cluster --name conveyor           # or: minikube start
    # pipeline.yaml: environments: {test: {driver: kubernetes, context: kind-conveyor,
    #                                      namespace: webapp-test, url: http://...}}
    # EKS: aws eks update-kubeconfig --name CLUSTER --alias eks-prod; context: eks-prod
"""

from __future__ import annotations

import copy
import difflib
import io
import json
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ruamel.yaml import YAML

from conveyor.adapters.manifests import CONFIG_OF_LABEL
from conveyor.errors import ActionError, ActionFailed, ConfigError, Unavailable
from conveyor.timing import poll_until

Log = Callable[[str], None]
FIELD_MANAGER = "conveyor"
FIELD_VALIDATION = "Strict"
KEEP_CONFIG_MAPS = 5
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
# set by the server, not by whoever applies: left out of diffs and of restored objects
_SERVER_METADATA = (
    "managedFields",
    "resourceVersion",
    "uid",
    "generation",
    "creationTimestamp",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
)
_SERVER_ANNOTATIONS = (
    "deployment.kubernetes.io/revision",
    "kubectl.kubernetes.io/last-applied-configuration",
)
# what the API server says about a manifest it refuses (lower case), whatever the HTTP code
_MANIFEST_ERRORS = (
    "field not declared in schema",
    "failed to create typed patch object",
    "strict decoding error",
    "unknown field",
    "duplicate field",
    "field is immutable",
    "invalid value",
    "unsupported value",
    "required value",
)
# the field a message names: SSA's schema errors, strict decoding, "X is invalid: FIELD: ..."
_FIELD_IN_MESSAGE = re.compile(
    r"\): (\S+): field not declared in schema"
    r'|(?:unknown|duplicate) field "([^"]+)"'
    r"|is invalid: \[?([A-Za-z][\w.\[\]\-/=\"]*): "
)
_MANIFEST_REASONS = frozenset({"Invalid", "BadRequest", "UnsupportedMediaType", "NotAcceptable"})


class KubernetesApi(Protocol):
    """What the deployer needs from a cluster; objects are plain camelCase dicts.

    Failures are `ActionError`s classified by `api_error`.
    """

    def namespace_exists(self, name: str) -> bool: ...

    def create_namespace(self, name: str) -> None: ...

    def apply(
        self,
        obj: Mapping[str, Any],
        namespace: str | None,
        *,
        dry_run: bool = False,
        field_validation: str = FIELD_VALIDATION,
    ) -> dict[str, Any]: ...

    def get(
        self, api_version: str, kind: str, name: str, namespace: str | None
    ) -> dict[str, Any] | None: ...

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None) -> None: ...

    def list(
        self, api_version: str, kind: str, namespace: str, label_selector: str
    ) -> list[dict[str, Any]]: ...


class ManifestRejected(ActionFailed):
    """The API server refused a manifest; `fields` are the paths it named, if any."""

    def __init__(self, message: str, fields: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.fields = list(fields)


@dataclass(frozen=True)
class ManifestObject:
    """An object to apply and where it came from (`k8s/deployment.yaml:3`) for messages.

    `locate` maps a field path the API server names (`spec.ports[0].port`) to its
    `file:line` in the manifests, when it can.
    """

    body: Mapping[str, Any]
    where: str = ""
    locate: Callable[[str], str | None] | None = field(default=None, compare=False)

    def where_is(self, exc: ActionError) -> str:
        """The place of a rejection: the field the server named, else the object."""
        if isinstance(exc, ManifestRejected) and self.locate is not None:
            for path in exc.fields:
                found = self.locate(path)
                if found:
                    return found
        return self.where

    @property
    def kind(self) -> str:
        return str(self.body.get("kind", ""))

    @property
    def name(self) -> str:
        return str((self.body.get("metadata") or {}).get("name", ""))

    @property
    def api_version(self) -> str:
        return str(self.body.get("apiVersion", ""))

    @property
    def scoped(self) -> bool:
        return self.kind not in CLUSTER_SCOPED


@dataclass(frozen=True)
class PlannedObject:
    """One object of a release: its body as sent, what was live before, the dry run's result."""

    source: ManifestObject
    body: dict[str, Any]
    live: dict[str, Any] | None
    dry_run: dict[str, Any]

    @property
    def ref(self) -> str:
        return f"{self.source.kind}/{self.source.name}"

    @property
    def changes(self) -> bool:
        return self.live is None or comparable(self.live) != comparable(self.dry_run)


@dataclass(frozen=True)
class ObjectDiff:
    """What the next deploy would do to one object: create, update or nothing."""

    ref: str
    where: str
    change: str  # create | update | unchanged
    diff: str  # unified diff of YAML, empty when unchanged


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


def _no_nulls(node: Any) -> Any:
    if isinstance(node, Mapping):
        return {str(k): _no_nulls(v) for k, v in node.items() if v is not None}
    if isinstance(node, list):
        return [_no_nulls(v) for v in node]
    return node


def comparable(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The object as whoever applies it sees it: no status, no server bookkeeping, no nulls.

    Used for the diff and to re-apply a live object on restore.
    """
    out: dict[str, Any] = _no_nulls(copy.deepcopy(dict(obj)))
    out.pop("status", None)
    meta = out.get("metadata")
    if isinstance(meta, dict):
        for key in _SERVER_METADATA:
            meta.pop(key, None)
        notes = meta.get("annotations")
        if isinstance(notes, dict):
            for key in _SERVER_ANNOTATIONS:
                notes.pop(key, None)
            if not notes:
                meta.pop("annotations")
    return out


def _yaml_text(obj: Mapping[str, Any] | None) -> str:
    if obj is None:
        return ""

    def ordered(node: Any) -> Any:
        if isinstance(node, Mapping):
            return {k: ordered(node[k]) for k in sorted(node)}
        if isinstance(node, list):
            return [ordered(v) for v in node]
        for plain in (bool, str, int, float):  # ruamel's quoted strings, scalar ints...
            if isinstance(node, plain):
                return plain(node)
        return node

    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.width = 4096
    out = io.StringIO()
    yaml.dump(ordered(obj), out)
    return out.getvalue()


@dataclass
class KubernetesDeployer:
    api: KubernetesApi
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    poll: float = 1.0
    log: Log = field(default=lambda _m: None)
    keep_config_maps: int = KEEP_CONFIG_MAPS

    # -- the dry run ---------------------------------------------------------------------------

    def _body(self, o: ManifestObject, namespace: str) -> dict[str, Any]:
        body = copy.deepcopy(dict(o.body))
        if o.scoped:
            meta = body.setdefault("metadata", {})
            if meta.get("namespace") and meta["namespace"] != namespace:
                self.log(
                    f"{o.where}: {o.kind} '{o.name}' names namespace "
                    f"'{meta['namespace']}'; applying it into '{namespace}'"
                )
            meta["namespace"] = namespace
        return body

    def dry_run(self, objects: Sequence[ManifestObject], namespace: str) -> list[PlannedObject]:
        """Read what is live and dry-run every object; ActionFailed lists every rejection."""
        if not objects:
            raise ConfigError("no Kubernetes object to apply")
        ordered = sorted(objects, key=lambda o: _ORDER.get(o.kind, 3))
        planned: list[PlannedObject] = []
        problems: list[str] = []
        for o in ordered:
            ns = namespace if o.scoped else None
            body = self._body(o, namespace)
            try:
                live = self.api.get(o.api_version, o.kind, o.name, ns)
                result = self.api.apply(body, ns, dry_run=True, field_validation=FIELD_VALIDATION)
            except ActionFailed as exc:
                problems.append(f"{o.where_is(exc)}: {o.kind} '{o.name}': {exc.message}")
                continue
            except ActionError as exc:
                raise ActionError(
                    f"{o.where}: dry run of {o.kind} '{o.name}' failed: {exc.message}"
                ) from exc
            planned.append(PlannedObject(o, body, live, result))
        if problems:
            raise ActionFailed(
                f"namespace {namespace}: the API server's dry run rejected "
                f"{len(problems)} of {len(ordered)} object(s); nothing was changed:\n"
                + "\n".join(problems)
            )
        return planned

    def diff(self, objects: Sequence[ManifestObject], namespace: str) -> list[ObjectDiff]:
        """What deploying OBJECTS would change, object by object (from the server's dry run)."""
        if not self.api.namespace_exists(namespace):
            self.log(
                f"namespace {namespace} does not exist: a deploy creates it; the objects are "
                "shown as written (the server cannot dry-run into a missing namespace)"
            )
            ordered = sorted(objects, key=lambda o: _ORDER.get(o.kind, 3))
            planned = [PlannedObject(o, self._body(o, namespace), None, {}) for o in ordered]
            return [
                ObjectDiff(p.ref, p.source.where, "create", self._unified(p, comparable(p.body)))
                for p in planned
            ]
        out: list[ObjectDiff] = []
        for p in self.dry_run(objects, namespace):
            after = comparable(p.dry_run)
            if p.live is None:
                out.append(ObjectDiff(p.ref, p.source.where, "create", self._unified(p, after)))
            elif comparable(p.live) == after:
                out.append(ObjectDiff(p.ref, p.source.where, "unchanged", ""))
            else:
                out.append(ObjectDiff(p.ref, p.source.where, "update", self._unified(p, after)))
        return out

    @staticmethod
    def _unified(p: PlannedObject, after: Mapping[str, Any]) -> str:
        before = _yaml_text(comparable(p.live) if p.live is not None else None)
        return "".join(
            difflib.unified_diff(
                before.splitlines(keepends=True),
                _yaml_text(after).splitlines(keepends=True),
                fromfile=f"live/{p.ref}",
                tofile=f"release/{p.ref}",
            )
        )

    # -- the deploy ------------------------------------------------------------------------------

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
        planned = self.dry_run(objects, namespace)
        self.log(
            f"server-side dry run passed for {len(planned)} object(s) "
            f"({sum(p.changes for p in planned)} to change)"
        )
        applied: list[PlannedObject] = []
        for p in planned:
            ns = namespace if p.source.scoped else None
            try:
                self.api.apply(p.body, ns, field_validation=FIELD_VALIDATION)
            except ActionError as exc:
                restored = self._restore(applied, namespace)
                raise type(exc)(
                    f"{p.source.where_is(exc)}: applying {p.ref} failed: {exc.message}; {restored}"
                ) from exc
            applied.append(p)
            self.log(f"applied {p.ref} (server-side, field manager {FIELD_MANAGER})")
        deployments = [p for p in planned if p.source.kind == "Deployment"]
        end = self.clock() + timeout
        for p in deployments:
            state = self._wait(p.source.name, namespace, end, cancel)
            if not state.done:
                current = self.api.get("apps/v1", "Deployment", p.source.name, namespace)
                conds = _conditions(current)
                restored = self._restore(applied, namespace)
                why = (
                    state.message
                    if state.failed
                    else f"rollout not complete after {timeout:.0f}s: {state.message}"
                )
                raise ActionFailed(
                    f"namespace {namespace}: {why}"
                    f"{'; conditions: ' + conds if conds else ''}; {restored}"
                )
        removed = self._collect_config_maps(planned, namespace)
        return {
            "driver": "kubernetes",
            "namespace": namespace,
            "applied": [p.ref for p in planned],
            "added": [p.ref for p in planned if p.live is None],
            "changed": [p.ref for p in planned if p.live is not None and p.changes],
            "removed_config_maps": removed,
            "previous_images": {
                p.source.name: _images(p.live) for p in deployments if p.live is not None
            },
        }

    def _wait(
        self, name: str, namespace: str, end: float, cancel: threading.Event | None
    ) -> RolloutState:
        last = [""]

        def probe() -> RolloutState:
            dep = self.api.get("apps/v1", "Deployment", name, namespace)
            if dep is None:
                return RolloutState(
                    False, True, f"deployment '{name}' disappeared during the rollout"
                )
            state = rollout_state(dep)
            if state.message != last[0]:
                self.log(state.message)
                last[0] = state.message
            if not (state.done or state.failed) and cancel is not None and cancel.is_set():
                return RolloutState(False, True, f"cancelled: {state.message}")
            return state

        return poll_until(
            probe,
            lambda s: s.done or s.failed,
            deadline=end,
            interval=self.poll,
            clock=self.clock,
            sleep=self.sleep,
        )

    def _restore(self, applied: Sequence[PlannedObject], namespace: str) -> str:
        """Put every applied object back as it was live before; delete those it added.

        Workloads first (so they point at the old config again), config last.
        """
        restored: list[str] = []
        removed: list[str] = []
        kept: list[str] = []
        failed: list[str] = []
        for p in reversed(applied):
            ns = namespace if p.source.scoped else None
            try:
                if p.live is None:
                    if p.source.kind == "Namespace":
                        kept.append(p.ref)
                        continue
                    self.api.delete(p.source.api_version, p.source.kind, p.source.name, ns)
                    removed.append(p.ref)
                elif p.changes:
                    self.api.apply(comparable(p.live), ns, field_validation=FIELD_VALIDATION)
                    images = _images(p.live) if p.source.kind == "Deployment" else []
                    restored.append(p.ref + (f" ({', '.join(images)})" if images else ""))
            except ActionError as exc:
                failed.append(f"{p.ref}: {exc.message}")
        parts = []
        if restored:
            parts.append("restored as before the release: " + ", ".join(reversed(restored)))
        if removed:
            parts.append("removed (new in this release): " + ", ".join(reversed(removed)))
        if kept:
            parts.append("kept (a namespace is never deleted): " + ", ".join(kept))
        if failed:
            parts.append("COULD NOT restore: " + "; ".join(failed))
        msg = "; ".join(parts) or "nothing to restore (no object had changed)"
        self.log(msg)
        return msg

    def _collect_config_maps(self, planned: Sequence[PlannedObject], namespace: str) -> list[str]:
        """Delete hashed ConfigMaps older than the last `keep_config_maps` releases."""
        in_use: dict[str, str] = {}
        for p in planned:
            labels = (p.body.get("metadata") or {}).get("labels") or {}
            if p.source.kind == "ConfigMap" and labels.get(CONFIG_OF_LABEL):
                in_use[str(labels[CONFIG_OF_LABEL])] = p.source.name
        removed: list[str] = []
        for origin, current in sorted(in_use.items()):
            try:
                items = self.api.list("v1", "ConfigMap", namespace, f"{CONFIG_OF_LABEL}={origin}")
                items.sort(
                    key=lambda i: (
                        str((i.get("metadata") or {}).get("creationTimestamp") or ""),
                        str((i.get("metadata") or {}).get("name") or ""),
                    ),
                    reverse=True,
                )
                names = [str(i["metadata"]["name"]) for i in items]
                older = [n for n in names if n != current]
                for name in older[max(self.keep_config_maps - 1, 0) :]:
                    self.api.delete("v1", "ConfigMap", name, namespace)
                    removed.append(f"ConfigMap/{name}")
            except ActionError as exc:
                self.log(f"could not garbage-collect old ConfigMaps of {origin}: {exc.message}")
        if removed:
            self.log(
                f"removed {len(removed)} ConfigMap(s) older than the last "
                f"{self.keep_config_maps} releases: {', '.join(removed)}"
            )
        return removed


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

    def apply(
        self,
        obj: Mapping[str, Any],
        namespace: str | None,
        *,
        dry_run: bool = False,
        field_validation: str = FIELD_VALIDATION,
    ) -> dict[str, Any]:
        res = self._resource(str(obj["apiVersion"]), str(obj["kind"]))
        extra: dict[str, Any] = {"dry_run": "All"} if dry_run else {}
        try:
            out = self.client.server_side_apply(  # type: ignore[no-untyped-call]  # untyped lib
                res,
                body=dict(obj),
                namespace=namespace,
                field_manager=FIELD_MANAGER,
                force_conflicts=True,
                query_params=[("fieldValidation", field_validation)],
                **extra,
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

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None) -> None:
        from kubernetes.dynamic.exceptions import NotFoundError

        res = self._resource(api_version, kind)
        try:
            self.client.delete(  # type: ignore[no-untyped-call]  # untyped lib
                res, name=name, namespace=namespace
            )
        except NotFoundError:
            return
        except Exception as exc:  # noqa: BLE001
            raise _translate(exc) from exc

    def list(
        self, api_version: str, kind: str, namespace: str, label_selector: str
    ) -> list[dict[str, Any]]:
        res = self._resource(api_version, kind)
        try:
            out = self.client.get(  # type: ignore[no-untyped-call]  # untyped lib
                res, namespace=namespace, label_selector=label_selector
            )
        except Exception as exc:  # noqa: BLE001
            raise _translate(exc) from exc
        items: list[dict[str, Any]] = out.to_dict().get("items") or []
        return items


def _short(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__


def api_error(status: int | None, body: str) -> ActionError:
    """The error for an API server's answer, classified by what it says, not only its code.

    `body` is the response (a `Status` object as JSON, or text). A manifest the server
    refuses — schema errors (unknown or duplicate fields, "field not declared in schema",
    which a server-side apply gets as HTTP 500), invalid values, immutable fields — is
    ActionFailed; missing rights, an unreachable or failing server are ActionError.
    """
    message, reason = body.strip(), ""
    fields: list[str] = []
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    if isinstance(doc, dict):
        message = str(doc.get("message") or message)
        reason = str(doc.get("reason") or "")
        causes = (doc.get("details") or {}).get("causes") or []
        fields = [str(c["field"]) for c in causes if isinstance(c, dict) and c.get("field")]
    for m in _FIELD_IN_MESSAGE.finditer(message):
        fields += [g for g in m.groups() if g]
    lowered = message.lower()
    code = f"HTTP {status}" + (f" {reason}" if reason else "")
    if status is None:
        return ActionError(f"the Kubernetes API server did not answer: {message[:300]}")
    if status in (401, 403):
        return ActionError(
            f"not allowed ({code}): {message[:300]}; check the context's credentials and RBAC"
        )
    if (
        status in (400, 422)
        or reason in _MANIFEST_REASONS
        or any(marker in lowered for marker in _MANIFEST_ERRORS)
    ):
        return ManifestRejected(f"the API server rejected it ({code}): {message[:800]}", fields)
    return ActionError(f"Kubernetes API error ({code}): {message[:300]}")


def _translate(exc: BaseException) -> ActionError:
    status = getattr(exc, "status", None)
    body = getattr(exc, "body", None)
    summary = getattr(exc, "summary", None)
    if body is None and callable(summary):
        body = summary()
    text = body.decode(errors="replace") if isinstance(body, bytes) else str(body or "")
    if status is None:
        return api_error(None, _short(exc))
    return api_error(int(status), text or _short(exc))
