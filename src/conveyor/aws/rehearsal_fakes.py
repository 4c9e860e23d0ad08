"""Recording fakes of `aws`, `kubectl` and `crane` for `conveyor aws rehearse` (FAKES: not AWS).

The rehearsal puts three tiny executables first on PATH; each runs
`python -m conveyor.aws.rehearsal_fakes TOOL ARGS...`. Every call is appended to a JSON-lines
log (tool, argv, exit code) so that a reader can compare it with what AWS would receive. The
fakes answer the way the real CLIs do, for the calls Conveyor's generated buildspecs make, and
map them onto the local platform:

- `aws ecr describe-images` looks the image up in the local registry standing for the ECR
  repository and prints its digest; `aws ecr get-login-password` prints a token;
  `aws eks update-kubeconfig` prints what the real one prints.
- `kubectl apply -f DIR` deploys the rendered manifests to the local podman environment that
  stands for the namespace (Conveyor's own podman driver: real pods, real readiness);
  `kubectl get` answers from those manifests; `rollout status` reports the environment ready;
  `port-forward svc/NAME :PORT` forwards a free local port to that environment.
- `crane copy SRC DST` copies between the local registries by digest (skopeo).

Anything else exits 1 with `rehearsal fake TOOL: unsupported call`, so a buildspec that starts
using a new command shows up here instead of passing silently.

The state file (`CONVEYOR_REHEARSAL`) is written by conveyor.aws.rehearsal.
"""

from __future__ import annotations

import json
import os
import selectors
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

STATE_ENV = "CONVEYOR_REHEARSAL"
ACCOUNT = "123456789012"
REGION = "us-east-1"


class Unsupported(Exception):
    pass


def _state() -> dict[str, Any]:
    path = os.environ.get(STATE_ENV)
    if not path:
        raise Unsupported(
            f"{STATE_ENV} is not set (the fakes run only under `conveyor aws rehearse`)"
        )
    data: dict[str, Any] = json.loads(Path(path).read_text())
    return data


def _record(state: dict[str, Any], tool: str, argv: list[str], rc: int, note: str = "") -> None:
    entry = {"tool": tool, "argv": argv, "rc": rc, "note": note, "at": round(time.time(), 3)}
    with open(state["calls"], "a", encoding="utf-8") as fh:
        fh.write(json.dumps(entry) + "\n")


def _opt(argv: list[str], *names: str) -> str | None:
    for i, a in enumerate(argv):
        for n in names:
            if a == n and i + 1 < len(argv):
                return argv[i + 1]
            if a.startswith(n + "="):
                return a.split("=", 1)[1]
    return None


def _positionals(argv: list[str], with_value: tuple[str, ...]) -> list[str]:
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a in with_value:
            skip = True
            continue
        if a.startswith("-"):
            continue
        out.append(a)
    return out


# ------------------------------------------------------------------------------- registries


def _platform(state: dict[str, Any]) -> Any:
    from conveyor.platform.local import LocalPlatform
    from conveyor.settings import Settings

    settings = Settings(state_dir=Path(state["state_dir"]), database_url="sqlite://")
    return LocalPlatform(settings, registry_ports=state["registry_ports"])


def _repository_host(state: dict[str, Any], name: str) -> str:
    host = state["repositories"].get(name)
    if host is None:
        raise Unsupported(
            f"no ECR repository '{name}' in this rehearsal (known: {', '.join(state['repositories'])})"
        )
    return str(host)


# ------------------------------------------------------------------------------- aws


