"""The real `kubernetes` client wiring of the driver, against a loopback stub of the HTTP API.

The stub (a fake of a remote API server, speaking its HTTP: discovery, server-side apply
PATCHes, Status bodies) records what the official client really sends: `dryRun=All`,
`fieldManager=conveyor`, `force=true`, `fieldValidation=Strict`, the apply-patch content
type; and answers with the status codes and bodies a real kube-apiserver sent (issue #20).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from conveyor.adapters.kubernetes import ClientKubernetesApi
from conveyor.errors import ActionError, ActionFailed

pytestmark = pytest.mark.integration

VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]


def _resources(group_version: str, items: list[tuple[str, str, bool]]) -> dict[str, Any]:
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": [
            {"name": n, "singularName": n[:-1], "namespaced": ns, "kind": k, "verbs": VERBS}
            for n, k, ns in items
        ],
    }


DISCOVERY: dict[str, Any] = {
    "/version": {"major": "1", "minor": "36", "gitVersion": "v1.36.0"},
    "/api": {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []},
    "/apis": {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [
            {
                "name": "apps",
                "versions": [{"groupVersion": "apps/v1", "version": "v1"}],
                "preferredVersion": {"groupVersion": "apps/v1", "version": "v1"},
            }
        ],
    },
    "/api/v1": _resources(
        "v1",
        [
            ("configmaps", "ConfigMap", True),
            ("services", "Service", True),
            ("namespaces", "Namespace", False),
        ],
    ),
    "/apis/apps/v1": _resources("apps/v1", [("deployments", "Deployment", True)]),
}


def status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


class StubApiServer(ThreadingHTTPServer):
    """Answers discovery, then each (METHOD, path) from `answers` (default 404 NotFound)."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.answers: dict[tuple[str, str], tuple[int, dict[str, Any]]] = {}
        self.seen: list[dict[str, Any]] = []


class _Handler(BaseHTTPRequestHandler):
    server: StubApiServer

    def log_message(self, *_args: Any) -> None:
        pass

    def _answer(self) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        if self.command == "GET" and url.path in DISCOVERY:
            code, doc = 200, DISCOVERY[url.path]
        else:
            self.server.seen.append(
                {
                    "method": self.command,
                    "path": url.path,
                    "query": parse_qs(url.query),
                    "content_type": self.headers.get("Content-Type"),
                    "body": body,
                }
            )
            code, doc = self.server.answers.get(
                (self.command, url.path), (404, status(404, "NotFound", "not found"))
            )
        data = json.dumps(doc).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_PATCH = do_DELETE = do_POST = _answer


@pytest.fixture
def stub(tmp_path: Path) -> Iterator[tuple[StubApiServer, ClientKubernetesApi]]:
    server = StubApiServer()
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "stub",
                        "cluster": {"server": f"http://127.0.0.1:{server.server_port}"},
                    }
                ],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "stub", "context": {"cluster": "stub", "user": "u"}}],
                "current-context": "stub",
            }
        )
    )
    try:
        yield server, ClientKubernetesApi(context="stub", kubeconfig=str(kubeconfig))
    finally:
        server.shutdown()
        server.server_close()


SERVICE = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "webapp", "namespace": "ns"},
    "spec": {"ports": [{"port": 80}]},
}
DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "webapp", "namespace": "ns"},
    "spec": {"template": {"spec": {"containers": [{"name": "web", "imagePullPolicyy": "Always"}]}}},
}
SERVICE_PATH = "/api/v1/namespaces/ns/services/webapp"
DEPLOYMENT_PATH = "/apis/apps/v1/namespaces/ns/deployments/webapp"


def test_the_dry_run_and_the_apply_send_what_the_server_needs(
    stub: tuple[StubApiServer, ClientKubernetesApi],
) -> None:
    """dryRun=All only on the dry run; both: field manager conveyor, forced, Strict."""
    server, api = stub
    server.answers[("PATCH", SERVICE_PATH)] = (200, SERVICE)
    api.apply(SERVICE, "ns", dry_run=True)
    api.apply(SERVICE, "ns")
    dry, real = server.seen
    for request in (dry, real):
        assert request["method"] == "PATCH" and request["path"] == SERVICE_PATH
        assert request["content_type"] == "application/apply-patch+yaml"
        assert request["query"]["fieldManager"] == ["conveyor"]
        assert request["query"]["force"] == ["true"]
        assert request["query"]["fieldValidation"] == ["Strict"]
        assert json.loads(request["body"])["spec"] == SERVICE["spec"]
    assert dry["query"]["dryRun"] == ["All"]
    assert "dryRun" not in real["query"]


@pytest.mark.parametrize(
    ("code", "answer", "failed"),
    [
        (
            500,
            status(
                500,
                "",
                "failed to create typed patch object (ns/webapp; apps/v1, Kind=Deployment): "
                '.spec.template.spec.containers[name="web"].imagePullPolicyy: '
                "field not declared in schema",
            ),
            True,
        ),
        (
            422,
            status(
                422,
                "Invalid",
                'Deployment.apps "webapp" is invalid: spec.selector: '
                "Invalid value: {}: field is immutable",
            ),
            True,
        ),
        (500, status(500, "InternalError", "etcdserver: request timed out"), False),
        (503, status(503, "ServiceUnavailable", "the server is currently unable"), False),
    ],
    ids=["unknown-field-500", "immutable-422", "etcd-500", "unavailable-503"],
)
def test_an_http_answer_is_classified_by_what_it_says(
    stub: tuple[StubApiServer, ClientKubernetesApi],
    code: int,
    answer: dict[str, Any],
    failed: bool,
) -> None:
    """Through the real client: manifest errors are ActionFailed, server trouble ToolError."""
    server, api = stub
    server.answers[("PATCH", DEPLOYMENT_PATH)] = (code, answer)
    with pytest.raises(ActionError) as info:
        api.apply(DEPLOYMENT, "ns", dry_run=True)
    assert isinstance(info.value, ActionFailed) is failed
    assert answer["message"] in info.value.message


def test_get_list_and_delete(stub: tuple[StubApiServer, ClientKubernetesApi]) -> None:
    """A missing object is None; ConfigMaps are listed by label; a delete of a gone one is fine."""
    server, api = stub
    assert api.get("v1", "Service", "webapp", "ns") is None
    server.answers[("GET", "/api/v1/namespaces/ns/configmaps")] = (
        200,
        {"kind": "ConfigMapList", "apiVersion": "v1", "items": [{"metadata": {"name": "a-1"}}]},
    )
    items = api.list("v1", "ConfigMap", "ns", "conveyor/config-of=webapp-config")
    assert [i["metadata"]["name"] for i in items] == ["a-1"]
    assert server.seen[-1]["query"]["labelSelector"] == ["conveyor/config-of=webapp-config"]
    api.delete("v1", "ConfigMap", "a-1", "ns")
    assert (server.seen[-1]["method"], server.seen[-1]["path"]) == (
        "DELETE",
        "/api/v1/namespaces/ns/configmaps/a-1",
    )
