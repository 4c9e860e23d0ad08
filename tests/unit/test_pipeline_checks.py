"""`validate` catches what a real project got wrong: an image published to a repository its
environment does not deploy from, and a pipeline variable nobody reads (issue 14, section 4)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from conveyor.actions.registry import ActionRegistry
from conveyor.cli.main import cli
from conveyor.errors import ValidationFailed
from conveyor.spec.pipeline_file import load_pipeline

PIPELINE = """\
name: todo
variables:
  - name: APP_VERSION
    defaultValue: "1.0.0"
  - name: USED
    defaultValue: "x"
environments:
  test: {{registry: test, repository: todomvc, port: 8081}}
stages:
  - name: Build
    actions:
      - name: Image
        type: build
        config:
          buildspec: buildspec.yml
          env: {{WHO: "#{{variables.USED}}"}}
          publishes: {{environment: {env}, repository: {repo}, tag: latest}}
"""


def test_a_published_repository_other_than_the_environments_is_a_located_problem(
    tmp_path: Path,
) -> None:
    """publishes.repository 'webapp' against environment repository 'todomvc': FILE:LINE, exit 2."""
    f = tmp_path / "p.yaml"
    f.write_text(PIPELINE.format(env="test", repo="webapp"))
    with pytest.raises(ValidationFailed) as e:
        load_pipeline(f, ActionRegistry().catalogue())
    (problem,) = e.value.problems
    assert problem.line == 17
    assert "publishes to repository 'webapp' but environment 'test' deploys from 'todomvc'" in (
        problem.message
    )
    res = CliRunner().invoke(cli, ["validate", str(f)])
    assert res.exit_code == 2 and f"{f}:17:" in res.output


def test_the_same_repository_with_a_registry_host_and_an_unknown_environment(
    tmp_path: Path,
) -> None:
    """`127.0.0.1:5001/todomvc` is the environment's repository; an unknown environment is named."""
    f = tmp_path / "p.yaml"
    f.write_text(PIPELINE.format(env="test", repo="127.0.0.1:5001/todomvc"))
    load_pipeline(f, ActionRegistry().catalogue())
    f.write_text(PIPELINE.format(env="tset", repo="todomvc"))
    with pytest.raises(ValidationFailed) as e:
        load_pipeline(f, ActionRegistry().catalogue())
    assert "publishes to unknown environment 'tset' (did you mean 'test'?)" in str(e.value)


def test_an_unused_pipeline_variable_is_a_warning_with_its_line(tmp_path: Path) -> None:
    """APP_VERSION, declared and never read, is warned about at its line; validate still exits 0."""
    f = tmp_path / "p.yaml"
    f.write_text(PIPELINE.format(env="test", repo="todomvc"))
    res = CliRunner().invoke(cli, ["validate", str(f)])
    assert res.exit_code == 0, res.output
    warnings = [x for x in res.stderr.splitlines() if x.startswith("warning:")]
    assert warnings == [
        f"warning: {f}:3: pipeline variable 'APP_VERSION' is declared but no action reads it "
        "(#{variables.APP_VERSION}): use it in an action's config, or remove it"
    ]
    assert "valid" in res.stdout
