"""The publish contract, checked against the Kubernetes manifests beside a pipeline file.

A deploy pins the image into the container whose image repository name is the environment's
repository (or into the only container there is). When the pipeline file sits in the app's
repository (as `conveyor init --app` writes it), `validate` reads the deploy actions'
`manifests` there and warns when no container carries that name: with one container the
deploy still picks it (and says so); with several it would fail.
"""

from __future__ import annotations

from pathlib import Path

from conveyor.errors import ValidationFailed
from conveyor.model.pipeline import Pipeline
from conveyor.model.validate import Finding
from conveyor.model.variables import find_refs


def manifest_warnings(path: str | Path, pipeline: Pipeline) -> list[Finding]:
    """`warning:` problems for deploy actions whose manifests name no container after the
    repository the environment deploys from."""
    from conveyor.adapters.manifests import iter_containers, load_manifests, repository_name

    base = Path(path).resolve().parent
    out: list[Finding] = []
    checked: set[tuple[str, str]] = set()
    for _, a in pipeline.all_actions():
        rel = a.config.get("manifests")
        env = pipeline.environments.get(a.environment or "")
        if a.type != "deploy" or not isinstance(rel, str) or env is None or not env.repository:
            continue
        if any(find_refs([rel, env.repository])) or not (base / rel).exists():
            continue
        repo = repository_name(env.repository)
        if (rel, repo) in checked:
            continue
        checked.add((rel, repo))
        try:
            containers = list(iter_containers(load_manifests(base, rel)))
        except ValidationFailed:
            continue  # the deploy reports invalid manifests itself, located
        if not containers or a.config.get("container"):
            continue
        if any(repository_name(str(c.get("image"))) == repo for _, c in containers):
            continue
        names = ", ".join(f"{c.get('name')} (image {c.get('image')})" for _, c in containers)
        doc, first = containers[0]
        outcome = (
            f"the deploy would pin the only container, '{first.get('name')}'"
            if len(containers) == 1
            else "the deploy would find no container to pin and fail"
        )
        out.append(
            Finding(
                (*a.path, "config", "manifests"),
                f"warning: action '{a.name}': environment '{env.name}' deploys from repository "
                f"'{env.repository}', but no container in {rel} has an image named '{repo}' "
                f"({names}); {outcome}: name the image {repo}:latest at {doc.where(first, 'image')}",
            )
        )
    return out
