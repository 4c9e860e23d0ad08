"""Kubernetes manifests: loading with line numbers, validation, pinning the image by digest."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.adapters.manifests import (
    config_map_hash,
    line_of_path,
    load_manifests,
    pin_image,
    repository_name,
)
from conveyor.adapters.registry import ImageRef
from conveyor.errors import ConfigError, ValidationFailed

DIGEST = "sha256:" + "a" * 64
PINNED = f"127.0.0.1:5001/webapp@{DIGEST}"

DEPLOYMENT = """\
# the web front-end
apiVersion: apps/v1
kind: Deployment
metadata:
  name: webapp
spec:
  replicas: 2
  selector:
    matchLabels: {app: webapp}
  template:
    metadata:
      labels: {app: webapp}
    spec:
      containers:
        - name: web
          image: registry.example.com/team/webapp:latest   # replaced at deploy
          ports:
            - containerPort: 8080
        - name: sidecar
          image: 127.0.0.1:5001/metrics-agent:1.0
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: webapp-config
data:
  GREETING: hello
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / "k8s" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_a_directory_loads_every_yaml_document_in_name_order(tmp_path: Path) -> None:
    """All documents of all *.yaml/*.yml files load, files sorted, with their first line."""
    write(tmp_path, "b-deployment.yaml", DEPLOYMENT)
    write(
        tmp_path,
        "a-service.yml",
        "apiVersion: v1\nkind: Service\nmetadata: {name: webapp}\nspec: {ports: [{port: 80}]}\n",
    )
    write(tmp_path, "README.md", "not a manifest")
    mset = load_manifests(tmp_path, "k8s/")
    assert [(d.kind, d.name) for d in mset.documents] == [
        ("Service", "webapp"),
        ("Deployment", "webapp"),
        ("ConfigMap", "webapp-config"),
    ]
    assert mset.documents[1].line == 2
    assert mset.documents[2].line == 22


def test_pinning_replaces_the_image_of_containers_with_the_same_repository(tmp_path: Path) -> None:
    """Only the container whose image repository name is `webapp` gets the digest."""
    write(tmp_path, "deployment.yaml", DEPLOYMENT)
    mset = load_manifests(tmp_path, "k8s")
    pinned = pin_image(mset, PINNED)
    assert [(p.container, p.where) for p in pinned] == [("web", "k8s/deployment.yaml:16")]
    containers = mset.documents[0].containers()
    assert containers[0]["image"] == PINNED
    assert containers[1]["image"] == "127.0.0.1:5001/metrics-agent:1.0"


def test_the_pinned_yaml_keeps_the_users_comments(tmp_path: Path) -> None:
    """Writing the pinned manifests back keeps comments and key order."""
    write(tmp_path, "deployment.yaml", DEPLOYMENT)
    mset = load_manifests(tmp_path, "k8s/deployment.yaml")
    pin_image(mset, PINNED)
    text = mset.dump()
    assert "# the web front-end" in text and "# replaced at deploy" in text
    assert f"image: {PINNED}" in text
    assert text.index("apiVersion") < text.index("kind")


def test_a_container_can_be_chosen_by_name(tmp_path: Path) -> None:
    """`container: sidecar` pins that container even though its repository differs."""
    write(tmp_path, "deployment.yaml", DEPLOYMENT)
    mset = load_manifests(tmp_path, "k8s")
    pinned = pin_image(mset, PINNED, container="sidecar")
    assert [p.container for p in pinned] == ["sidecar"]


def test_no_matching_container_lists_what_there_is(tmp_path: Path) -> None:
    """Pinning `other` into manifests without such a container names the containers found."""
    write(tmp_path, "deployment.yaml", DEPLOYMENT)
    mset = load_manifests(tmp_path, "k8s")
    with pytest.raises(
        ValidationFailed,
        match="no container whose image repository is 'other'.*web \\(registry.example.com",
    ):
        pin_image(mset, f"127.0.0.1:5001/other@{DIGEST}")


def test_every_problem_is_reported_with_its_file_and_line(tmp_path: Path) -> None:
    """Missing kind, missing image and a bad port are all reported, each at its line."""
    write(
        tmp_path,
        "deployment.yaml",
        """\
apiVersion: apps/v1
metadata:
  name: webapp
spec:
  template:
    spec:
      containers:
        - name: web
          ports:
            - containerPort: 99999
""",
    )
    with pytest.raises(ValidationFailed) as info:
        load_manifests(tmp_path, "k8s")
    lines = str(info.value).splitlines()
    assert lines == [
        "k8s/deployment.yaml:1: missing 'kind' (every Kubernetes object needs apiVersion, kind "
        "and metadata.name)",
    ]


