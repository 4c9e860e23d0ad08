"""Kubernetes manifests as files: load with line numbers, validate, pin the image by digest.

`load_manifests(root, path)` reads one YAML file or every `*.yaml`/`*.yml` under a
directory (sorted, multi-document files included) with ruamel.yaml's round-trip loader,
so every problem is reported as `file:line: message` and the written-back YAML keeps the
user's comments and order. Problems are collected, then raised together as
`ValidationFailed`.

`pin_image(...)` replaces a container's image with `host/repo@sha256:...`: by default
every container whose image has the same repository name (last path component) as the
pinned image; `container=NAME` picks containers by name instead.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError

from conveyor.errors import Problem, ValidationFailed

# kinds whose pod template lives at spec.template.spec, and the bare Pod
WORKLOAD_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"})
PROBE_KINDS = ("httpGet", "exec", "tcpSocket", "grpc")


@dataclass
class Document:
    file: Path  # the file as the user knows it (relative to the artifact root)
    index: int  # position in its file (0-based)
    data: CommentedMap
    line: int  # 1-based line of the document's first key

    @property
    def kind(self) -> str:
        return str(self.data.get("kind") or "")

    @property
    def name(self) -> str:
        meta = self.data.get("metadata")
        return str(meta.get("name") or "") if isinstance(meta, dict) else ""

    @property
    def api_version(self) -> str:
        return str(self.data.get("apiVersion") or "")

    def where(self, node: Any = None, key: str | int | None = None) -> str:
        return f"{self.file}:{line_of(node, key) or self.line}"

    def pod_spec(self) -> CommentedMap | None:
        if self.kind == "Pod":
            spec = self.data.get("spec")
        elif self.kind in WORKLOAD_KINDS:
            spec = _get(self.data, "spec", "template", "spec")
        else:
            return None
        return spec if isinstance(spec, CommentedMap) else None

    def containers(self) -> list[CommentedMap]:
        spec = self.pod_spec()
        items = spec.get("containers") if spec is not None else None
        return [c for c in items if isinstance(c, CommentedMap)] if isinstance(items, list) else []


@dataclass
class PinnedContainer:
    document: Document
    container: str
    old_image: str
    new_image: str
    where: str
    chosen_by: str = ""  # why this container: its name, its image repository, the only one


@dataclass
class ManifestSet:
    documents: list[Document] = field(default_factory=list)

    def of_kind(self, *kinds: str) -> list[Document]:
        return [d for d in self.documents if d.kind in kinds]

    def workloads(self) -> list[Document]:
        return [d for d in self.documents if d.pod_spec() is not None]

    def dump(self, documents: list[Document] | None = None) -> str:
        yaml = _yaml()
        out = io.StringIO()
        yaml.dump_all([d.data for d in (documents or self.documents)], out)
        return out.getvalue()

    def plain(self) -> list[dict[str, Any]]:
        """The documents as plain dicts/lists (for API clients)."""
        return [_plain(d.data) for d in self.documents]


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = 4096
    return yaml


def line_of(node: Any, key: str | int | None = None) -> int | None:
    """The 1-based line of `node[key]` (or of the node) in its file, if known."""
    lc = getattr(node, "lc", None)
    if lc is None:
        return None
    try:
        if key is None:
            return int(lc.line) + 1
        if isinstance(node, CommentedSeq):
            return int(lc.item(key)[0]) + 1
        return int(lc.key(key)[0]) + 1
    except (KeyError, IndexError, TypeError, AttributeError):
        return int(lc.line) + 1


def _get(node: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(node, dict):
            return None
        node = node.get(key)
    return node


def _plain(node: Any) -> Any:
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node


def manifest_files(root: Path, path: str) -> list[Path]:
    target = (root / path).resolve()
    if not target.is_relative_to(root.resolve()):
        raise ValidationFailed([Problem(path, None, "the manifests path leaves the artifact")])
    if target.is_file():
        return [target]
    if target.is_dir():
        files = sorted(
            p for p in target.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file()
        )
        if files:
            return files
        raise ValidationFailed([Problem(path, None, "no *.yaml or *.yml file in this directory")])
    raise ValidationFailed(
        [Problem(path, None, f"no such file or directory in the input artifact (looked in {root})")]
    )


def load_manifests(root: Path, path: str = "k8s/") -> ManifestSet:
    """Load and validate the manifests at `root/path`; ValidationFailed lists every problem."""
    problems: list[Problem] = []
    docs: list[Document] = []
    for file in manifest_files(root, path):
        shown = file.relative_to(root.resolve()) if file.is_relative_to(root.resolve()) else file
        try:
            loaded = list(_yaml().load_all(file.read_text()))
        except MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark is not None else None
            problems.append(Problem(str(shown), line, f"invalid YAML: {exc.problem or exc}"))
            continue
        for i, data in enumerate(loaded):
            if data is None:
                continue
            if not isinstance(data, CommentedMap):
                problems.append(
                    Problem(
                        str(shown),
                        line_of(data),
                        f"document {i + 1} is not a mapping (a Kubernetes object)",
                    )
                )
                continue
            docs.append(Document(file=Path(shown), index=i, data=data, line=line_of(data) or 1))
    mset = ManifestSet(docs)
    problems += validate(mset)
    if problems:
        raise ValidationFailed(problems)
    return mset


def validate(mset: ManifestSet) -> list[Problem]:
    problems: list[Problem] = []

    def bad(doc: Document, node: Any, key: str | int | None, msg: str) -> None:
        problems.append(Problem(str(doc.file), line_of(node, key) or doc.line, msg))

    if not mset.documents:
        return [Problem("manifests", None, "no Kubernetes object found")]
    seen: dict[tuple[str, str], Document] = {}
    for doc in mset.documents:
        d = doc.data
        for key in ("apiVersion", "kind"):
            if not isinstance(d.get(key), str) or not d.get(key):
                bad(
                    doc,
                    d,
                    None,
                    f"missing '{key}' (every Kubernetes object needs apiVersion, "
                    "kind and metadata.name)",
                )
        meta = d.get("metadata")
        if not isinstance(meta, dict) or not meta.get("name"):
            bad(doc, d, "metadata" if "metadata" in d else None, "missing 'metadata.name'")
        elif (doc.kind, doc.name) in seen:
            first = seen[(doc.kind, doc.name)]
            bad(
                doc,
                meta,
                "name",
                f"{doc.kind} '{doc.name}' is defined twice (first at {first.file}:{first.line})",
            )
        else:
            seen[(doc.kind, doc.name)] = doc
        if doc.kind in WORKLOAD_KINDS or doc.kind == "Pod":
            _validate_workload(doc, bad)
        if doc.kind == "Service":
            _validate_service(doc, bad)
    return problems


def _validate_service(doc: Document, bad: Any) -> None:
    """Port numbers, as the API server checks them: a Kubernetes cluster would refuse the
    release, so the podman driver refuses it too, before anything changes."""
    ports = _get(doc.data, "spec", "ports")
    if not isinstance(ports, list):
        return
    for i, p in enumerate(ports):
        if not isinstance(p, dict):
            continue
        for key in ("port", "nodePort", "targetPort"):
            value = p.get(key)
            if value is None or (key == "targetPort" and isinstance(value, str)):
                continue
            if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 65536:
                bad(
                    doc,
                    p,
                    key,
                    f"Service '{doc.name}': spec.ports[{i}].{key} must be a port number "
                    f"(1-65535), not {value!r}",
                )


def _validate_workload(doc: Document, bad: Any) -> None:
    d = doc.data
    spec = d.get("spec")
    if not isinstance(spec, dict):
        bad(doc, d, "spec" if "spec" in d else None, f"{doc.kind} '{doc.name}' has no 'spec'")
        return
    if doc.kind != "Pod":
        template = spec.get("template")
        if not isinstance(template, dict) or not isinstance(template.get("spec"), dict):
            bad(
                doc,
                spec,
                "template" if "template" in spec else None,
                f"{doc.kind} '{doc.name}' has no 'spec.template.spec'",
            )
            return
        replicas = spec.get("replicas")
        if replicas is not None and (not isinstance(replicas, int) or replicas < 0):
            bad(doc, spec, "replicas", f"'replicas' must be a whole number >= 0, not {replicas!r}")
    pod = doc.pod_spec()
    assert pod is not None
    containers = pod.get("containers")
    if not isinstance(containers, list) or not containers:
        bad(
            doc,
            pod,
            "containers" if "containers" in pod else None,
            f"{doc.kind} '{doc.name}' has no containers",
        )
        return
    names: set[str] = set()
    for i, c in enumerate(containers):
        if not isinstance(c, dict):
            bad(doc, containers, i, "a container must be a mapping")
            continue
        cname = c.get("name")
        if not isinstance(cname, str) or not cname:
            bad(doc, containers, i, "a container needs a 'name'")
        elif cname in names:
            bad(doc, c, "name", f"container name '{cname}' is used twice")
        else:
            names.add(cname)
        if not isinstance(c.get("image"), str) or not c.get("image"):
            bad(doc, c, "image" if "image" in c else None, f"container '{cname}' needs an 'image'")
        ports = c.get("ports", [])
        if not isinstance(ports, list):
            bad(doc, c, "ports", "'ports' must be a list")
            ports = []
        for j, p in enumerate(ports):
            cp = p.get("containerPort") if isinstance(p, dict) else None
            if not isinstance(cp, int) or not 0 < cp < 65536:
                bad(
                    doc,
                    ports,
                    j,
                    f"container '{cname}': 'containerPort' must be a port number "
                    f"(1-65535), not {cp!r}",
                )
        for probe_key in ("readinessProbe", "livenessProbe", "startupProbe"):
            probe = c.get(probe_key)
            if probe is None:
                continue
            kinds = [k for k in PROBE_KINDS if isinstance(probe, dict) and k in probe]
            if len(kinds) != 1:
                bad(
                    doc,
                    c,
                    probe_key,
                    f"container '{cname}': {probe_key} needs exactly one of "
                    f"{', '.join(PROBE_KINDS)}",
                )
                continue
            if kinds[0] == "exec" and not isinstance(_get(probe, "exec", "command"), list):
                bad(
                    doc,
                    probe,
                    "exec",
                    f"container '{cname}': {probe_key}.exec.command must be a list",
                )
            if kinds[0] == "httpGet" and _get(probe, "httpGet", "port") is None:
                bad(
                    doc,
                    probe,
                    "httpGet",
                    f"container '{cname}': {probe_key}.httpGet needs a 'port'",
                )


def repository_name(image: str) -> str:
    """`registry:5000/team/webapp:1.2@sha256:..` -> `webapp` (the last path component)."""
    base = image.split("@", 1)[0]
    last = base.rsplit("/", 1)[-1]
    return last.split(":", 1)[0]


def iter_containers(mset: ManifestSet) -> Iterator[tuple[Document, CommentedMap]]:
    for doc in mset.workloads():
        spec = doc.pod_spec()
        assert spec is not None
        for key in ("initContainers", "containers"):
            items = spec.get(key)
            if isinstance(items, list):
                for c in items:
                    if isinstance(c, CommentedMap):
                        yield doc, c


def pin_image(mset: ManifestSet, image: str, container: str | None = None) -> list[PinnedContainer]:
    """Replace the image of the matching containers with `image` (a digest reference).

    Matching: containers named `container` if given; else those whose image repository
    name equals the pinned image's; else, if the manifests hold exactly one container, it.
    Raises ValidationFailed when nothing matches, listing what there is.
    """
    repo = repository_name(image)
    candidates = list(iter_containers(mset))
    why = f"named '{container}' by the deploy's `container`"
    if container:
        chosen = [(d, c) for d, c in candidates if c.get("name") == container]
    else:
        why = f"its image repository is '{repo}', the published one"
        chosen = [(d, c) for d, c in candidates if repository_name(str(c.get("image"))) == repo]
        if not chosen and len(candidates) == 1:
            chosen, why = candidates, f"the only container (no image named '{repo}')"
    if not chosen:
        listing = (
            ", ".join(
                f"{c.get('name')} ({c.get('image')}) at {d.where(c, 'image')}"
                for d, c in candidates
            )
            or "none"
        )
        wanted = f"named '{container}'" if container else f"whose image repository is '{repo}'"
        raise ValidationFailed(
            [
                Problem(
                    "manifests",
                    None,
                    f"no container {wanted} to pin {image} into; containers: "
                    f"{listing}; set the deploy action's `container`",
                )
            ]
        )
    pinned: list[PinnedContainer] = []
    for doc, c in chosen:
        old = str(c.get("image"))
        where = doc.where(c, "image")
        c["image"] = image
        pinned.append(PinnedContainer(doc, str(c.get("name")), old, image, where, why))
    return pinned


# ---- content-hashed ConfigMaps ------------------------------------------------------------------

CONFIG_OF_LABEL = "conveyor/config-of"  # on a hashed ConfigMap: the name in the manifests
_HASH_LETTERS = str.maketrans({"0": "g", "1": "h", "3": "k", "a": "m", "e": "t"})


@dataclass(frozen=True)
class HashedConfigMap:
    """A ConfigMap renamed after its content, and where the manifests define it."""

    name: str  # as in the manifests
    hashed: str  # name-<hash>
    where: str


def config_map_hash(data: Any, binary_data: Any = None) -> str:
    """The 10-character suffix `kustomize` (5.x) gives a generated ConfigMap with this content.

    As kustomize's hasher: the sorted-key JSON of `{"data", "kind", "name"}` (plus
    `binaryData`), the name empty as kustomize 5 hashes it, Go's escapes of <, > and &;
    SHA-256; the first 10 hex digits with 0 1 3 a e spelt g h k m t. A test checks it
    against `kubectl kustomize`.
    """
    doc: dict[str, Any] = {"kind": "ConfigMap", "name": "", "data": _plain(data) or {}}
    if binary_data:
        doc["binaryData"] = _plain(binary_data)
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    return hashlib.sha256(text.encode()).hexdigest()[:10].translate(_HASH_LETTERS)


def hash_config_maps(mset: ManifestSet) -> list[HashedConfigMap]:
    """Rename every ConfigMap `NAME` to `NAME-<content hash>`, immutable, and point at it.

    The references rewritten in every pod template: `env[].valueFrom.configMapKeyRef`,
    `envFrom[].configMapRef`, `volumes[].configMap` and `volumes[].projected.sources[]
    .configMap` (containers and initContainers). A ConfigMap whose content changes gets a
    new name, so running pods never see the new release's config and a rollback is a
    pointer change. Each carries the label `conveyor/config-of: NAME` (for garbage collection).
    """
    renamed: dict[str, str] = {}
    out: list[HashedConfigMap] = []
    for doc in mset.of_kind("ConfigMap"):
        name = doc.name
        hashed = f"{name}-{config_map_hash(doc.data.get('data'), doc.data.get('binaryData'))}"
        meta = doc.data["metadata"]
        meta["name"] = hashed
        labels = meta.get("labels")
        if not isinstance(labels, dict):
            labels = CommentedMap()
            meta["labels"] = labels
        labels[CONFIG_OF_LABEL] = name
        doc.data["immutable"] = True
        renamed[name] = hashed
        out.append(HashedConfigMap(name, hashed, doc.where()))
    if renamed:
        for doc in mset.workloads():
            spec = doc.pod_spec()
            assert spec is not None
            _rename_references(spec, renamed)
    return out


def _rename_references(pod_spec: Any, renamed: dict[str, str]) -> None:
    def swap(ref: Any) -> None:
        if isinstance(ref, dict) and ref.get("name") in renamed:
            ref["name"] = renamed[ref["name"]]

    for key in ("initContainers", "containers"):
        for c in pod_spec.get(key) or []:
            if not isinstance(c, dict):
                continue
            for e in c.get("env") or []:
                swap(_get(e, "valueFrom", "configMapKeyRef"))
            for e in c.get("envFrom") or []:
                swap(e.get("configMapRef") if isinstance(e, dict) else None)
    for v in pod_spec.get("volumes") or []:
        if not isinstance(v, dict):
            continue
        swap(v.get("configMap"))
        for s in _get(v, "projected", "sources") or []:
            swap(s.get("configMap") if isinstance(s, dict) else None)


_PATH_PART = re.compile(r"""\.?([^.\[\]]+)|\[(\d+)\]|\[([^=\]]+)=("[^"]*"|[^\]]*)\]""")


def line_of_path(data: Any, path: str) -> int | None:
    """The line of a field the API server names (`spec.ports[0].port`,
    `.spec.template.spec.containers[name="web"].imagePullPolicyy`) in a loaded document;
    the deepest line found when the path goes further than the document."""
    node, line = data, None
    for m in _PATH_PART.finditer(path):
        key, index, sel_key, sel_value = m.groups()
        if key is not None:
            if not isinstance(node, dict) or key not in node:
                break
            line = line_of(node, key) or line
            node = node[key]
        elif index is not None:
            i = int(index)
            if not isinstance(node, list) or i >= len(node):
                break
            line = line_of(node, i) or line
            node = node[i]
        else:
            wanted = sel_value.strip('"')
            match = next(
                (
                    (i, item)
                    for i, item in enumerate(node if isinstance(node, list) else [])
                    if isinstance(item, dict) and str(item.get(sel_key)) == wanted
                ),
                None,
            )
            if match is None:
                break
            line = line_of(node, match[0]) or line
            node = match[1]
    return line
