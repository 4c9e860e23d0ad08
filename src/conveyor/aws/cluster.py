"""`conveyor aws prepare-cluster`: what the pipeline's roles may not do themselves, done once
with the user's own credentials.

The deploy projects' EKS access entries are scoped to their namespace, so they cannot create
it (a namespace is a cluster-scoped object). This creates each namespace, and in each a Role
allowing `kubectl port-forward` (pods/portforward) bound to the Kubernetes group
`conveyor-port-forward`, which the access entries of the Selenium and monitor projects carry:
AmazonEKSViewPolicy gives them read access, this Role the port-forward.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from conveyor.adapters.kubernetes import KubernetesApi
from conveyor.aws.synth import PORT_FORWARD_GROUP


def port_forward_objects(namespace: str) -> list[dict[str, Any]]:
    """The Role and RoleBinding that let group conveyor-port-forward port-forward in `namespace`."""
    meta = {
        "name": PORT_FORWARD_GROUP,
        "namespace": namespace,
        "labels": {"app.kubernetes.io/managed-by": "conveyor"},
    }
    return [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": meta,
            "rules": [
                {"apiGroups": [""], "resources": ["pods", "services"], "verbs": ["get", "list"]},
                {"apiGroups": [""], "resources": ["pods/portforward"], "verbs": ["create"]},
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": meta,
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": PORT_FORWARD_GROUP,
            },
            "subjects": [
                {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Group",
                    "name": PORT_FORWARD_GROUP,
                }
            ],
        },
    ]


def prepare_cluster(
    api: KubernetesApi, namespaces: Sequence[str], say: Callable[[str], None] = print
) -> list[str]:
    """Create the missing namespaces and (re)apply the port-forward Role; return what was created."""
    created = []
    for ns in namespaces:
        if api.namespace_exists(ns):
            say(f"namespace {ns}: exists")
        else:
            api.create_namespace(ns)
            created.append(ns)
            say(f"namespace {ns}: created")
        for obj in port_forward_objects(ns):
            api.apply(obj, ns)
            say(f"namespace {ns}: {obj['kind']} {PORT_FORWARD_GROUP} applied")
    return created