def aws(argv: list[str], state: dict[str, Any]) -> int:
    pos = _positionals(
        argv,
        (
            "--name",
            "--role-arn",
            "--region",
            "--repository-name",
            "--image-ids",
            "--query",
            "--output",
        ),
    )
    if pos[:2] == ["eks", "update-kubeconfig"]:
        name = _opt(argv, "--name") or ""
        print(
            f"Added new context arn:aws:eks:{REGION}:{ACCOUNT}:cluster/{name} to /root/.kube/config"
        )
        return 0
    if pos[:2] == ["ecr", "get-login-password"]:
        print("rehearsal-ecr-token")
        return 0
    if pos[:2] == ["ecr", "describe-images"]:
        repo = _opt(argv, "--repository-name") or ""
        ids = _opt(argv, "--image-ids") or ""
        query = _opt(argv, "--query")
        if query != "imageDetails[0].imageDigest" or _opt(argv, "--output") != "text":
            raise Unsupported(f"describe-images with --query {query!r}")
        host = _repository_host(state, repo)
        key, _, value = ids.partition("=")
        from conveyor.adapters.registry import RegistryClient

        with RegistryClient() as client:
            if key == "imageTag":
                digest = client.resolve(f"{host}/{repo}:{value}")
            elif key == "imageDigest":
                digest = value if client.has_manifest(host, repo, value) else ""
            else:
                raise Unsupported(f"--image-ids {ids}")
        if not digest:
            print(
                f"An error occurred (ImageNotFoundException) when calling the DescribeImages "
                f"operation: The image with imageId {{{ids}}} does not exist within the "
                f"repository with name '{repo}'",
                file=sys.stderr,
            )
            return 254
        print(digest)
        return 0
    raise Unsupported(" ".join(pos[:2]))


# ------------------------------------------------------------------------------- kubectl


def _namespace(argv: list[str], state: dict[str, Any]) -> dict[str, Any]:
    ns = _opt(argv, "-n", "--namespace") or "default"
    env = state["namespaces"].get(ns)
    if env is None:
        raise Unsupported(f"namespace '{ns}' is not one this rehearsal maps to a local environment")
    return dict(env, namespace=ns)


def _objects(path: str) -> list[dict[str, Any]]:
    from ruamel.yaml import YAML

    p = Path(path)
    files = sorted(f for f in p.rglob("*") if f.suffix in (".yaml", ".yml")) if p.is_dir() else [p]
    out: list[dict[str, Any]] = []
    y = YAML(typ="safe")
    for f in files:
        out += [d for d in y.load_all(f.read_text()) if isinstance(d, dict)]
    return out


_PLURAL = {"Deployment": "deployment.apps", "Service": "service", "ConfigMap": "configmap"}


def kubectl(argv: list[str], state: dict[str, Any]) -> int:
    pos = _positionals(
        argv, ("-n", "--namespace", "-f", "--filename", "-o", "--output", "--timeout")
    )
    verb = pos[0] if pos else ""
    if verb == "version":
        print("Client Version: rehearsal-fake")
        return 0
    if verb in ("get", "create", "delete") and pos[1:2] in (["namespace"], ["ns"]):
        # the deploy roles' access entries are scoped to their namespace: a cluster-scoped
        # request is refused, as EKS refuses it
        name = pos[2] if len(pos) > 2 else ""
        print(
            f'Error from server (Forbidden): namespaces "{name}" is forbidden: User '
            f'"arn:aws:sts::{ACCOUNT}:assumed-role/codebuild-role/AWSCodeBuild" cannot {verb} '
            'resource "namespaces" in API group "" at the cluster scope',
            file=sys.stderr,
        )
        return 1
    env = _namespace(argv, state)
    if verb == "get" and pos[1:3] in (["serviceaccount", "default"], ["sa", "default"]):
        print("NAME      SECRETS   AGE\ndefault   0         1d")
        return 0
    if verb == "apply":
        path = _opt(argv, "-f", "--filename") or ""
        if "--dry-run=server" in argv:
            return _dry_run(path)
        return _apply(state, env, path)
    if verb == "get" and _opt(argv, "-f", "--filename"):
        objects = _objects(_opt(argv, "-f", "--filename") or "")
        fmt = _opt(argv, "-o", "--output")
        if fmt == "name":
            for o in objects:
                print(
                    f"{_PLURAL.get(o.get('kind', ''), str(o.get('kind', '')).lower())}/{o['metadata']['name']}"
                )
            return 0
        if fmt == "json":
            print(json.dumps({"apiVersion": "v1", "kind": "List", "items": objects}))
            return 0
        raise Unsupported(f"get -f with -o {fmt}")
    if verb == "rollout" and pos[1:2] == ["status"]:
        current = _environment(state, env).current()
        if not current:
            print(
                f"error: {pos[2] if len(pos) > 2 else 'deployment'} has no ready release",
                file=sys.stderr,
            )
            return 1
        name = pos[2].split("/", 1)[-1] if len(pos) > 2 else "?"
        print(f'deployment "{name}" successfully rolled out')
        return 0
    if verb == "rollout" and pos[1:2] == ["undo"]:
        name = pos[2] if len(pos) > 2 else "?"
        print(f"{name} rolled back")
        return 0
    if verb == "port-forward":
        target = pos[1] if len(pos) > 1 else ""
        ports = pos[2] if len(pos) > 2 else ""
        return _port_forward(state, env, target, ports)
    raise Unsupported(" ".join(pos[:2]))


