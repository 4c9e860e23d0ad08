"""The buildspecs Conveyor generates for the CodeBuild projects it synthesizes.

The build and test actions run the buildspec that lives in their source (the application's
`buildspec.yml`, the Selenium suite's); these are the ones Conveyor itself owns on AWS:

- deploy: `aws eks update-kubeconfig`, the manifests with the image pinned **by digest**,
  `kubectl apply`, `kubectl rollout status`; exports URL, ImageURI, ImageDigest.
- promote: copy by digest from the test to the prod ECR repository with crane (pinned
  release, installed in the install phase), then verify the digest with
  `aws ecr describe-images`; exports ImageURI, ImageDigest, ImageTag.
- shell: the action's commands.

Each is plain text built from constants (no timestamps): same input, same bytes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

# crane: a pinned release with its sha256 (the image does not ship crane). The checksum is the
# one published for this release's go-containerregistry_Linux_x86_64.tar.gz.
CRANE_VERSION = "v0.20.3"
CRANE_SHA256 = "36c67a932f489b3f2724b64af90b599a8ef2aa7b004872597373c0ad694dc059"
CRANE_URL = (
    f"https://github.com/google/go-containerregistry/releases/download/{CRANE_VERSION}/"
    "go-containerregistry_Linux_x86_64.tar.gz"
)

# kubectl: the one the image ships (standard:7.0 has /usr/local/bin/kubectl), or, when the
# project sets KUBECTL_URL and KUBECTL_SHA256 (a newer kubectl for a newer cluster), that one,
# checked against its sha256.
_KUBECTL = r"""
if [ -n "${KUBECTL_URL:-}" ]; then
  [ -n "${KUBECTL_SHA256:-}" ] || { echo "KUBECTL_URL is set without KUBECTL_SHA256: give both" >&2; exit 1; }
  curl -fsSLo /tmp/kubectl "$KUBECTL_URL"
  echo "${KUBECTL_SHA256}  /tmp/kubectl" | sha256sum -c -
  install -m 0755 /tmp/kubectl /usr/local/bin/kubectl
fi
command -v kubectl >/dev/null || { echo "kubectl not found in the image: set KUBECTL_URL and KUBECTL_SHA256 on the project" >&2; exit 1; }
kubectl version --client 2>/dev/null | head -n 1 || true
""".strip()

# Reaches $URL from CodeBuild: a cluster-internal Service URL (http://NAME.NS.svc.cluster.local:
# PORT, what the deploy exports when the environment has no `url:`) is port-forwarded to a
# free local port (kubectl chooses it and prints it), then $URL is that local address.
PORT_FORWARD = r"""
case "$URL" in
  http://*.svc.cluster.local*)
    HOSTPORT="${URL#http://}"; HOSTPORT="${HOSTPORT%%/*}"
    SVC="${HOSTPORT%%.*}"; REST="${HOSTPORT#*.}"; FWD_NS="${REST%%.*}"; SVC_PORT="${HOSTPORT##*:}"
    aws eks update-kubeconfig --name "${EKS_CLUSTER:?EKS_CLUSTER is not set}" ${EKS_KUBECTL_ROLE_ARN:+--role-arn "$EKS_KUBECTL_ROLE_ARN"}
    PF_LOG="$(mktemp)"
    kubectl port-forward -n "$FWD_NS" "svc/$SVC" ":$SVC_PORT" >"$PF_LOG" 2>&1 &
    LOCAL_PORT=""
    for i in $(seq 1 60); do
      LOCAL_PORT="$(sed -n 's/^Forwarding from 127\.0\.0\.1:\([0-9]*\) .*/\1/p' "$PF_LOG" | head -n 1)"
      [ -n "$LOCAL_PORT" ] && break; sleep 1
    done
    [ -n "$LOCAL_PORT" ] || { echo "kubectl port-forward to svc/$SVC in $FWD_NS did not start:" >&2; cat "$PF_LOG" >&2; exit 1; }
    URL="http://127.0.0.1:${LOCAL_PORT}"
    for i in $(seq 1 60); do curl -fsS -o /dev/null "$URL/" && break; sleep 1; done
    curl -fsS -o /dev/null "$URL/" || { echo "svc/$SVC in $FWD_NS does not answer through port-forward on $URL" >&2; exit 1; }
    echo "reaching svc/$SVC in namespace $FWD_NS through kubectl port-forward on $URL";;
