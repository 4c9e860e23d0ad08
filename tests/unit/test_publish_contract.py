"""The publish contract: the build sets REPOSITORY_URI and IMAGE_TAG from `publishes`, validate
reports where publishes, the environment and the manifests disagree, and the deploy says which
container it pinned and why."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.actions.build import Publishes, publish_env
from conveyor.actions.registry import ActionRegistry
from conveyor.adapters.manifests import load_manifests, pin_image
from conveyor.cli.init import next_after_apply, next_after_create
from conveyor.errors import ValidationFailed
from conveyor.spec.pipeline_file import load_pipeline, pipeline_warnings

PIPELINE = """\
name: shop
environments:
  test: {registry: test, repository: shop, driver: podman, port: 8081}
  prod: {registry: prod, repository: shop, driver: podman, port: 8080}
stages:
  - name: Source
    actions:
      - name: SourceApp
        type: source.git
        outputs: [app_src]
        namespace: SourceApp
        config: {repository: shop, branch: main}
  - name: Build
    actions:
      - name: Build
        type: build
        inputs: [app_src]
        outputs: [out]
        namespace: Build
        config:
          env: ENV_LINE
          publishes: {environment: test, repository: shop, tag: "#{SourceApp.CommitId}"}
  - name: Deploy
    actions:
      - name: DeployTest
        type: deploy
        environment: test
        inputs: [out]
        config: {manifests: k8s/, image: "#{Build.ImageURI}"}
      - name: Promote
        type: image.promote
        runOrder: 2
        config: {image: "#{Build.ImageURI}", to: prod, repository: PROMOTED}
"""

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: shop}
spec:
  selector: {matchLabels: {app: shop}}
  template:
    metadata: {labels: {app: shop}}
    spec:
      containers:
        - name: web
          image: IMAGE
"""


class FakePlatform:
    """Only what publish_env reads of the local platform: registry hosts (a fake, no I/O)."""

    def registry_host(self, name: str) -> str:
        return {"test": "127.0.0.1:5001", "prod": "127.0.0.1:5002"}[name]


def write(
    tmp_path: Path, env_line: str = "{}", promoted: str = "shop", image: str = "shop"
) -> Path:
    f = tmp_path / "pipeline.yaml"
    f.write_text(PIPELINE.replace("ENV_LINE", env_line).replace("PROMOTED", promoted))
    (tmp_path / "k8s").mkdir(exist_ok=True)
    (tmp_path / "k8s" / "deployment.yaml").write_text(DEPLOYMENT.replace("IMAGE", image))
    return f


def test_the_build_gets_repository_uri_and_image_tag_from_publishes() -> None:
    """publishes {environment: test, repository: shop, tag: abc} -> 127.0.0.1:5001/shop, abc."""
    env = publish_env(FakePlatform(), Publishes(environment="test", repository="shop", tag="abc"))
    assert env["REPOSITORY_URI"] == "127.0.0.1:5001/shop"
    assert (env["IMAGE_TAG"], env["IMAGE_REPO_NAME"], env["REGISTRY_HOST"]) == (
        "abc",
        "shop",
        "127.0.0.1:5001",
    )


def test_a_consistent_pipeline_validates(tmp_path: Path) -> None:
    """publishes, both environments, the promotion and the manifests name 'shop': no problem."""
    f = write(tmp_path)
    pipeline = load_pipeline(f, ActionRegistry().catalogue())
    assert pipeline_warnings(f, pipeline) == []


def test_an_image_tag_in_env_that_differs_from_publishes_is_reported(tmp_path: Path) -> None:
    """env IMAGE_TAG 'latest' vs publishes tag: the line of env.IMAGE_TAG, and the fix."""
    f = write(tmp_path, env_line="{IMAGE_TAG: latest}")
    with pytest.raises(ValidationFailed) as e:
        load_pipeline(f, ActionRegistry().catalogue())
    assert "pipeline.yaml:21: action 'Build': env IMAGE_TAG 'latest' differs from publishes" in str(
        e.value
    )
    assert "remove IMAGE_TAG from env" in str(e.value)


