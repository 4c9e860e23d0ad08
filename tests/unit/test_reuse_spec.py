"""`reuse:` in the pipeline file and the input digest (engine/reuse.py), without I/O."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.actions.build import Build
from conveyor.engine import reuse
from conveyor.errors import ValidationFailed
from conveyor.spec.pipeline_file import from_model, load_pipeline

PIPELINE = """\
name: p
stages:
  - name: Build
    actions:
      - {name: Make, type: build, reuse: false, config: {publishes: {repository: web}}}
      - {name: Test, type: shell, reuse: true, config: {commands: [x]}}
      - {name: Plain, type: build, config: {}}
      - {name: Pub, type: build, config: {publishes: {repository: web}}}
"""


def test_reuse_is_read_written_back_and_defaults_on_for_a_publishing_build(
    tmp_path: Path,
) -> None:
    """`reuse:` round-trips; unset, it is on for a build that publishes and off otherwise."""
    f = tmp_path / "p.yaml"
    f.write_text(PIPELINE)
    p = load_pipeline(f)
    acts = {a.name: a for _, a in p.all_actions()}
    assert [acts[n].reuse for n in ("Make", "Test", "Plain", "Pub")] == [False, True, None, None]
    assert [a.get("reuse") for a in from_model(p)["stages"][0]["actions"]] == [
        False,
        True,
        None,
        None,
    ]
    on = {n: reuse.enabled({}, acts[n], Build, acts[n].config) for n in acts}
    assert on == {"Make": False, "Test": True, "Plain": False, "Pub": True}
    assert not reuse.enabled({"reuse": False}, acts["Pub"], Build, acts["Pub"].config)


def test_reuse_on_a_deploy_is_refused_at_its_line(tmp_path: Path) -> None:
    """`reuse: true` on an action that deploys is a located error, not a silent skip."""
    f = tmp_path / "p.yaml"
    f.write_text(
        "name: p\nstages:\n  - name: D\n    actions:\n"
        "      - name: Ship\n        type: deploy\n        reuse: true\n"
    )
    with pytest.raises(ValidationFailed) as e:
        load_pipeline(f)
    assert "p.yaml:7:" in str(e.value) and "cannot be reused" in str(e.value)


def test_the_input_digest_moves_with_any_input() -> None:
    """Another input artifact, config value or buildspec gives another digest."""
    f_text = PIPELINE
    from ruamel.yaml import YAML

    from conveyor.spec.pipeline_file import parse
    from conveyor.spec.yamlfile import Lines

    p = parse(YAML(typ="safe").load(f_text), Lines("p.yaml"))
    _, a = p.find_action("Pub")
    base = reuse.input_digest(p, "Build", a, {"x": 1}, {"src": "sha256:1"}, {"buildspec": "b"})
    assert base == reuse.input_digest(
        p, "Build", a, {"x": 1}, {"src": "sha256:1"}, {"buildspec": "b"}
    )
    assert base != reuse.input_digest(
        p, "Build", a, {"x": 2}, {"src": "sha256:1"}, {"buildspec": "b"}
    )
    assert base != reuse.input_digest(
        p, "Build", a, {"x": 1}, {"src": "sha256:2"}, {"buildspec": "b"}
    )
    assert base != reuse.input_digest(
        p, "Build", a, {"x": 1}, {"src": "sha256:1"}, {"buildspec": "c"}
    )
