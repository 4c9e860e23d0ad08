"""The buildspec parser: every corpus file, and each kind of bad input with its message."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor.buildspec.spec import (
    OnFailure,
    batch_order,
    find_buildspec,
    load_buildspec,
    parse_buildspec,
)
from conveyor.errors import ConfigError, ValidationFailed
from tests.conftest import CORPUS, corpus_cases

BUILDSPECS = CORPUS / "buildspecs"

# file -> a fragment the (first) problem must contain; absent: the file must validate
BROKEN = {
    "aws__aws-toolkit-jetbrains__buildspec_windowsTests.yml": "needs a Windows build environment",
    "awsdocs__aws-codebuild-user-guide__doc_source_build-spec-ref.md__example-single-string.yml": (
        "invalid YAML at line 2"
    ),
}


def corpus_files() -> list[Path]:
    if not BUILDSPECS.is_dir():
        return []
    return sorted(BUILDSPECS.iterdir())


def problems(text: str) -> list[str]:
    with pytest.raises(ValidationFailed) as info:
        parse_buildspec(text, "bs.yml")
    return [str(p) for p in info.value.problems]


@pytest.mark.corpus
def test_corpus_is_present() -> None:
    """The shared corpus is found beside the repository (or via CONVEYOR_CORPUS)."""
    assert len(corpus_files()) >= 14, f"corpus not found at {BUILDSPECS}"


@pytest.mark.corpus
@pytest.mark.parametrize("path", corpus_cases(corpus_files()), ids=lambda p: p.name)
def test_corpus_file(path: Path) -> None:
    """Each corpus buildspec validates, or is rejected naming its real problem."""
    expected = BROKEN.get(path.name)
    if expected is None:
        spec = load_buildspec(path)
        assert spec.version == "0.2"
        assert spec.phases or spec.batch is not None
        return
    with pytest.raises(ValidationFailed) as info:
        load_buildspec(path)
    first = info.value.problems[0]
    assert expected in first.message
    assert first.line is not None
    assert str(first).startswith(f"{path}:{first.line}: ")


@pytest.mark.corpus
def test_windows_buildspec_points_at_powershell() -> None:
    """The PowerShell buildspec is rejected at the first PowerShell line, naming the syntax."""
    path = BUILDSPECS / "aws__aws-toolkit-jetbrains__buildspec_windowsTests.yml"
    with pytest.raises(ValidationFailed) as info:
        load_buildspec(path)
    (p,) = info.value.problems
    assert p.line == 12
    assert "$Env:CODE_COV_TOKEN" in p.message and "Linux" in p.message


@pytest.mark.corpus
def test_single_string_docs_bug_is_explained() -> None:
    """The AWS docs' single-string example fails at line 2 with the escaping explained."""
    path = (
        BUILDSPECS / "awsdocs__aws-codebuild-user-guide__doc_source_build-spec-ref.md__"
        "example-single-string.yml"
    )
    with pytest.raises(ValidationFailed) as info:
        load_buildspec(path)
    msg = info.value.problems[0].message
    assert "column 91" in msg and "closing quote" in msg


@pytest.mark.corpus
def test_corpus_details_are_read() -> None:
    """Values the runner relies on are read from the corpus as written."""
    s2n = load_buildspec(BUILDSPECS / "aws__s2n-tls__codebuild_spec_buildspec_generalbatch.yml")
    assert s2n.batch is not None and s2n.batch.kind == "build-list"
    by_id = {b.identifier: b for b in s2n.batch.builds}
    assert by_id["s2nUnitOpenssl3Gcc9"].variables["GCC_VERSION"] == "9"
    assert by_id["s2nUnitOpenssl3Gcc9"].variables["BUILD_S2N"] == "true"
    assert by_id["s2nUnitOpenssl102FipsGcc48"].variables["GCC_VERSION"] == "4.8"
    nix = load_buildspec(BUILDSPECS / "aws__s2n-tls__codebuild_spec_buildspec_unit_nix.yml")
    assert nix.env.shell == "bash" and nix.batch is not None and nix.batch.kind == "build-graph"
    cov = load_buildspec(BUILDSPECS / "aws__s2n-tls__codebuild_spec_buildspec_unit_coverage.yml")
    build = cov.phase("build")
    assert build is not None and build.on_failure == OnFailure("ABORT")
    docs = load_buildspec(
        BUILDSPECS / "awsdocs__aws-codebuild-user-guide__doc_source_build-spec-ref.md__example.yml"
    )
    groups = {r.group: r for r in docs.reports}
    assert groups["reportGroupCucumberJson"].file_format == "CUCUMBERJSON"
    assert (
        "arn:aws:codebuild:your-region:your-aws-account-id:report-group/report-group-name-1"
        in groups
    )
    assert docs.artifacts is not None and docs.artifacts.primary.discard_paths
    assert [a.identifier for a in docs.artifacts.secondary] == ["artifact1", "artifact2"]
    vscode = load_buildspec(BUILDSPECS / "aws__aws-toolkit-vscode__buildspec_linuxE2ETests.yml")
    install = vscode.phase("install")
    assert vscode.run_as == "codebuild-user" and install is not None and install.run_as == "root"
    assert install.runtime_versions == {"nodejs": "16"}


