"""The pipeline file: every problem reported at once, each as FILE:LINE: message."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.actions.registry import ActionRegistry
from conveyor.errors import ValidationFailed
from conveyor.spec.pipeline_file import from_model, load_pipeline, schema
from conveyor.spec.yamlfile import load

BROKEN = """\
name: broken
stages:
  - name: Source
    actions:
      - name: Src
        type: source.git
        outputs: [src]
        namespace: S
        config: {branch: main}
      - name: Src
        type: shel
        runOrder: 0
        config: {commands: [x]}
  - name: Build
    actions:
      - name: Compile
        type: shell
        inputs: [sauce]
        config:
          commands: ["echo #{Nope.CommitId}", "echo #{S.Commitid}"]
      - name: Pack
        type: shell
        inputs: [packed]
        outputs: [packed]
        config: {commands: [x]}
"""


def problems(tmp_path: Path, text: str) -> list[str]:
    f = tmp_path / "p.yaml"
    f.write_text(text)
    with pytest.raises(ValidationFailed) as e:
        load_pipeline(f, ActionRegistry().catalogue())
    return [str(p).replace(str(f), "p.yaml") for p in e.value.problems]


def test_every_semantic_problem_with_its_line(tmp_path: Path) -> None:
    """Duplicates, bad runOrder, unknown type, unknown artifact, bad references, cycles, missing config."""
    got = problems(tmp_path, BROKEN)
    expected = [
        "p.yaml:10: duplicate action name 'Src' in stage 'Source'",
        "p.yaml:12: action 'Src': runOrder must be 1..999, got 0",
        "p.yaml:11: action 'Src': unknown action type 'shel' (did you mean 'shell'?)",
        "p.yaml:18: action 'Compile' reads artifact 'sauce' that no action produces",
        "p.yaml:20: #{Nope.CommitId}: unknown namespace 'Nope'",
        "p.yaml:20: #{S.Commitid}: action 'Src' (source.git) has no output variable 'Commitid' (did you mean 'CommitId'?)",
        "p.yaml:23: action 'Pack' reads its own output 'packed': a cycle",
        "p.yaml:9: action 'Src': missing required config key 'repository'",
    ]
    for want in expected:
        assert any(g.startswith(want) for g in got), f"missing: {want}\n got: {got}"


def test_unknown_key_gets_a_did_you_mean(tmp_path: Path) -> None:
    """A misspelled key names the line and the close match."""
    got = problems(tmp_path, "name: x\nexecutionMod: QUEUED\nstages: []\n")
    assert got == ["p.yaml:2: unknown key 'executionMod' (did you mean 'executionMode'?)"]


def test_malformed_yaml_names_line_and_column(tmp_path: Path) -> None:
    """A YAML syntax error is one located line, not a traceback."""
    got = problems(tmp_path, "name: x\nstages:\n  - name: [unclosed\n")
    assert len(got) == 1 and got[0].startswith("p.yaml:") and "invalid YAML" in got[0]


def test_bad_enum_and_duration(tmp_path: Path) -> None:
    """Values outside the allowed set are reported with their line."""
    got = problems(
        tmp_path,
        "name: x\nexecutionMode: FAST\nstages:\n  - name: A\n    actions:\n"
        "      - {name: a, type: shell, timeout: soon, config: {commands: [x]}}\n",
    )
    assert any(g.startswith("p.yaml:2:") and "executionMode" in g for g in got)
    assert any(g.startswith("p.yaml:6:") and "duration" in g for g in got)


def test_seed_template_is_valid_and_round_trips(tmp_path: Path) -> None:
    """`conveyor init`'s file validates, and writing the model back gives the same pipeline."""
    from importlib import resources

    text = resources.files("conveyor").joinpath("templates/pipeline.yaml").read_text()
    f = tmp_path / "pipeline.yaml"
    f.write_text(text)
    p = load_pipeline(f, ActionRegistry().catalogue())
    assert [s.name for s in p.stages] == [
        "Source",
        "Build",
        "DeployToEKS",
        "RunSeleniumTest",
        "DeployToEKSProdApproval",
        "DeployToEKSProd",
    ]
    assert [a.name for a in p.stages[0].actions] == ["CodeCommitDMF", "CodeCommitTestSelenium"]
    assert {a.run_order for a in p.stages[0].actions} == {1}
    assert [a.name for a in p.stages[-1].actions][:2] == [
        "PushImageToEcrProd",
        "DeployToEKSNamespaceProd",
    ]
    from conveyor.spec.pipeline_file import dump_yaml

    g = tmp_path / "again.yaml"
    g.write_text(dump_yaml(from_model(p)))
    again = load_pipeline(g, ActionRegistry().catalogue())
    assert [
        (
            s.name,
            [(a.name, a.type, a.run_order, a.inputs, a.outputs, a.namespace) for a in s.actions],
        )
        for s in again.stages
    ] == [
        (
            s.name,
            [(a.name, a.type, a.run_order, a.inputs, a.outputs, a.namespace) for a in s.actions],
        )
        for s in p.stages
    ]


def test_schema_describes_the_file() -> None:
    """The JSON Schema lists the top-level keys an editor should offer."""
    s = schema()
    assert {"name", "stages", "executionMode", "environments", "triggers", "variables"} <= set(
        s["properties"]
    )


def test_duplicate_yaml_keys_are_errors(tmp_path: Path) -> None:
    """A key given twice is reported rather than silently overwritten."""
    f = tmp_path / "d.yaml"
    f.write_text("name: a\nname: b\nstages: []\n")
    with pytest.raises(ValidationFailed) as e:
        load(f)
    assert "duplicate key" in str(e.value)
