"""`conveyor images build NAME` and `conveyor images list`: the local base images built from
Debian packages (see conveyor.images)."""

from __future__ import annotations

import json
import os
from typing import Any

import click


def _context() -> tuple[Any, dict[str, str]]:
    """The state dir and podman's environment: the caller's CONTAINERS_CONF when it has one,
    else Conveyor's own (runc, lower ulimits) in a directory of the images' own, so that the
    platform's registries.conf is never rewritten from here."""
    from conveyor.cli.platform import _settings
    from conveyor.platform.containers_conf import write_containers_config

    settings = _settings()
    if os.environ.get("CONTAINERS_CONF"):
        return settings.state_dir, {}
    return settings.state_dir, write_containers_config(
        settings.state_dir / "images" / "containers", []
    )


@click.group("images")
def images_group() -> None:
    """Local base images built offline from Debian packages (mmdebstrap + podman import)."""


@images_group.command("build")
@click.argument("names", metavar="NAME...", nargs=-1, required=True)
@click.option("--force", is_flag=True, help="build even when the recipe's image is there")
@click.option("--json", "as_json", is_flag=True, help="print the results as JSON")
def build_cmd(names: tuple[str, ...], force: bool, as_json: bool) -> None:
    """Build the image NAME (web, build) unless its recipe's tag already exists."""
    from conveyor.images.builder import ImageBuilder, default_apt_cache
    from conveyor.images.recipe import lookup

    recipes = [lookup(n) for n in names]  # every name checked before anything is built
    state_dir, env = _context()
    say = (lambda _line: None) if as_json else (lambda line: click.echo(line, err=True))
    builder = ImageBuilder(env, state_dir / "images", default_apt_cache(state_dir), say=say)
    results = [builder.build(r, force=force) for r in recipes]
    if as_json:
        click.echo(json.dumps({"images": [r.as_dict() for r in results]}, indent=2))
        return
    for r in results:
        size = f"{r.size / 1e6:.1f} MB" if r.size is not None else "size unknown"
        how = f"built in {r.seconds:.1f} s" if r.built else "already built (recipe unchanged)"
        click.echo(f"{r.tag}  {size}  {how}")


@images_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="print the images as JSON")
def list_cmd(as_json: bool) -> None:
    """Each known image: its tag for the current recipe, present or missing."""
    from conveyor.images import images_status

    state_dir, env = _context()
    rows = images_status(state_dir, env)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "images": [
                        {
                            "name": s.name,
                            "tag": s.tag,
                            "present": s.present,
                            "description": s.description,
                        }
                        for s in rows
                    ]
                },
                indent=2,
            )
        )
        return
    for s in rows:
        state = "present" if s.present else f"missing (build: {s.build_command})"
        click.echo(f"{s.name:<6} {s.tag}  {state}\n       {s.description}")


@images_group.command("push")
@click.argument("name", metavar="NAME")
@click.option("--to", "repository", required=True, metavar="REPO", help="HOST[:PORT]/PATH")
@click.option("--json", "as_json", is_flag=True, help="print the result as JSON")
def push_cmd(name: str, repository: str, as_json: bool) -> None:
    """Copy the image NAME, at its recipe's tag, to REPO (on AWS: the stack's output
    WebBaseRepositoryUri, the ECR repository a build's `publishes.base` builds FROM; the login
    comes from the AWS CLI's credentials)."""
    from conveyor.images.push import push_image
    from conveyor.images.recipe import lookup

    recipe = lookup(name)
    _, env = _context()
    pushed = push_image(recipe, repository, env)
    if as_json:
        click.echo(json.dumps(pushed.as_dict(), indent=2))
        return
    click.echo(f"{pushed.source} -> {pushed.destination}  {pushed.digest}")
