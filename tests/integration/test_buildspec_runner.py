"""The buildspec runner with a real shell: CodeBuild's semantics as a user sees them."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from conveyor.buildspec.result import BuildResult
from conveyor.buildspec.run import run_buildspec
from conveyor.buildspec.spec import parse_buildspec
from conveyor.errors import ConfigError

pytestmark = pytest.mark.integration

JUNIT = """<?xml version="1.0"?>
<testsuites>
  <testsuite name="calc" tests="3">
    <testcase classname="calc" name="adds" time="0.1"/>
    <testcase classname="calc" name="divides" time="0.2">
      <failure message="ZeroDivisionError: division by zero">trace</failure>
    </testcase>
    <testcase classname="calc" name="later"><skipped/></testcase>
  </testsuite>
</testsuites>
"""

CUCUMBER = [
    {
        "name": "Login",
        "uri": "login.feature",
        "elements": [
            {
                "name": "good password",
                "type": "scenario",
                "steps": [
                    {"name": "I log in", "result": {"status": "passed", "duration": 1000000}}
                ],
            },
            {
                "name": "bad password",
                "type": "scenario",
                "steps": [
                    {
                        "name": "I log in",
                        "result": {"status": "failed", "error_message": "expected 401"},
                    }
                ],
            },
        ],
    },
]


def build(
    tmp_path: Path, text: str, *, files: dict[str, str] | None = None, **kw: object
) -> tuple[BuildResult, str]:
    src = tmp_path / "src"
    src.mkdir(parents=True, exist_ok=True)
    for name, content in (files or {}).items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_text(content)
    lines: list[str] = []
    spec = parse_buildspec(text, "buildspec.yml")
    workdir = kw.pop("workdir", tmp_path / "work")
    result = run_buildspec(spec, {"src": src}, kw.pop("env", None), workdir, lines.append, **kw)  # type: ignore[arg-type]
    return result, "".join(lines)


def statuses(result: BuildResult) -> dict[str, str]:
    return {p.name: p.status for p in result.phases}


def test_cd_and_export_carry_over(tmp_path: Path) -> None:
    """In version 0.2, cd and export in one command/phase are seen by the next ones."""
    result, log = build(
        tmp_path,
        """
version: 0.2
phases:
  install:
    commands:
      - mkdir -p deep/dir && cd deep/dir
      - export STAGE=one
      - LOCAL=plain
  build:
    commands:
      - echo "where=$(basename $PWD) stage=$STAGE local=$LOCAL"
""",
    )
    assert result.succeeded, log
    assert "where=dir stage=one local=plain" in log


def test_exit_in_a_command_keeps_state(tmp_path: Path) -> None:
    """A command that exits the shell fails the phase; exported state survives for later phases."""
    result, log = build(
        tmp_path,
        """
version: 0.2
phases:
  build:
    commands:
      - export KEPT=yes && cd /tmp
      - exit 3
  post_build:
    commands:
      - echo "kept=$KEPT pwd=$PWD succeeding=$CODEBUILD_BUILD_SUCCEEDING"
""",
    )
    assert not result.succeeded
    assert statuses(result) == {"BUILD": "FAILED", "POST_BUILD": "SUCCEEDED"}
    assert "exited with status 3" in result.message
    assert "kept=yes pwd=/tmp succeeding=0" in log


def test_install_failure_skips_later_phases_but_runs_finally(tmp_path: Path) -> None:
    """A failing install runs its finally block and skips pre_build, build and post_build."""
    result, log = build(
        tmp_path,
        """
version: 0.2
phases:
  install:
    commands:
      - "false"
      - echo never
    finally:
      - echo cleanup-ran
  build:
    commands: [echo build-ran]
  post_build:
    commands: [echo post-ran]
artifacts:
  files: ['*']
""",
    )
    assert statuses(result) == {
        "INSTALL": "FAILED",
        "BUILD": "SKIPPED",
        "POST_BUILD": "SKIPPED",
        "UPLOAD_ARTIFACTS": "SKIPPED",
    }
    assert "cleanup-ran" in log and "never" not in log.replace("Running command echo never", "")
    assert "build-ran" not in log.replace("Running command", "") and "post-ran" not in log


def test_post_build_runs_after_build_failure(tmp_path: Path) -> None:
    """A failing build phase still runs post_build (which sees CODEBUILD_BUILD_SUCCEEDING=0)."""
    result, log = build(
        tmp_path,
        """