def _environment(state: dict[str, Any], env: dict[str, Any]) -> Any:
    from conveyor.model.pipeline import Environment
    from conveyor.platform.environment import PodmanEnvironment

    e = Environment(
        env["local"],
        registry=str(env.get("registry") or ""),
        port=int(env["port"]),
        settings={"drainSeconds": 1},
    )
    return PodmanEnvironment(_platform(state), e)


def _dry_run(path: str) -> int:
    """`kubectl apply --dry-run=server`: the manifests parsed and checked the way the local
    Kubernetes driver checks them (the API server's own checks cannot run here); nothing
    is deployed."""
    from conveyor.adapters.manifests import load_manifests
    from conveyor.errors import ConveyorError

    root = Path(path)
    try:
        mset = load_manifests(root if root.is_dir() else root.parent, ".")
    except ConveyorError as e:
        print(f"error: {e.message}", file=sys.stderr)
        return 1
    for d in mset.documents:
        print(f"{_PLURAL.get(d.kind, d.kind.lower())}/{d.name} configured (server dry run)")
    return 0


def _apply(state: dict[str, Any], env: dict[str, Any], path: str) -> int:
    from conveyor.adapters.manifests import load_manifests
    from conveyor.adapters.registry import ImageRef

    root = Path(path)
    mset = load_manifests(root if root.is_dir() else root.parent, ".")
    images = [str(c.get("image")) for d in mset.workloads() for c in d.containers()]
    pinned = [i for i in images if "@sha256:" in i]
    if not pinned:
        print(f"rehearsal: no workload image pinned by digest in {path}: {images}", file=sys.stderr)
        return 1
    applied = Path(state["applied_dir"]) / f"{env['namespace']}.yaml"
    applied.parent.mkdir(parents=True, exist_ok=True)
    applied.write_text(mset.dump())
    workdir = Path(state["applied_dir"]) / f"work-{env['namespace']}"
    _environment(state, env).deploy(
        mset,
        ImageRef.parse(pinned[0]),
        workdir=workdir,
        timeout=120,
        log=lambda m: print(f"  [local {env['local']}] {m.rstrip()}", file=sys.stderr),
    )
    for d in mset.documents:
        kind = d.kind
        print(f"{_PLURAL.get(kind, kind.lower())}/{d.name} configured")
    return 0