esac
""".strip()

# Resolves $IMAGE to repo@sha256:... : a tag is looked up in ECR, an empty value falls back to
# the imageDetail.json the application's buildspec writes into its output artifact.
_RESOLVE_IMAGE = r"""
if [ -z "${IMAGE:-}" ] && [ -f "${CODEBUILD_SRC_DIR}/imageDetail.json" ]; then
  IMAGE="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["ImageURI"])' \
    "${CODEBUILD_SRC_DIR}/imageDetail.json")";
fi
if [ -z "${IMAGE:-}" ]; then
  echo "no image given (IMAGE) and no imageDetail.json in the input artifact" >&2; exit 1;
fi
case "$IMAGE" in
  *@sha256:*) ;;
  *) REPO_URI="${IMAGE%:*}"; TAG="${IMAGE##*:}";
     DIGEST="$(aws ecr describe-images --repository-name "${REPO_URI#*/}" \
       --image-ids imageTag="$TAG" --query 'imageDetails[0].imageDigest' --output text)";
     IMAGE="${REPO_URI}@${DIGEST}";;
esac
case "$IMAGE" in
  *[!A-Za-z0-9._/:@-]*) echo "IMAGE is not an image reference (repo@sha256:... or repo:tag)" >&2; exit 1;;
esac
echo "image: $IMAGE"
""".strip()


def _literal(commands: Sequence[str]) -> str:
    return "\n".join(
        f"      - {json.dumps(c)}"
        if "\n" not in c
        else "      - |\n" + "\n".join(f"        {line}" for line in c.splitlines())
        for c in commands
    )


def _spec(
    install: Sequence[str],
    pre: Sequence[str],
    build: Sequence[str],
    exported: Sequence[str],
    header: str,
) -> str:
    parts = [f"# {header}", "version: 0.2", "env:", "  shell: bash"]
    if exported:
        parts.append("  exported-variables:")
        parts += [f"    - {v}" for v in exported]
    parts.append("phases:")
    for name, cmds in (("install", install), ("pre_build", pre), ("build", build)):
        if cmds:
            parts += [f"  {name}:", "    commands:", _literal(cmds)]
    return "\n".join(parts) + "\n"


def deploy_buildspec() -> str:
    """kubectl apply of the manifests (image pinned by digest) to an EKS namespace; rollout status.

    Environment: EKS_CLUSTER, K8S_NAMESPACE, MANIFESTS (path in the input artifact), IMAGE
    (repo@sha256:... or repo:tag, resolved to a digest), IMAGE_NAME (the repository name the
    manifests' image lines contain), ROLLOUT_TIMEOUT (seconds; the project's own timeout is
    10 minutes longer, so that `rollout undo` runs), EKS_KUBECTL_ROLE_ARN (optional), APP_URL
    (optional: the environment's `url:`). Exports URL: APP_URL, else the cluster-internal URL
    of the manifests' first Service (the next actions port-forward to it); never empty.
    """
    pre = [
        _RESOLVE_IMAGE,
        'aws eks update-kubeconfig --name "$EKS_CLUSTER" ${EKS_KUBECTL_ROLE_ARN:+--role-arn '
        '"$EKS_KUBECTL_ROLE_ARN"}',
        # a namespace-scoped role cannot read or create the namespace object itself: ask for its
        # default service account, which every namespace has
        'kubectl get -n "$K8S_NAMESPACE" serviceaccount default >/dev/null || { echo "namespace '
        "$K8S_NAMESPACE is missing in cluster $EKS_CLUSTER (or this project's role has no access "
        "to it); the deploy role may not create namespaces: run, with your own credentials, "
        "kubectl create namespace $K8S_NAMESPACE  (or: conveyor aws prepare-cluster --context "
        'CONTEXT --namespace $K8S_NAMESPACE)" >&2; exit 1; }',
    ]
    build = [
        'RENDERED="$(mktemp -d)"',
        'for f in $(find "${CODEBUILD_SRC_DIR}/${MANIFESTS}" -name "*.yaml" -o -name "*.yml" | '
        "sort); do "
        'sed -E "s#^([[:space:]]*(- )?image:[[:space:]]*)"'
        '"[^[:space:]]*${IMAGE_NAME}([:@][^[:space:]]*)?[[:space:]]*\\$#\\1${IMAGE}#" '
        '"$f" > "${RENDERED}/$(basename "$f")"; done',
        'grep -rqF "$IMAGE" "$RENDERED" || { echo "no image line for ${IMAGE_NAME} in '
        '${MANIFESTS}: nothing pinned" >&2; exit 1; }',
        # the API server checks every object (schema, admission, quota) before anything
        # changes: a rejected manifest fails here with the cluster running what it ran
        'kubectl apply --dry-run=server -n "$K8S_NAMESPACE" -f "$RENDERED"/ || { echo "the '
        'cluster refused the manifests (server-side dry run): nothing was applied" >&2; exit 1; }',
        'kubectl apply -n "$K8S_NAMESPACE" -f "$RENDERED"/',
        'for d in $(kubectl get -n "$K8S_NAMESPACE" -f "$RENDERED"/ -o name | grep '
        '"^deployment"); do '
        'kubectl rollout status -n "$K8S_NAMESPACE" "$d" --timeout="${ROLLOUT_TIMEOUT:-300}s" '
        '|| { kubectl rollout undo -n "$K8S_NAMESPACE" "$d"; exit 1; }; done',
        'ImageURI="$IMAGE"; ImageDigest="${IMAGE#*@}"',
        'URL="${APP_URL:-}"; if [ -z "$URL" ]; then URL="$(kubectl get -n "$K8S_NAMESPACE" -f '
        '"$RENDERED"/ -o json | python3 -c \'import json, os, sys; d = json.load(sys.stdin); '
        's = [i for i in d.get("items", [d]) if i.get("kind") == "Service"]; '
        'print("http://%s.%s.svc.cluster.local:%s" % (s[0]["metadata"]["name"], '
        'os.environ["K8S_NAMESPACE"], s[0]["spec"]["ports"][0]["port"]) if s else "")\')"; fi',
        '[ -n "$URL" ] || { echo "no URL for the environment in $K8S_NAMESPACE: the manifests in '
        "${MANIFESTS} have no Service to port-forward to; add one, or set url: on the "
        'environment in the pipeline file (APP_URL)" >&2; exit 1; }',
        'echo "deployed $IMAGE to $EKS_CLUSTER/$K8S_NAMESPACE, reachable at ${URL}"',
    ]
    return _spec(
        [_KUBECTL],
        pre,
        build,
        ["URL", "ImageURI", "ImageDigest"],
        "Generated by conveyor aws synth: deploy by digest to EKS",
    )


def promote_buildspec() -> str:
    """Copy an image by digest to TARGET_REPOSITORY_URI (crane), then verify the digest there.

    Environment: IMAGE (the source, repo@sha256:... or repo:tag), TARGET_REPOSITORY_URI,
    TARGET_REPOSITORY_NAME, TAG (optional), REGISTRY_HOST.
    """
    install = [
        f'command -v crane >/dev/null || {{ curl -fsSLo /tmp/crane.tgz "{CRANE_URL}" && echo '
        f'"{CRANE_SHA256}  /tmp/crane.tgz" | sha256sum -c - && tar -xzf /tmp/crane.tgz -C '
        "/usr/local/bin crane; }",
        "crane version",
    ]
    pre = [
        _RESOLVE_IMAGE,
        'aws ecr get-login-password | crane auth login "$REGISTRY_HOST" -u AWS --password-stdin',
    ]
    build = [
        'DIGEST="${IMAGE#*@}"; ImageTag="${TAG:-${DIGEST#sha256:}}"; ImageTag="${ImageTag:0:128}"',
        'crane copy "$IMAGE" "${TARGET_REPOSITORY_URI}:${ImageTag}"',
        'GOT="$(aws ecr describe-images --repository-name "$TARGET_REPOSITORY_NAME" --image-ids '
        'imageDigest="$DIGEST" '
        "--query 'imageDetails[0].imageDigest' --output text)\"",
        '[ "$GOT" = "$DIGEST" ] || { echo "digest mismatch in ${TARGET_REPOSITORY_NAME}: '
        'expected $DIGEST, got $GOT" >&2; exit 1; }',
        'ImageURI="${TARGET_REPOSITORY_URI}@${DIGEST}"; ImageDigest="$DIGEST"',
        'echo "promoted $IMAGE -> $ImageURI (tag $ImageTag)"',
    ]
    return _spec(
        install,
        pre,
        build,
        ["ImageURI", "ImageDigest", "ImageTag"],
        "Generated by conveyor aws synth: promote by digest (crane), digest verified",
    )


# The local monitor's probes (conveyor.monitoring.probes), for CodeBuild's python3 without
# Conveyor installed: every INTERVAL seconds for BAKE_SECONDS, GET each probe's path; then the
# same rules: availability (share of answers with an expected status) >= minAvailability, and
# the nearest-rank p95 latency <= maxLatencyMs.
_PROBE_SCRIPT = r"""
cat > /tmp/conveyor-probes.py <<'PY'
import json, math, os, sys, time, urllib.error, urllib.request
url = os.environ["URL"].rstrip("/")
probes = json.loads(os.environ.get("PROBES") or '[{"path": "/healthz"}]')
bake, interval = float(os.environ.get("BAKE_SECONDS", "60")), float(os.environ.get("INTERVAL", "5"))
rounds = max(1, math.ceil(bake / interval))
series = {i: [] for i in range(len(probes))}
for r in range(rounds):
    t0 = time.monotonic()
    for i, p in enumerate(probes):
        start = time.perf_counter()
        try:
            with urllib.request.urlopen(url + p.get("path", "/healthz"), timeout=5) as resp:
                status = resp.status
        except urllib.error.HTTPError as e:
            status = e.code
        except OSError as e:
            series[i].append((False, None)); print(f"GET {p.get('path')}: {e}"); continue
        ok = status in p.get("expectStatus", [200])
        series[i].append((ok, (time.perf_counter() - start) * 1000))
    time.sleep(max(0.0, interval - (time.monotonic() - t0)) if r + 1 < rounds else 0)
breaches = []
for i, p in enumerate(probes):
    s = series[i]
    avail = sum(1 for ok, _ in s if ok) / len(s)
    lat = sorted(ms for _, ms in s if ms is not None)
    p95 = lat[max(1, math.ceil(0.95 * len(lat))) - 1] if lat else None
    print(f"GET {url}{p.get('path', '/healthz')}: {len(s)} probes, availability {avail:.2f}, p95 "
          + (f"{p95:.0f} ms" if p95 is not None else "-"))
    if avail < float(p.get("minAvailability", 0.99)):
        breaches.append(f"{p.get('path')}: availability {avail:.2f} < {p.get('minAvailability', 0.99)}")
    if p.get("maxLatencyMs") is not None and p95 is not None and p95 > float(p["maxLatencyMs"]):
        breaches.append(f"{p.get('path')}: p95 latency {p95:.0f} ms > {p['maxLatencyMs']} ms")
if breaches:
    print("monitor: " + "; ".join(breaches), file=sys.stderr); sys.exit(1)
print("monitor: healthy for the whole bake")
PY
""".strip()


def monitor_buildspec() -> str:
    """The local monitor's HTTP probes against the prod URL, for its bake time; fails on a breach.

    Environment: URL (the deploy's exported URL; a cluster-internal one is port-forwarded),
    PROBES (JSON: path, minAvailability, maxLatencyMs, expectStatus), BAKE_SECONDS, INTERVAL,
    EKS_CLUSTER. Its failure fails the stage, whose OnFailure is ROLLBACK.
    """
    return _spec(
        [_KUBECTL, _PROBE_SCRIPT],
        [PORT_FORWARD],
        ["python3 /tmp/conveyor-probes.py"],
        [],
        "Generated by conveyor aws synth: monitor (HTTP probes for the bake time)",
    )
