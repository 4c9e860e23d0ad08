"""The approval's externalEntityLink: a literal that is not http(s) is refused at validation."""

from __future__ import annotations

import pytest

from conveyor.actions.approval import Approval
from conveyor.actions.registry import ActionRegistry
from conveyor.errors import ValidationFailed
from conveyor.spec.pipeline_file import load_pipeline

PIPELINE = """\
name: shop
variables: [{{name: LINK, defaultValue: "https://example.com"}}]
stages:
  - name: Gate
    actions:
      - name: Approve
        type: approval
        config:
          externalEntityLink: {link}
"""


def problems(link: str) -> list[str]:
    registry = ActionRegistry({"approval": Approval})
    try:
        load_pipeline("pipeline.yaml", registry.catalogue(), text=PIPELINE.format(link=link))
    except ValidationFailed as exc:
        return [str(p) for p in exc.problems]
    return []


@pytest.mark.parametrize(
    "link",
    [
        '"javascript:fetch(1)"',
        '"JavaScript:alert(1)"',
        '"data:text/html,<script>alert(1)</script>"',
        '"vbscript:x"',
        '"//evil.example/x"',
        '"/relative/path"',
        '"javascript:#{variables.LINK}"',
    ],
)
def test_a_literal_non_http_link_is_refused_with_its_line(link: str) -> None:
    """A literal link that is not http(s) is one problem at the link's line (9)."""
    found = problems(link)
    assert len(found) == 1, found
    assert found[0].startswith("pipeline.yaml:9:"), found
    assert "not an http(s) URL" in found[0]


@pytest.mark.parametrize(
    "link",
    [
        '"https://example.com/change/42"',
        '"http://127.0.0.1:9000/x"',
        '"#{variables.LINK}"',
        '"https://tracker.example/#{variables.LINK}"',
    ],
)
def test_http_links_and_variables_are_accepted(link: str) -> None:
    """http(s) links pass; a link from a variable is checked where it is shown."""
    assert problems(link) == []
