"""The publish contract in a real build: the buildspec sees REPOSITORY_URI and IMAGE_TAG from
the action's `publishes`, and the action resolves exactly that reference."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from conveyor.actions.build import Build
from conveyor.testing.fakes import FakePlatform
from tests.integration.test_build_action import context

pytestmark = pytest.mark.integration

BUILDSPEC = """version: 0.2
phases:
  build:
    commands:
      - mkdir -p out && echo "$REPOSITORY_URI:$IMAGE_TAG" > out/pushed.txt
artifacts:
  files: ['out/**/*']
"""


class FakeRegistryPlatform(FakePlatform):
    """conveyor.testing's fake platform with registry 'test' at 127.0.0.1:5999, noting what
    the action resolves (a fake: no registry runs)."""

    def __init__(self) -> None:
        super().__init__(registries={"test": "127.0.0.1:5999"})
        self.resolved: list[str] = []

    def resolve_digest(self, image_ref: str) -> str:
        self.resolved.append(image_ref)
        return "sha256:" + "b" * 64


def test_the_buildspec_pushes_where_publishes_says_without_env(tmp_path: Path) -> None:
    """publishes {test, shop, v7} and no env: the buildspec sees 127.0.0.1:5999/shop:v7 (not the
    commit, not the pipeline's name) and the action resolves that same reference."""
    app = tmp_path / "in" / "app"
    app.mkdir(parents=True)
    (app / "buildspec.yml").write_text(BUILDSPEC)
    config = {"publishes": {"environment": "test", "repository": "shop", "tag": "v7"}}
    ctx, _ = context(tmp_path, config, {"app": app}, ("bundle",))
    platform = FakeRegistryPlatform()
    ctx = dataclasses.replace(ctx, services=dataclasses.replace(ctx.services, platform=platform))
    result = Build().run(ctx)
    assert result.succeeded, result.message
    pushed = (tmp_path / "out" / "bundle" / "out" / "pushed.txt").read_text().strip()
    assert pushed == "127.0.0.1:5999/shop:v7"
    assert platform.resolved == [pushed]
    assert result.variables["ImageURI"] == "127.0.0.1:5999/shop@sha256:" + "b" * 64