version: 0.2
phases:
  build:
    commands:
      - echo start
      - exit 1
  post_build:
    commands:
      - echo "post succeeding=$CODEBUILD_BUILD_SUCCEEDING"
""",
    )
    assert statuses(result)["POST_BUILD"] == "SUCCEEDED"
    assert "post succeeding=0" in log
    assert not result.succeeded


def test_on_failure_abort_and_continue(tmp_path: Path) -> None:
    """ABORT stops the build (no post_build); CONTINUE runs the next phase and still fails."""
    aborted, _ = build(
        tmp_path / "a",
        """
version: 0.2
phases:
  build:
    on-failure: ABORT
    commands: ["false"]
  post_build:
    commands: [echo post]
""",
    )
    assert statuses(aborted) == {"BUILD": "FAILED", "POST_BUILD": "SKIPPED"}
    cont, log = build(
        tmp_path / "c",
        """
version: 0.2
phases:
  install:
    on-failure: CONTINUE
    commands: ["false"]
  build:
    commands: [echo build-ran]
""",
    )
    assert statuses(cont) == {"INSTALL": "FAILED", "BUILD": "SUCCEEDED"}
    assert "build-ran" in log and not cont.succeeded


def test_retry_reruns_the_phase(tmp_path: Path) -> None:
    """RETRY-2 reruns a failing phase; a flaky command that passes on the third try succeeds."""
    result, _ = build(
        tmp_path,
        """
version: 0.2
phases:
  build:
    on-failure: RETRY-2
    commands:
      - echo x >> tries
      - test $(wc -l < tries) -ge 3
""",
    )
    assert result.succeeded
    assert result.phases[0].attempts == 3


def test_exported_variables(tmp_path: Path) -> None:
    """env.exported-variables are read at the end of the build, with their last values."""
    result, _ = build(
        tmp_path,
        """
version: 0.2
env:
  variables: {VERSION: "1.0"}
  exported-variables: [VERSION, IMAGE_TAG, NEVER_SET]
phases:
  build:
    commands:
      - export IMAGE_TAG="v$VERSION-$CODEBUILD_BUILD_NUMBER"
""",
        build_number=7,
    )
    assert result.exported == {"VERSION": "1.0", "IMAGE_TAG": "v1.0-7"}
    assert any("NEVER_SET" in w for w in result.warnings)


def test_codebuild_variables(tmp_path: Path) -> None:
    """CODEBUILD_* variables are set as CodeBuild documents them."""
    second = tmp_path / "other"
    second.mkdir()
    (second / "marker").write_text("m")
    src = tmp_path / "src"
    src.mkdir()
    spec = parse_buildspec("""
version: 0.2
phases:
  build:
    commands:
      - test "$PWD" = "$CODEBUILD_SRC_DIR"
      - cat "$CODEBUILD_SRC_DIR_source2/marker"
      - echo "id=$CODEBUILD_BUILD_ID rev=$CODEBUILD_RESOLVED_SOURCE_VERSION by=$CODEBUILD_INITIATOR"
      - test "$CODEBUILD_START_TIME" -gt 1600000000000
""")
    lines: list[str] = []
    result = run_buildspec(
        spec,
        {"app": src, "source2": second},
        None,
        tmp_path / "w",
        lines.append,
        project="proj",
        resolved_source_version="abc123",
        initiator="codepipeline/p",
    )
    log = "".join(lines)
    assert result.succeeded, log
    assert "id=proj:" in log and "rev=abc123 by=codepipeline/p" in log


def test_artifacts_globs_base_directory_discard_and_exclude(tmp_path: Path) -> None:
    """Artifacts honour ** globs, base-directory, exclude-paths, discard-paths and secondaries."""
    result, _ = build(
        tmp_path,
        """
version: 0.2
phases:
  build:
    commands:
      - mkdir -p dist/js dist/css target
      - echo a > dist/index.html && echo b > dist/js/app.js && echo c > dist/css/app.css
      - echo d > dist/js/app.js.map && echo jar > target/app.jar
