"""`conveyor images push NAME --to REPOSITORY`: a base image, at its recipe's tag, copied into a
registry: on AWS, the stack's ECR repository that a build's `publishes.base` builds FROM (the
CodeBuild project gets `BASE_IMAGE=REPOSITORY:<recipe hash>`, see actions/build_aws.py).

The copy is skopeo's (`containers-storage:` -> `docker://`), as promotion's is. The pushed tag is
the recipe's content hash, so the template names exactly the image the recipe builds; ECR
repositories for base images have immutable tags, and pushing the same tag again is a no-op.

ECR: the login token comes from boto3 (`ecr.get_authorization_token`, the AWS CLI's
credentials) and reaches skopeo in a private auth file, never on the command line. A loopback
registry (127.0.0.1, localhost: `aws rehearse`, tests) is plain HTTP.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from conveyor.adapters.tool_errors import describe
from conveyor.errors import ActionError, ConfigError, Unavailable
from conveyor.images.builder import image_exists
from conveyor.images.recipe import Recipe

# host[:port]/path, lower case, no scheme, tag or digest (the tag is the recipe's)
_REPOSITORY = re.compile(
    r"^(?P<host>[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]{1,5})?)"
    r"(/[a-z0-9]+([._-][a-z0-9]+)*)+$"
)
ECR_HOST = re.compile(
    r"^(?P<account>[0-9]{12})\.dkr\.ecr\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(\.cn)?$"
)
LOOPBACK = ("127.0.0.1", "localhost")

# registry host -> "user:password" (an ECR token), for the auth file
Login = Callable[[str], str]


@dataclass(frozen=True)
class Pushed:
    source: str
    destination: str
    digest: str

    def as_dict(self) -> dict[str, str]:
        return {"source": self.source, "destination": self.destination, "digest": self.digest}


def check_repository(repository: str) -> str:
    """The registry host of `repository`; anything else (a scheme, a tag, upper case) is a
    usage error saying the form."""
    m = _REPOSITORY.fullmatch(repository) if len(repository) <= 512 else None
    if m is None:
        raise ConfigError(
            f"--to {repository!r}: not a repository; give HOST[:PORT]/PATH without a scheme or "
            "tag, e.g. 123456789012.dkr.ecr.eu-west-1.amazonaws.com/seed-webapp-base-web "
            "(the tag is the recipe's hash)"
        )
    return m.group("host")


def ecr_login(host: str) -> str:
    """`AWS:<token>` for an ECR registry, from boto3 (the AWS CLI's credentials)."""
    m = ECR_HOST.fullmatch(host)
    assert m is not None
    from conveyor.aws.operations import Aws

    aws = Aws(m.group("region"))
    answer = aws.call(
        "ecr",
        "get_authorization_token",
        f"logging in to {host}",
        registryIds=[m.group("account")],
    )
    token = answer["authorizationData"][0]["authorizationToken"]
    return base64.b64decode(token).decode()


def push_image(
    recipe: Recipe,
    repository: str,
    env: Mapping[str, str],
    *,
    login: Login | None = None,
    registries_conf: Path | None = None,
) -> Pushed:
    """Copy `localhost/conveyor/NAME:<hash>` to `REPOSITORY:<hash>`; its digest there."""
    host = check_repository(repository)
    skopeo = shutil.which("skopeo")
    if skopeo is None:
        raise Unavailable("skopeo not found: it copies the image; apt-get install -y skopeo")
    podman = shutil.which("podman")
    if podman is None:
        raise Unavailable("podman not found: it stores the images; apt-get install -y podman")
    source = recipe.tag()
    full_env = {**os.environ, **env}
    if not image_exists(source, env, podman):
        raise Unavailable(
            f"{source} is not built here: run `conveyor images build {recipe.name}` first"
        )
    destination = f"{repository}:{recipe.content_hash()}"
    if login is None and ECR_HOST.fullmatch(host):
        login = ecr_login
    with tempfile.TemporaryDirectory(prefix="conveyor-push-") as tmp:
        argv = [skopeo]
        if registries_conf is not None:
            argv += ["--registries-conf", str(registries_conf)]
        argv += ["copy", "--retry-times", "2", "--digestfile", f"{tmp}/digest"]
        if host.split(":")[0] in LOOPBACK:
            argv.append("--dest-tls-verify=false")
        if login is not None:
            user, _, password = login(host).partition(":")
            auth = Path(tmp) / "auth.json"
            fd = os.open(auth, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                token = base64.b64encode(f"{user}:{password}".encode()).decode()
                json.dump({"auths": {host: {"auth": token}}}, f)
            argv += ["--dest-authfile", str(auth)]
        argv += [f"containers-storage:{source}", f"docker://{destination}"]
        done = subprocess.run(argv, env=full_env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise ActionError(
                describe(
                    "skopeo",
                    f"pushing {source} to {destination} failed (exit {done.returncode})",
                    done.stdout + done.stderr,
                )
            )
        digest = (Path(tmp) / "digest").read_text().strip()
    return Pushed(source, destination, digest)