def test_workload_problems_point_at_the_offending_line(tmp_path: Path) -> None:
    """A Deployment with no image and a port out of range gets two located problems."""
    write(
        tmp_path,
        "deployment.yaml",
        """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: webapp
spec:
  template:
    spec:
      containers:
        - name: web
          ports:
            - containerPort: 99999
          readinessProbe:
            httpGet: {path: /healthz}
""",
    )
    with pytest.raises(ValidationFailed) as info:
        load_manifests(tmp_path, "k8s")
    assert str(info.value).splitlines() == [
        "k8s/deployment.yaml:9: container 'web' needs an 'image'",
        "k8s/deployment.yaml:11: container 'web': 'containerPort' must be a port number "
        "(1-65535), not 99999",
        "k8s/deployment.yaml:13: container 'web': readinessProbe.httpGet needs a 'port'",
    ]


def test_a_service_port_out_of_range_is_refused_before_any_driver_runs(tmp_path: Path) -> None:
    """Port 70000, which a cluster answers with 422, is refused at its line for podman too."""
    write(
        tmp_path,
        "service.yaml",
        """\
apiVersion: v1
kind: Service
metadata: {name: webapp}
spec:
  ports:
    - port: 70000
      targetPort: http
""",
    )
    with pytest.raises(ValidationFailed) as info:
        load_manifests(tmp_path, "k8s")
    assert str(info.value) == (
        "k8s/service.yaml:6: Service 'webapp': spec.ports[0].port must be a port number "
        "(1-65535), not 70000"
    )


def test_broken_yaml_is_reported_at_its_line(tmp_path: Path) -> None:
    """A YAML syntax error names the file and the line of the problem."""
    write(
        tmp_path,
        "deployment.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [unclosed\ndata: {}\n",
    )
    with pytest.raises(ValidationFailed, match=r"^k8s/deployment.yaml:5: invalid YAML"):
        load_manifests(tmp_path, "k8s")


def test_a_missing_manifests_path_says_where_it_looked(tmp_path: Path) -> None:
    """`manifests: deploy/` that does not exist in the artifact is a clear problem."""
    with pytest.raises(ValidationFailed, match="deploy/: no such file or directory"):
        load_manifests(tmp_path, "deploy/")


def test_a_path_leaving_the_artifact_is_refused(tmp_path: Path) -> None:
    """`manifests: ../x` cannot read outside the input artifact."""
    (tmp_path / "art").mkdir()
    with pytest.raises(ValidationFailed, match="leaves the artifact"):
        load_manifests(tmp_path / "art", "../")


def test_duplicate_objects_are_reported_with_both_places(tmp_path: Path) -> None:
    """The same kind and name twice is an error naming the first definition."""
    cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\n"
    write(tmp_path, "a.yaml", cm)
    write(tmp_path, "b.yaml", cm)
    with pytest.raises(
        ValidationFailed,
        match=r"k8s/b.yaml:4: ConfigMap 'cfg' is defined twice "
        r"\(first at k8s/a.yaml:1\)",
    ):
        load_manifests(tmp_path, "k8s")


@pytest.mark.parametrize(
    ("image", "name"),
    [
        ("webapp", "webapp"),
        ("webapp:1.0", "webapp"),
        ("127.0.0.1:5001/team/webapp:1", "webapp"),
        (f"127.0.0.1:5001/webapp@{DIGEST}", "webapp"),
    ],
)
def test_repository_name_ignores_host_tag_and_digest(image: str, name: str) -> None:
    """The matching key is the last path component of the repository."""
    assert repository_name(image) == name


def test_image_references_parse_and_print_back() -> None:
    """host:port/repo:tag@digest round-trips; a reference without a host is refused."""
    ref = ImageRef.parse(f"127.0.0.1:5001/team/webapp:1.0@{DIGEST}")
    assert (ref.host, ref.repository, ref.tag, ref.digest) == (
        "127.0.0.1:5001",
        "team/webapp",
        "1.0",
        DIGEST,
    )
    assert str(ref) == f"127.0.0.1:5001/team/webapp:1.0@{DIGEST}"
    assert ref.reference == DIGEST
    with pytest.raises(ConfigError, match="has no registry host"):
        ImageRef.parse("webapp:1.0")
    with pytest.raises(ConfigError, match="is not a digest"):
        ImageRef.parse("127.0.0.1:5001/webapp@sha256:abc")


def test_the_configmap_name_changes_with_its_content_only() -> None:
    """Same data, same name (a rollback reuses it); one changed value, a new name."""
    assert config_map_hash({"A": "1", "B": "2"}) == config_map_hash({"B": "2", "A": "1"})
    assert config_map_hash({"A": "1"}) != config_map_hash({"A": "2"})
    assert config_map_hash({"A": "1"}) != config_map_hash({"A": "1"}, {"bin": "AA=="})


def test_a_field_the_api_server_names_is_found_at_its_line(tmp_path: Path) -> None:
    """`containers[name="sidecar"].image` and `spec.replicas` resolve to their own lines."""
    write(tmp_path, "deployment.yaml", DEPLOYMENT)
    doc = load_manifests(tmp_path, "k8s").documents[0]
    assert line_of_path(doc.data, '.spec.template.spec.containers[name="sidecar"].image') == 20
    assert line_of_path(doc.data, "spec.replicas") == 7
    assert line_of_path(doc.data, "spec.template.spec.containers[0].imagePullPolicyy") == 15
