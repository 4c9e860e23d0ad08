"""Hostile and mutated input files: one located error, never a traceback or a blow-up (issue 12).

The fuzz corpus is seeded: each mutation is named by its seed, and `CONVEYOR_FUZZ_SEED=N`
replays one. Every input has a time budget (`CONVEYOR_FUZZ_BUDGET`, 10 s by default): it is
not a speed measurement (that is `bench/hostile_files.py`), it catches the blow-ups the
adversarial probe found (30 s and more for 412 bytes of aliases or 200,000 keys) with room to
spare on a loaded 2-core machine.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from conveyor.actions.registry import ActionRegistry
from conveyor.buildspec.spec import parse_buildspec
from conveyor.errors import ConveyorError
from conveyor.spec.codepipeline import export_pipeline, load_codepipeline
from conveyor.spec.pipeline_file import load_pipeline
from tests.conftest import CORPUS

REPO = Path(__file__).resolve().parents[2]
BUILDSPECS = CORPUS / "buildspecs"
EXAMPLE = REPO / "examples" / "pipeline.yaml"
MUTATIONS = 1_200  # per test: 2,400 in all, half pipelines (YAML and JSON), half buildspecs
BUDGET = float(os.environ.get("CONVEYOR_FUZZ_BUDGET", "10"))

LAUGHS = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"{n}: &{n} [{','.join(['*' + p] * 9)}]\n" for p, n in zip("abcdefgh", "bcdefghi", strict=True)
)


def _catalogue() -> object:
    return ActionRegistry().catalogue()


def _buildspec_seeds() -> list[str]:
    if not BUILDSPECS.is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail(f"the buildspec corpus is missing under CI: {BUILDSPECS}")
        pytest.skip(f"the buildspec corpus is absent ({BUILDSPECS}; set CONVEYOR_CORPUS)")
    return [p.read_text(encoding="utf-8") for p in sorted(BUILDSPECS.iterdir()) if p.is_file()]


def mutate(text: str, rnd: random.Random) -> str:
    """One to three random edits of the kinds that broke the parsers before."""
    for _ in range(rnd.randint(1, 3)):
        lines = text.splitlines(keepends=True) or ["\n"]
        i = rnd.randrange(len(lines))
        pos = rnd.randrange(len(text) + 1)
        op = rnd.randrange(14)
        if op == 0:
            text = text[:pos] + chr(rnd.choice([0, 1, 7, 8, 11, 12, 27, 127])) + text[pos:]
        elif op == 1:
            text = text[:pos] + rnd.choice(":{}[]&*!|>'\"#%@`,-?\\") + text[pos:]
        elif op == 2:
            text = text[:pos]
        elif op == 3:
            del lines[i]
            text = "".join(lines)
        elif op == 4:
            lines.insert(i, lines[rnd.randrange(len(lines))])
            text = "".join(lines)
        elif op == 5:
            n = rnd.choice([50, 150, 1_500])
            text = text[:pos] + "[" * n + "]" * n + text[pos:]
        elif op == 6:
            text = text[:pos] + str(rnd.randrange(10)) * rnd.choice([10, 5_000]) + text[pos:]
        elif op == 7:
            text = LAUGHS[: rnd.randrange(len(LAUGHS))] + text
        elif op == 8:
            lines[i] = " " * rnd.randrange(12) + lines[i].lstrip()
            text = "".join(lines)
        elif op == 9:
            text = text[:pos] + "*anchor " + text[pos:]
        elif op == 10:
            text = (
                text[:pos]
                + rnd.choice(["\t", "\r", "\ufeff", "\u2028", "é", "\U0001f600"])
                + text[pos:]
            )
        elif op == 11:
            text = text.replace(":", rnd.choice(["", "::", ": |", ": !!binary"]), 1)
        elif op == 12:
            depth = rnd.choice([20, 120, 1_200])
            text += "".join("  " * d + "k:\n" for d in range(depth))
        else:
            j = rnd.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
            text = "".join(lines)
    return text


def _run(load: Callable[[str], object], text: str) -> tuple[BaseException | None, float]:
    started = time.perf_counter()
    try:
        load(text)
    except ConveyorError:
        pass
    except Exception as e:  # noqa: BLE001 - the point: nothing else may escape
        return e, time.perf_counter() - started
    return None, time.perf_counter() - started


Loader = tuple[str, Callable[[str], object], str]


def _fuzz(loaders: list[Loader]) -> None:
    only = os.environ.get("CONVEYOR_FUZZ_SEED")
    seeds = [int(only)] if only else range(MUTATIONS)
    failures: list[str] = []
    for seed in seeds:
        rnd = random.Random(seed)
        name, load, source = loaders[seed % len(loaders)]
        text = mutate(source, rnd)
        error, took = _run(load, text)
        if error is not None:
            failures.append(f"seed {seed} ({name}): {type(error).__name__}: {error}"[:300])
        elif took > BUDGET:
            failures.append(f"seed {seed} ({name}): took {took:.1f} s (budget {BUDGET:.0f} s)")
    assert not failures, "\n".join(failures)


def test_mutated_pipelines_give_located_errors_only() -> None:
    """Seeded mutations of the example pipeline (YAML) and of its CodePipeline JSON raise only
    Conveyor's errors, each within the per-input budget."""
    catalogue = _catalogue()
    exported = json.dumps(export_pipeline(load_pipeline(EXAMPLE))[0], indent=2)
    _fuzz(
        [
            ("pipeline", lambda t: load_pipeline("p.yaml", catalogue, text=t), EXAMPLE.read_text()),  # type: ignore[arg-type]
            ("codepipeline", lambda t: load_codepipeline("p.json", text=t), exported),
        ]
    )