artifacts:
  files: ['**/*']
  base-directory: dist
  exclude-paths: ['**/*.map']
  secondary-artifacts:
    jars:
      files: [target/*.jar]
      discard-paths: yes
      name: jars-$CODEBUILD_BUILD_NUMBER
""",
        build_number=4,
    )
    assert result.succeeded, result.message
    arts = {a.identifier: a for a in result.artifacts}
    assert arts["primary"].files == ["css/app.css", "index.html", "js/app.js"]
    assert (arts["primary"].path / "js" / "app.js").read_text() == "b\n"
    assert arts["jars"].files == ["app.jar"] and arts["jars"].name == "jars-4"


def test_artifact_glob_without_match_fails_naming_it(tmp_path: Path) -> None:
    """An artifact location that matches nothing fails the build and names the glob."""
    result, log = build(
        tmp_path,
        """
version: 0.2
phases:
  build:
    commands: [touch present.txt]
artifacts:
  files: [present.txt, 'build/**/*.war']
""",
    )
    assert not result.succeeded
    assert statuses(result)["UPLOAD_ARTIFACTS"] == "FAILED"
    assert "'build/**/*.war'" in result.message and "no matching artifact paths" in result.message
    assert "build/**/*.war" in log


def test_reports_junit_and_cucumber(tmp_path: Path) -> None:
    """JUnit XML and Cucumber JSON reports are parsed into totals and failed cases."""
    result, _ = build(
        tmp_path,
        """
version: 0.2
phases:
  build:
    commands: [echo tests ran]
reports:
  unit:
    files: ['**/*.xml']
    base-directory: reports
  bdd:
    files: [cucumber.json]
    file-format: CucumberJson
""",
        files={"reports/sub/junit.xml": JUNIT, "cucumber.json": json.dumps(CUCUMBER)},
    )
    reps = {r.name: r for r in result.reports}
    unit, bdd = reps["unit"], reps["bdd"]
    assert (unit.total, unit.passed, unit.failed, unit.skipped) == (3, 1, 1, 1)
    assert unit.failures[0]["name"] == "divides"
    assert "division by zero" in unit.failures[0]["message"]
    assert (bdd.total, bdd.passed, bdd.failed) == (2, 1, 1)
    assert bdd.failures[0]["message"] == "expected 401"
    assert (tmp_path / "work" / "reports" / "unit" / "sub" / "junit.xml").is_file()


def test_report_that_is_not_xml(tmp_path: Path) -> None:
    """A report file that is not valid XML is a clear warning naming file, line and column."""
    result, log = build(
        tmp_path,
        """
version: 0.2
phases:
  build:
    commands: [echo ok]
reports:
  unit:
    files: [broken.xml]
""",
        files={"broken.xml": "<testsuite>\n  <testcase name='a'>\n</testsuite>\n"},
    )
    assert result.succeeded
    problem = next(w for w in result.warnings if "broken.xml" in w)
    assert "not valid XML at line 3" in problem
    assert "not valid XML" in log
    assert (tmp_path / "work" / "build.log").read_text().count("not valid XML") >= 1


def test_secrets_are_masked_everywhere(tmp_path: Path) -> None:
    """parameter-store / secrets-manager values come from the secrets file, never the log."""
    secrets = tmp_path / "secrets.env"
    secrets.write_text(
        '# local secrets\n/ci/token=tok-12345\ndb-creds="{\\"password\\": \\"pw-98765\\"}"\n'
    )
    secrets.write_text('# local secrets\n/ci/token=tok-12345\ndb-creds={"password": "pw-98765"}\n')
    result, log = build(
        tmp_path,
        """
version: 0.2
env:
  parameter-store:
    TOKEN: /ci/token
  secrets-manager:
    DB_PASSWORD: db-creds:password
phases:
  build:
    commands:
      - echo "token is $TOKEN and password is $DB_PASSWORD"
      - echo tok-12345 pw-98765
""",
        secrets_file=secrets,
    )
    assert result.succeeded, log
    assert "token is *** and password is ***" in log
    assert "tok-12345" not in log and "pw-98765" not in log
    assert "tok-12345" not in (tmp_path / "work" / "build.log").read_text()


def test_missing_secret_is_a_config_error(tmp_path: Path) -> None:
    """A parameter-store value that is nowhere to be found stops the build before it starts."""
    with pytest.raises(ConfigError) as info:
        build(
            tmp_path,
            "version: 0.2\nenv:\n  parameter-store:\n    X: /no/such\nphases:\n  build:\n"
            "    commands: [echo]\n",
            secrets_file=tmp_path / "none.env",
            secrets={},
            env={},
        )
    assert "/no/such" in str(info.value) and "NAME=VALUE" in str(info.value)


def test_cache_paths_are_restored_for_the_next_build(tmp_path: Path) -> None:
    """cache.paths saved after a successful build are there at the start of the next one."""
    text = """
version: 0.2
phases:
  install:
    commands:
      - |
        if [ -f deps/installed ]; then echo cache-hit
        else mkdir -p deps && echo 1 > deps/installed && echo cache-miss; fi
cache:
  paths: ['deps/**/*']
"""
    cache = tmp_path / "cache"
    first, log1 = build(tmp_path, text, cache_dir=cache, workdir=tmp_path / "w1")
    second, log2 = build(tmp_path, text, cache_dir=cache, workdir=tmp_path / "w2")
    assert first.succeeded and second.succeeded
    assert "cache-miss" in log1.replace("echo cache-miss", "")
    assert "cache-hit" in log2.replace("echo cache-hit", "")


def test_version_01_runs_each_command_alone(tmp_path: Path) -> None:
    """Version 0.1: cd and export do not carry over, and a warning says so."""
    result, log = build(
        tmp_path,
        """
version: 0.1
phases:
  build:
    commands:
      - export GONE=1 && cd /tmp
      - echo "gone=[$GONE] at $(basename $PWD)"
""",
    )
    assert result.succeeded
    assert "gone=[] at src" in log
    assert any("0.1" in w for w in result.warnings)


def test_command_not_found_message(tmp_path: Path) -> None:
    """A missing program fails the phase with a message naming it."""
    result, log = build(
        tmp_path, "version: 0.2\nphases:\n  build:\n    commands:\n      - frobnicate --all\n"
    )
    assert not result.succeeded
    assert "command not found: 'frobnicate'" in result.message
    assert "exit status 127" in log


def test_bash_shell_and_finally_in_every_phase(tmp_path: Path) -> None:
    """env.shell bash runs bash syntax; finally blocks run even when commands succeed."""
    result, log = build(
        tmp_path,
        """
version: 0.2
env:
  shell: bash
phases:
  build:
    commands:
      - V=1.2.3; echo "major=${V%%.*}"; [[ $V == 1.* ]] && echo bash-ok
    finally:
      - echo finally-done
""",
    )
    assert result.succeeded, log
    assert (
        "major=1" in log
        and "bash-ok" in log
        and "finally-done" in log.replace("echo finally-done", "")
    )


def test_runtime_versions_checked_against_installed(tmp_path: Path) -> None:
    """runtime-versions accepts the installed python and rejects a version that is not there."""
    ok, _ = build(
        tmp_path / "ok",
        "version: 0.2\nphases:\n  install:\n    runtime-versions:\n      python: 3.x\n"
        "    commands: [python3 -c 'print(1)']\n",
    )
    assert ok.succeeded
    bad, _ = build(
        tmp_path / "bad",
        "version: 0.2\nphases:\n  install:\n    runtime-versions:\n      python: 2.7\n"
        "  build:\n    commands: [echo]\n",
    )
    assert not bad.succeeded
    assert "python 2.7 requested but this environment has python3 3." in bad.message


def test_run_as_existing_and_missing_user(tmp_path: Path) -> None:
    """run-as runs a phase as that user; an unknown user is a clear failure."""
    ok, log = build(
        tmp_path / "ok",
        "version: 0.2\nphases:\n  build:\n    run-as: nobody\n"
        "    commands: [id -un]\n  post_build:\n    commands: [id -un]\n",
    )
    assert ok.succeeded, log
    assert "nobody\n" in log and "root\n" in log
    bad, _ = build(
        tmp_path / "bad",
        "version: 0.2\nrun-as: no-such-user-x\nphases:\n  build:\n    commands: [id]\n",
    )
    assert not bad.succeeded and "user 'no-such-user-x' does not exist" in bad.message


def test_cancel_stops_a_running_command(tmp_path: Path) -> None:
    """Setting the cancel event kills the running command and the build is stopped."""
    cancel = threading.Event()
    timer = threading.Timer(0.5, cancel.set)
    timer.start()
    result, _ = build(
        tmp_path,
        "version: 0.2\nphases:\n  build:\n    commands: [sleep 30]\n  post_build:\n"
        "    commands: [echo]\n",
        cancel=cancel,
    )
    timer.cancel()
    assert not result.succeeded and result.stopped == "cancelled"
    assert statuses(result)["BUILD"] == "STOPPED"


def test_deadline_times_out(tmp_path: Path) -> None:
    """A deadline in the past of a long command ends the build as timed out."""
    result, _ = build(
        tmp_path,
        "version: 0.2\nphases:\n  build:\n    commands: [sleep 30]\n",
        deadline=time.monotonic() + 0.5,
    )
    assert result.stopped == "timed out" and statuses(result)["BUILD"] == "TIMED_OUT"


def test_batch_build_graph_respects_depend_on(tmp_path: Path) -> None:
    """A build-graph batch runs dependencies first, each with its own variables."""
    result, log = build(
        tmp_path,
        """
version: 0.2
batch:
  build-graph:
    - identifier: second
      depend-on: [first]
      env:
        variables: {WHO: two}
    - identifier: first
      env:
        variables: {WHO: one}
phases:
  build:
    commands:
      - echo "batch=$CODEBUILD_BATCH_BUILD_IDENTIFIER who=$WHO"
""",
    )
    assert result.succeeded, log
    assert log.index("batch=first who=one") < log.index("batch=second who=two")
    assert [i for i, _ in result.batch] == ["first", "second"]


def test_runs_inside_a_container_image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With an image, commands run in that image with podman, the workspace mounted."""
    import shutil
    import subprocess

    busybox = shutil.which("busybox")
    if shutil.which("podman") is None or busybox is None:
        pytest.skip(
            "podman and busybox-static are needed (apt-get install -y podman busybox-static)"
        )
    store = tmp_path / "store"
    (store / "ctx").mkdir(parents=True)
    (store / "storage.conf").write_text(
        f'[storage]\ndriver = "vfs"\nrunroot = "{store}/run"\ngraphroot = "{store}/graph"\n'
    )
    (store / "containers.conf").write_text(
        '[containers]\ndefault_ulimits = ["nofile=1000:1000", "nproc=1000:1000"]\n'
        '[engine]\nruntime = "runc"\n'
    )
    shutil.copy(busybox, store / "ctx" / "busybox")
    (store / "ctx" / "Containerfile").write_text(
        'FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox", "--install", "-s", "/bin"]\n'
    )
    monkeypatch.setenv("CONTAINERS_STORAGE_CONF", str(store / "storage.conf"))
    monkeypatch.setenv("CONTAINERS_CONF", str(store / "containers.conf"))
    subprocess.run(
        ["podman", "build", "-q", "-t", "localhost/conveyor-bb:test", str(store / "ctx")],
        check=True,
        capture_output=True,
    )
    result, log = build(
        tmp_path,
        """
version: 0.2
env:
  exported-variables: [SEEN]
phases:
  build:
    commands:
      - export SEEN=$(ls /bin/busybox) && cd /tmp
      - test ! -e /usr/bin/podman && echo in-container
      - cd $CODEBUILD_SRC_DIR && echo made > made.txt
artifacts:
  files: [made.txt]
""",
        image="localhost/conveyor-bb:test",
    )
    assert result.succeeded, log
    assert "in-container" in log.replace("echo in-container", "")
    assert result.exported == {"SEEN": "/bin/busybox"}
    assert result.artifacts[0].files == ["made.txt"]


def test_missing_image_is_unavailable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An image that is not on this machine is a clear Unavailable error, not a hang."""
    import shutil

    from conveyor.errors import Unavailable

    if shutil.which("podman") is None:
        pytest.skip("podman is needed")
    store = tmp_path / "store"
    store.mkdir()
    (store / "storage.conf").write_text(
        f'[storage]\ndriver = "vfs"\nrunroot = "{store}/run"\ngraphroot = "{store}/graph"\n'
    )
    monkeypatch.setenv("CONTAINERS_STORAGE_CONF", str(store / "storage.conf"))
    with pytest.raises(Unavailable) as info:
        build(
            tmp_path,
            "version: 0.2\nphases:\n  build:\n    commands: [echo]\n",
            image="docker.io/library/nothere:1",
            state_dir=tmp_path / "state",
        )
    assert "not available locally" in str(info.value)
