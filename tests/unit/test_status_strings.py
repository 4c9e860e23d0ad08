"""Status strings are spelled once, in conveyor/model/status.py."""

from __future__ import annotations

import re
from pathlib import Path

import conveyor
from conveyor.model.status import ActionStatus, ApprovalStatus, ExecutionStatus, StageStatus

SRC = Path(conveyor.__file__).parent
# not converted: AWS's own API values (CloudFormation and CodePipeline spell them, not us)
PENDING = ("aws",)


def test_no_status_literal_outside_the_status_module() -> None:
    """No module (engine, actions, monitoring, store, service, cli, server) spells a status as a string."""
    names = {
        s.value for e in (ActionStatus, ApprovalStatus, ExecutionStatus, StageStatus) for s in e
    }
    literal = re.compile("[\"'](" + "|".join(sorted(names)) + ")[\"']")
    found = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC)
        if rel.parts[0] in PENDING or rel == Path("model/status.py"):
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if literal.search(line):
                found.append(f"{rel}:{n}: {line.strip()}")
    assert found == []