def test_mutated_corpus_buildspecs_give_located_errors_only() -> None:
    """Seeded mutations of the corpus buildspecs raise only Conveyor's errors, within budget."""
    _fuzz(
        [
            (f"buildspec{k}", lambda t: parse_buildspec(t, "b.yml"), text)
            for k, text in enumerate(_buildspec_seeds())
        ]
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (LAUGHS + "name: p\nstages: []\n", "aliases expand to more than 100,000 nodes"),
        ("name: p\x07\nstages: []\n", "p.yaml:1: control character U+0007 at column 8"),
        ("name: p\nstages: " + "[" * 1_000 + "]" * 1_000 + "\n", "p.yaml:2: nesting deeper than"),
        (
            "name: p\nx:\n" + "".join("  " * (d + 1) + "k:\n" for d in range(1_000)),
            "nesting deeper",
        ),
        ("name: p\nx: " + "9" * 5_000 + "\nstages: []\n", "p.yaml:2: a number with more than"),
        (
            "name: p\nstages: []\nx:\n" + "".join(f"  k{i}: {i}\n" for i in range(200_000)),
            "more than 50,000 values",
        ),
    ],
    ids=["billion-laughs", "control-char", "flow-depth", "block-depth", "long-int", "200k-keys"],
)
def test_hostile_pipeline_file_is_refused_with_one_located_line(text: str, message: str) -> None:
    """Each probe's hostile pipeline file is refused with a located message, not a traceback."""
    from conveyor.errors import ValidationFailed

    with pytest.raises(ValidationFailed) as err:
        load_pipeline("p.yaml", _catalogue(), text=text)  # type: ignore[arg-type]
    assert len(err.value.problems) == 1
    assert message in str(err.value.problems[0])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"a":' * 2_000 + "1" + "}" * 2_000, "p.json:1: nesting deeper than 100 levels"),
        ('{"pipeline": ' + "9" * 5_000 + "}", "p.json:1: a number with more than"),
        ('{"pipeline": {"name": "p\\u0007"}, "x": "\x07"}', "p.json:1: control character"),
    ],
    ids=["depth", "long-int", "control-char"],
)
def test_hostile_codepipeline_json_is_refused(text: str, message: str) -> None:
    """CodePipeline JSON that is too deep, has a huge number or a control character is refused."""
    from conveyor.errors import ValidationFailed

    with pytest.raises(ValidationFailed) as err:
        load_codepipeline("p.json", text=text)
    assert message in str(err.value)


def test_hostile_files_through_the_cli_exit_2_with_one_line(tmp_path: Path) -> None:
    """`conveyor validate` and `buildspec validate` exit 2 on hostile files, with no traceback."""
    cases = {
        "laughs.yaml": LAUGHS + "name: p\nstages: []\n",
        "ctl.yaml": "name: p\x07\nstages: []\n",
        "deep.yaml": "name: p\nstages: " + "[" * 1_200 + "]" * 1_200 + "\n",
    }
    for name, text in cases.items():
        f = tmp_path / name
        f.write_text(text)
        for args in (["validate", str(f)], ["buildspec", "validate", str(f)]):
            res = subprocess.run(
                [sys.executable, "-m", "conveyor", *args],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
                env={**os.environ, "CONVEYOR_HOME": str(tmp_path / "home")},
            )
            assert res.returncode == 2, (args, res.stderr)
            assert "Traceback" not in res.stderr
            assert res.stderr.splitlines()[0].startswith(f"{f}:"), res.stderr
