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

KUBECTL_VERSION = "v1.31.4"
CRANE_VERSION = "v0.20.2"

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
    manifests' image lines contain), ROLLOUT_TIMEOUT, EKS_KUBECTL_ROLE_ARN (optional), APP_URL
    (optional: else the Service's load balancer).
    """
    install = [
        "curl -fsSLo /usr/local/bin/kubectl "
        f"https://dl.k8s.io/release/{KUBECTL_VERSION}/bin/linux/amd64/kubectl",
        "chmod +x /usr/local/bin/kubectl",
    ]
    pre = [
        _RESOLVE_IMAGE,
        'aws eks update-kubeconfig --name "$EKS_CLUSTER" ${EKS_KUBECTL_ROLE_ARN:+--role-arn '
        '"$EKS_KUBECTL_ROLE_ARN"}',
        'kubectl get namespace "$K8S_NAMESPACE" >/dev/null 2>&1 || kubectl create namespace '
        '"$K8S_NAMESPACE"',
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
        'kubectl apply -n "$K8S_NAMESPACE" -f "$RENDERED"/',
        'for d in $(kubectl get -n "$K8S_NAMESPACE" -f "$RENDERED"/ -o name | grep '
        '"^deployment"); do '
        'kubectl rollout status -n "$K8S_NAMESPACE" "$d" --timeout="${ROLLOUT_TIMEOUT:-300}s" '
        '|| { kubectl rollout undo -n "$K8S_NAMESPACE" "$d"; exit 1; }; done',
        'ImageURI="$IMAGE"; ImageDigest="${IMAGE#*@}"',
        'URL="${APP_URL:-}"; if [ -z "$URL" ]; then HOST="$(kubectl get svc -n "$K8S_NAMESPACE" -o '
        "jsonpath='{.items[0].status.loadBalancer.ingress[0].hostname}')\"; "
        'URL="${HOST:+http://$HOST}"; fi',
        'echo "deployed $IMAGE to $EKS_CLUSTER/$K8S_NAMESPACE ${URL}"',
    ]
    return _spec(
        install,
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
        "curl -fsSL "
        f"https://github.com/google/go-containerregistry/releases/download/{CRANE_VERSION}/"
        "go-containerregistry_Linux_x86_64.tar.gz | tar -xz -C /usr/local/bin crane",
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