def test_misspelled_file_name_has_did_you_mean(tmp_path: Path) -> None:
    """Looking for buildspec.yml next to a builspec.yml suggests the misspelled file."""
    (tmp_path / "builspec.yml").write_text("version: 0.2\n")
    with pytest.raises(ConfigError) as info:
        find_buildspec(tmp_path)
    assert "did you mean 'builspec.yml'" in str(info.value)


def test_missing_file_is_a_problem(tmp_path: Path) -> None:
    """A buildspec path that does not exist is one located problem."""
    with pytest.raises(ValidationFailed) as info:
        load_buildspec(tmp_path / "nope.yml")
    assert "buildspec file not found" in str(info.value)


def test_invalid_yaml_has_line_and_column() -> None:
    """Invalid YAML reports the line and the column."""
    (msg,) = problems(
        "version: 0.2\nphases:\n  build:\n    commands:\n      - echo a\n     - echo b\n"
    )
    assert msg.startswith("bs.yml:6: invalid YAML at line 6, column 6:")


def test_misspelled_phase_and_keys_suggest() -> None:
    """Misspelled phase names and keys get a did-you-mean, all reported at once."""
    msgs = problems(
        "version: 0.2\n"
        "phases:\n"
        "  pre-build:\n"
        "    commands: [echo a]\n"
        "  build:\n"
        "    comands:\n"
        "      - echo b\n"
        "artifact:\n"
        "  files: ['*']\n"
    )
    joined = "\n".join(msgs)
    assert "bs.yml:3: unknown phase 'pre-build' (did you mean 'pre_build'?)" in joined
    assert "bs.yml:6: unknown key 'comands' in phases.build (did you mean 'commands'?)" in joined
    assert "bs.yml:8: unknown key 'artifact' in the buildspec (did you mean 'artifacts'?)" in joined
    assert "missing required key 'commands'" in joined


def test_command_with_colon_space_is_explained() -> None:
    """An unquoted command containing ': ' (a YAML mapping) is told to be quoted."""
    (msg,) = problems("version: 0.2\nphases:\n  build:\n    commands:\n      - echo key: value\n")
    assert msg.startswith("bs.yml:5:") and "put the whole command in quotes" in msg


def test_value_problems_are_collected() -> None:
    """Bad version, on-failure, report format, shell and reserved names: every one reported."""
    msgs = problems(
        "version: 0.3\n"
        "env:\n"
        "  shell: zsh\n"
        "  variables:\n"
        "    CODEBUILD_X: 1\n"
        "  exported-variables: [AWS_SECRET]\n"
        "phases:\n"
        "  build:\n"
        "    on-failure: RETRY-101\n"
        "    commands: [make]\n"
        "reports:\n"
        "  unit:\n"
        "    files: ['*.xml']\n"
        "    file-format: JUNIT\n"
    )
    joined = "\n".join(msgs)
    assert "bs.yml:1: unsupported buildspec version '0.3'" in joined
    assert "bs.yml:3: env.shell 'zsh'" in joined
    assert "bs.yml:5: env.variables.CODEBUILD_X" in joined
    assert "AWS_SECRET cannot be exported" in joined
    assert "bs.yml:9:" in joined and "between 0 and 100" in joined
    assert "(did you mean 'JUNITXML'?)" in joined


def test_on_failure_forms() -> None:
    """on-failure accepts ABORT, CONTINUE, RETRY, RETRY-count, RETRY-regex, RETRY-count-regex."""

    def of(value: str) -> OnFailure | None:
        spec = parse_buildspec(
            f"version: 0.2\nphases:\n  build:\n    on-failure: {value}\n    commands: [x]\n"
        )
        phase = spec.phase("build")
        assert phase is not None
        return phase.on_failure

    assert of("ABORT") == OnFailure("ABORT")
    assert of("CONTINUE") == OnFailure("CONTINUE")
    assert of("RETRY") == OnFailure("RETRY", 3, None)
    assert of("RETRY-2") == OnFailure("RETRY", 2, None)
    assert of("RETRY-timeout.*") == OnFailure("RETRY", 3, "timeout.*")
    assert of("RETRY-5-flaky") == OnFailure("RETRY", 5, "flaky")