def test_a_promotion_into_another_repository_than_prod_deploys_from_is_reported(
    tmp_path: Path,
) -> None:
    """image.promote repository 'shop-prod' while prod deploys from 'shop'."""
    f = write(tmp_path, promoted="shop-prod")
    with pytest.raises(ValidationFailed, match="promotes into repository 'shop-prod' but"):
        load_pipeline(f, ActionRegistry().catalogue())


def test_a_manifest_image_named_otherwise_is_a_warning_at_the_deploy(tmp_path: Path) -> None:
    """k8s/ names its image 'frontend': a warning located at the deploy's manifests line,
    naming the manifest line to change and what the deploy would do."""
    f = write(tmp_path, image="frontend:latest")
    pipeline = load_pipeline(f, ActionRegistry().catalogue())
    (w,) = pipeline_warnings(f, pipeline)
    assert str(w).startswith(f"{f}:29: warning: action 'DeployTest'")
    assert "no container in k8s/ has an image named 'shop'" in str(w)
    assert "would pin the only container, 'web'" in str(w)
    assert "deployment.yaml:11" in str(w)


@pytest.mark.parametrize(
    ("image", "why"),
    [
        ("shop:latest", "its image repository is 'shop', the published one"),
        ("frontend:latest", "the only container (no image named 'shop')"),
    ],
)
def test_the_deploy_says_which_container_it_pinned_and_why(
    tmp_path: Path, image: str, why: str
) -> None:
    """By the published repository's name, else the only container: the reason is kept."""
    write(tmp_path, image=image)
    (pinned,) = pin_image(
        load_manifests(tmp_path, "k8s/"), "127.0.0.1:5001/shop@sha256:" + "a" * 64
    )
    assert (pinned.container, pinned.chosen_by) == ("web", why)


def test_pipeline_apply_names_the_repositories_to_create_then_the_pushes_in_order() -> None:
    """Missing repos first; then the tests repo is pushed before the one whose push starts a run."""
    doc = {
        "triggers": [{"source": "SourceApp"}],
        "stages": [
            {
                "actions": [
                    {"name": "SourceApp", "type": "source.git", "config": {"repository": "shop"}},
                    {
                        "name": "SourceE2E",
                        "type": "source.git",
                        "config": {"repository": "shop-e2e"},
                    },
                ]
            }
        ],
    }
    assert next_after_apply(doc, ["shop"]) == ["next: conveyor repo create shop-e2e"]
    pushes = next_after_apply(doc, ["shop", "shop-e2e"])
    assert [p.split()[6].rstrip(":") for p in pushes] == ["shop-e2e", "shop"]
    assert "(starts a run)" in pushes[1]
    assert next_after_create("shop", [doc]) is None
    assert "conveyor pipeline apply" in (next_after_create("other", [doc]) or "")


def test_publishes_base_gives_the_recipe_tag_and_an_unknown_base_names_the_known(
    tmp_path: Path,
) -> None:
    """`publishes.base: web` -> BASE_IMAGE = the web recipe's own tag (a changed recipe is a
    changed build input); none without it; `base: nginx` is refused at its line, listing the
    known images."""
    from conveyor.actions.build import base_env
    from conveyor.images.recipe import WEB

    with_base = Publishes(environment="test", repository="shop", base="web")
    assert base_env(with_base) == {"BASE_IMAGE": WEB.tag()}
    assert base_env(Publishes(repository="shop")) == base_env(None) == {}
    f = write(tmp_path)
    f.write_text(f.read_text().replace('tag: "#{SourceApp.CommitId}"}', "base: nginx}"))
    with pytest.raises(ValidationFailed) as e:
        load_pipeline(f, ActionRegistry().catalogue())
    assert "pipeline.yaml:22: action 'Build': config 'publishes.base'" in str(e.value)
    assert "unknown base image 'nginx' (known: build, web)" in str(e.value)
