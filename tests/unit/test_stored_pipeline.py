"""A stored pipeline definition reads back as the same model through the service's light
reader (no pydantic) as through the file parser."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.service.queries import pipeline_of
from conveyor.spec.pipeline_file import parse
from conveyor.spec.yamlfile import load

REPO = Path(__file__).resolve().parents[2]
FILES = [
    REPO / "examples" / "pipeline.yaml",
    REPO / "src" / "conveyor" / "templates" / "pipeline.yaml",
    REPO / "tests" / "unit" / "data" / "seed_eks.yaml",
]
EVERY_FIELD = """\
name: every-field
executionMode: QUEUED
variables:
  - {name: V, defaultValue: "1.0", description: d, allowedPattern: "[0-9.]+"}
  - {name: W}
environments:
  test: {registry: test, repository: web, driver: podman, port: 8081}
  prod: {driver: kubernetes, namespace: prod, context: c, url: "http://x", settings: {a: 1}}
triggers:
  - source: Src
    branches: {includes: [main], excludes: [wip]}
    filePaths: {includes: ["src/**"]}
  - {source: Src, tags: {includes: ["v*"]}}
settings: {approvalWebhook: "http://hook"}
stages:
  - name: S
    actions:
      - {name: Src, type: source.git, outputs: [src], namespace: Src, config: {repository: r}}
  - name: B
    onFailure: {result: RETRY, retryConfiguration: {retryMode: ALL_ACTIONS}}
    actions:
      - {name: b, type: shell, runOrder: 2, inputs: [src], timeout: 15m, region: eu-west-1,
         environment: test, config: {commands: ["true"]}}
      - {name: c, type: shell, timeout: 90, config: {commands: ["true"]}}
  - name: C
    onFailure: {result: ROLLBACK}
    actions:
      - {name: d, type: approval}
"""


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_a_stored_file_reads_back_as_the_parser_builds_it(path: Path) -> None:
    """The light reader builds the model the file parser builds from the same stored file."""
    doc, lines = load(path)
    assert pipeline_of(doc, "p") == parse(doc, lines)


def test_every_field_of_the_file_reads_back_the_same(tmp_path: Path) -> None:
    """Defaults, filters, onFailure, durations, variables and environments all agree."""
    f = tmp_path / "p.yaml"
    f.write_text(EVERY_FIELD)
    doc, lines = load(f)
    assert pipeline_of(doc) == parse(doc, lines)


def test_a_definition_the_light_reader_cannot_read_goes_to_the_parser() -> None:
    """A definition with a bad duration gets the file parser's located error, not a crash."""
    from conveyor.errors import ValidationFailed

    bad = {
        "name": "p",
        "stages": [{"name": "A", "actions": [{"name": "a", "type": "shell", "timeout": "soon"}]}],
    }
    with pytest.raises(ValidationFailed):
        pipeline_of(bad, "p")