def test_powershell_shell_is_windows() -> None:
    """env.shell powershell.exe is rejected as needing a Windows build environment."""
    (msg,) = problems(
        "version: 0.2\nenv:\n  shell: powershell.exe\nphases:\n  build:\n    commands: [dir]\n"
    )
    assert "needs a Windows build environment" in msg and msg.startswith("bs.yml:3:")


def test_build_matrix_is_rejected_precisely() -> None:
    """batch.build-matrix is rejected, saying to use build-list instead."""
    (msg,) = problems(
        "version: 0.2\nbatch:\n  build-matrix:\n    dynamic:\n      env:\n        variables:\n"
        "          V: [a, b]\nphases:\n  build:\n    commands: [echo]\n"
    )
    assert (
        msg.startswith("bs.yml:3:")
        and "build-matrix is not supported" in msg
        and "build-list" in msg
    )


def test_build_graph_order_and_unknown_dependency() -> None:
    """build-graph runs dependencies first; an unknown depend-on is reported with did-you-mean."""
    spec = parse_buildspec(
        "version: 0.2\nbatch:\n  build-graph:\n    - identifier: c\n      depend-on: [b]\n"
        "    - identifier: b\n      depend-on: [a]\n    - identifier: a\n"
        "phases:\n  build:\n    commands: [echo]\n"
    )
    assert spec.batch is not None
    assert [b.identifier for b in batch_order(spec.batch)] == ["a", "b", "c"]
    (msg,) = problems(
        "version: 0.2\nbatch:\n  build-graph:\n    - identifier: linux_small\n"
        "    - identifier: big\n      depend-on: [linux_smal]\n"
        "phases:\n  build:\n    commands: [echo]\n"
    )
    assert "unknown build 'linux_smal' (did you mean 'linux_small'?)" in msg


def test_inline_single_string_form() -> None:
    """A buildspec given as one YAML string (the AWS CLI form) is read from its contents."""
    spec = parse_buildspec(
        '"version: 0.2\\nphases:\\n  build:\\n    commands:\\n      - echo hi\\n"'
    )
    build = spec.phase("build")
    assert build is not None and build.commands[0].text == "echo hi"


def test_version_01_and_missing_phases() -> None:
    """Version 0.1 parses; a buildspec without phases (and no batch) is a problem."""
    assert parse_buildspec("version: 0.1\nphases:\n  build:\n    commands: [ls]\n").version == "0.1"
    (msg,) = problems("version: 0.2\nenv:\n  variables: {A: b}\n")
    assert "missing required key 'phases'" in msg


def test_version_0_1_warns_with_its_line_that_cd_and_export_do_not_carry_over() -> None:
    """D3: a `version: 0.1` buildspec is valid but warned about, on the version line."""
    spec = parse_buildspec(
        "# old\nversion: 0.1\nphases:\n  build:\n    commands: [cd app]\n", "b.yml"
    )
    (w,) = spec.warnings
    assert w.line == 2 and "each command in its own shell" in w.message
    assert "`cd` and `export`" in w.message


def test_bash_only_syntax_in_a_sh_buildspec_is_warned_with_the_line() -> None:
    """D2: `source`, `[[ ]]` and arrays under sh are each warned about on their line."""
    text = """version: 0.2
phases:
  build:
    commands:
      - source ./env.sh
      - if [[ -n "$X" ]]; then echo x; fi
      - ARR=(a b)
      - . ./env.sh
      - FOO=$(date) && test "$FOO" != ""
"""
    spec = parse_buildspec(text, "b.yml")
    found = {w.line: w.message for w in spec.warnings}
    assert set(found) == {5, 6, 7}
    assert "`source` is bash-only" in found[5] and "env.shell: bash" in found[5]
    assert "`[[ ]]`" in found[6] and "arrays" in found[7]
    bash = parse_buildspec(text.replace("version: 0.2\n", "version: 0.2\nenv: {shell: bash}\n"))
    assert bash.warnings == ()


def test_a_cloudformation_intrinsic_is_named_as_written_never_as_a_parser_object() -> None:
    """A `!Ref` in a buildspec is reported as `!Ref X` on its line, not TaggedScalar(...)."""
    text = "version: 0.2\nenv:\n  variables:\n    B: !Ref Bucket\nphases:\n  build:\n    commands:\n      - !Sub echo ${B}\nartifacts:\n  files: !Ref Files\n"
    with pytest.raises(ValidationFailed) as e:
        parse_buildspec(text, "b.yml")
    msgs = {p.line: p.message for p in e.value.problems}
    assert "TaggedScalar" not in str(e.value)
    assert "`!Ref Bucket` is a CloudFormation intrinsic" in msgs[4]
    assert "`!Sub echo ${B}`" in msgs[8]
    assert "got a CloudFormation intrinsic (`!Ref Files`)" in msgs[10]