def _port_forward(state: dict[str, Any], env: dict[str, Any], target: str, ports: str) -> int:
    if not target.startswith(("svc/", "service/")):
        raise Unsupported(f"port-forward {target}")
    local_text, _, remote = ports.partition(":")
    local = int(local_text) if local_text else 0
    upstream = ("127.0.0.1", int(env["port"]))
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", local))
    server.listen(64)
    port = server.getsockname()[1]
    pidfile = Path(state["applied_dir"]) / f"port-forward-{os.getpid()}.pid"
    pidfile.parent.mkdir(parents=True, exist_ok=True)
    pidfile.write_text(str(os.getpid()))
    print(f"Forwarding from 127.0.0.1:{port} -> {remote or upstream[1]}", flush=True)
    _record(
        state,
        "kubectl",
        [
            "port-forward",
            f"(listening on 127.0.0.1:{port} -> local environment {env['local']} on {upstream[0]}:{upstream[1]})",
        ],
        0,
    )
    deadline = time.monotonic() + 900  # never outlive a rehearsal by much

    def pipe(a: socket.socket, b: socket.socket) -> None:
        sel = selectors.DefaultSelector()
        sel.register(a, selectors.EVENT_READ, b)
        sel.register(b, selectors.EVENT_READ, a)
        try:
            while True:
                for key, _ in sel.select(timeout=30):
                    data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                    if not data:
                        return
                    key.data.sendall(data)
        except OSError:
            return
        finally:
            a.close()
            b.close()

    server.settimeout(1.0)
    while time.monotonic() < deadline:
        try:
            conn, _ = server.accept()
        except TimeoutError:
            continue
        try:
            up = socket.create_connection(upstream, timeout=10)
        except OSError:
            conn.close()
            continue
        threading.Thread(target=pipe, args=(conn, up), daemon=True).start()
    return 0


# ------------------------------------------------------------------------------- crane


def crane(argv: list[str], state: dict[str, Any]) -> int:
    pos = _positionals(argv, ("-u", "--username", "-p", "--password"))
    if pos[:1] == ["version"]:
        print("rehearsal-fake")
        return 0
    if pos[:2] == ["auth", "login"]:
        if "--password-stdin" in argv:
            sys.stdin.read()
        print(f"logged in via /root/.docker/config.json ({pos[2] if len(pos) > 2 else ''})")
        return 0
    if pos[:1] == ["copy"] and len(pos) == 3:
        src, dst = pos[1], pos[2]
        conf = _platform(state).container_env()
        r = subprocess.run(
            [
                "skopeo",
                "copy",
                "--all",
                "--preserve-digests",
                "--src-tls-verify=false",
                "--dest-tls-verify=false",
                f"docker://{src}",
                f"docker://{dst}",
            ],
            capture_output=True,
            text=True,
            env={**os.environ, **conf},
            check=False,
        )
        sys.stderr.write(r.stderr)
        return r.returncode
    raise Unsupported(" ".join(pos[:2]))


TOOLS = {"aws": aws, "kubectl": kubectl, "crane": crane}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in TOOLS:
        print(
            f"usage: python -m conveyor.aws.rehearsal_fakes {{{','.join(TOOLS)}}} ARGS...",
            file=sys.stderr,
        )
        return 2
    tool, args = argv[0], argv[1:]
    try:
        state = _state()
    except Unsupported as e:
        print(f"rehearsal fake {tool}: {e}", file=sys.stderr)
        return 2
    if tool == "kubectl" and args[:1] == ["port-forward"]:
        _record(state, tool, args, 0, "started (background)")
    try:
        rc = TOOLS[tool](args, state)
    except Unsupported as e:
        print(f"rehearsal fake {tool}: unsupported call: {e}", file=sys.stderr)
        _record(state, tool, args, 1, f"unsupported: {e}")
        return 1
    except Exception as e:  # the fake reports any failure as the tool's own error
        print(f"rehearsal fake {tool}: {type(e).__name__}: {e}", file=sys.stderr)
        _record(state, tool, args, 1, f"{type(e).__name__}: {e}")
        return 1
    if not (tool == "kubectl" and args[:1] == ["port-forward"]):
        _record(state, tool, args, rc)
    return rc


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
