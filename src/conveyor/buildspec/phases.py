"""The phases of a build, following CodeBuild's "build phase transitions".

A failure in install or pre_build skips the later phases (no post_build, no artifact
upload); a failure in build still runs post_build and the artifact upload; a failure in
post_build still uploads artifacts. `finally` commands run after `commands` even when one
fails. `on-failure: CONTINUE` runs the next phase as if nothing failed (the build still
fails); `ABORT` stops the build at once (no post_build, no upload); `RETRY[-count][-regex]`
reruns the phase (3 times by default; with a regex, only when the phase's output matches).
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import time

from conveyor.adapters import process
from conveyor.buildspec.artifacts import upload_artifacts
from conveyor.buildspec.context import BuildContext
from conveyor.buildspec.diagnosis import first_error, missing_command, short
from conveyor.buildspec.reports import collect_reports
from conveyor.buildspec.result import BuildStopped, PhaseResult
from conveyor.buildspec.runtimes import check_runtimes
from conveyor.buildspec.spec import PHASE_NAMES, Command, Phase
from conveyor.errors import ConfigError, missing_tool


def run_phases(ctx: BuildContext) -> None:
    spec, session, result = ctx.spec, ctx.session, ctx.result
    ctx_artifacts = spec.artifacts

    def note(text: str) -> None:
        ctx.log(f"[Container] {text}\n")

    skip_rest = False
    aborted = False
    upload = True
    for name in PHASE_NAMES:
        phase = spec.phase(name)
        if phase is None:
            continue
        if skip_rest:
            result.phases.append(
                PhaseResult(name.upper(), "SKIPPED", message="skipped: an earlier phase failed")
            )
            continue
        started = time.monotonic()
        try:
            pr = _run_phase(ctx, phase)
        except BuildStopped as e:
            status = "TIMED_OUT" if str(e) == "timed out" else "STOPPED"
            result.phases.append(
                PhaseResult(name.upper(), status, time.monotonic() - started, f"build {e}")
            )
            raise
        result.phases.append(pr)
        if pr.status == "SUCCEEDED":
            continue
        session.set_env("CODEBUILD_BUILD_SUCCEEDING", "0")
        if not result.message:
            result.message = pr.message
        policy = phase.on_failure.mode if phase.on_failure else None
        if policy == "CONTINUE":
            note(f"Phase {name.upper()} failed; on-failure: CONTINUE, going on to the next phase")
            continue
        if policy == "ABORT":
            note(f"Phase {name.upper()} failed; on-failure: ABORT, stopping the build")
            skip_rest, aborted, upload = True, True, False
            continue
        if name in ("install", "pre_build"):
            skip_rest, upload = True, False
        # build -> post_build still runs; post_build -> upload still happens
    # exported variables: their values at the end of the last phase
    for var in spec.env.exported_variables:
        try:
            v = session.value(var)
        except BuildStopped:
            raise
        if v is None:
            result.warnings.append(f"exported variable {var} is not set at the end of the build")
            note(f"WARNING: exported variable {var} is not set at the end of the build")
        elif ctx.masker.contains(v):
            # an output variable is shown to every viewer: a secret never becomes one
            msg = (
                f"exported variable {var} holds a secret value (or one of its encodings): "
                "not exported; pass the secret itself to the actions that need it"
            )
            result.warnings.append(msg)
            note(f"WARNING: {msg}")
        else:
            result.exported[var] = v
    if ctx_artifacts is not None:
        if upload and not aborted:
            upload_artifacts(ctx)
        else:
            result.phases.append(
                PhaseResult(
                    "UPLOAD_ARTIFACTS",
                    "SKIPPED",
                    message="skipped: the build failed before the build phase ended",
                )
            )
    collect_reports(ctx)


def _run_phase(ctx: BuildContext, phase: Phase) -> PhaseResult:
    session = ctx.session
    name = phase.name.upper()
    user = phase.run_as or ctx.spec.run_as
    start = time.monotonic()
    attempts = 0
    ctx.log(f"[Container] Entering phase {name}\n")
    while True:
        attempts += 1
        try:
            if user is not None:
                _prepare_user(ctx, user)
            session.switch_user(None if user is None or user == _whoami() else user)
        except ConfigError as e:
            return PhaseResult(name, "FAILED", time.monotonic() - start, str(e), attempts)
        ok, message, output = _run_block(ctx, phase)
        if ok:
            dur = time.monotonic() - start
            ctx.log(f"[Container] Phase complete: {name} State: SUCCEEDED ({dur:.2f}s)\n")
            return PhaseResult(name, "SUCCEEDED", dur, "", attempts)
        of = phase.on_failure
        if of is not None and of.mode == "RETRY" and attempts <= of.retries:
            matched = of.pattern is None or re.search(of.pattern, "".join(output))
            ctx.log(
                f"[Container] Phase {name} failed ({message}); on-failure {of}: "
                + (f"retry {attempts} of {of.retries}\n" if matched else "no match, no retry\n")
            )
            if matched:
                continue
        dur = time.monotonic() - start
        ctx.log(f"[Container] Phase complete: {name} State: FAILED ({dur:.2f}s): {message}\n")
        return PhaseResult(name, "FAILED", dur, f"phase {name}: {message}", attempts)


def _whoami() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


def _prepare_user(ctx: BuildContext, user: str) -> None:
    if ctx.is_container:
        raise ConfigError(
            f"run-as: {user}: running as another user is not supported inside a container "
            "image yet; drop run-as or run on the host"
        )
    if user == "root" and os.geteuid() == 0:
        return
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise ConfigError(
            f"run-as: user {user!r} does not exist on this machine; create it "
            f"(useradd {user}) or remove run-as"
        ) from None
    if os.geteuid() != 0:
        if entry.pw_uid == os.geteuid():
            return
        raise ConfigError(f"run-as: {user}: running as another user needs root (runuser)")
    if shutil.which("runuser") is None:
        raise missing_tool("runuser", "util-linux")
    # CodeBuild grants the run-as user access to the sources: give it this build's copies
    for d in {ctx.workdir, ctx.src}:
        process.call(["chown", "-R", f"{entry.pw_uid}:{entry.pw_gid}", str(d)])


def _run_block(ctx: BuildContext, phase: Phase) -> tuple[bool, str, list[str]]:
    session = ctx.session
    output: list[str] = []
    failure = ""
    if phase.name == "install" and phase.runtime_versions:
        failure = check_runtimes(ctx, phase)
    blocks: list[tuple[str, tuple[Command, ...]]] = [
        ("commands", phase.commands),
        ("finally", phase.finally_),
    ]
    for block, commands in blocks:
        if block == "commands" and failure:
            continue
        for cmd in commands:
            unset = _unset_source_dir(ctx, cmd.text)
            if unset:
                ctx.log(f"[Container] {unset}\n")
                failure = failure or unset
                break
            ctx.log(f"[Container] Running command {cmd.text}\n")
            o = session.run(cmd.text)
            output.extend(o.output[-400:])
            if ctx.spec.version == "0.1":
                session.close("forget")
            elif o.shell_ended and o.rc == 0:
                ctx.log(
                    "[Container] (the command ended the shell; the next command runs in a new "
                    "shell with the same exported variables and directory)\n"
                )
            if o.rc != 0:
                msg = f"command {short(cmd.text)!r} exited with status {o.rc}"
                cause = first_error(o.output)
                if cause:
                    msg += f": {cause}"
                missing = missing_command(o.output)
                if o.rc == 127 and missing == "source" and ctx.spec.env.shell == "sh":
                    msg = (
                        f"`source` is not a command of sh, this buildspec's shell (in "
                        f"{short(cmd.text)!r}): write `. FILE` instead, or set `env.shell: bash`"
                    )
                elif o.rc == 127 and missing:
                    msg = (
                        f"command not found: {missing!r} (in {short(cmd.text)!r}); "
                        "install it in the "
                        "install phase or run the build in an image that has it"
                    )
                ctx.log(
                    f"[Container] Command did not exit successfully {cmd.text} exit status {o.rc}\n"
                )
                if o.rc == 127 and missing:
                    ctx.log(f"[Container] {msg}\n")
                if not failure:
                    failure = msg
                break
    return (not failure), failure, output


_SRC_DIR_REF = re.compile(r"\$\{?(CODEBUILD_SRC_DIR_\w+)")


def _unset_source_dir(ctx: BuildContext, text: str) -> str:
    """A command's `$CODEBUILD_SRC_DIR_x` that no source sets (`cd` would go to $HOME)."""
    for name in dict.fromkeys(_SRC_DIR_REF.findall(text)):
        if name in ctx.session.env or ctx.session.value(name) is not None:
            continue
        known = sorted(
            k.removeprefix("CODEBUILD_SRC_DIR_")
            for k in ctx.session.env
            if k.startswith("CODEBUILD_SRC_DIR_")
        )
        return (
            f"${name} is not set (in {short(text)!r}): no secondary source is named "
            f"'{name.removeprefix('CODEBUILD_SRC_DIR_')}' (secondary sources: "
            f"{', '.join(known) or 'none'}); name it with `--source "
            f"{name.removeprefix('CODEBUILD_SRC_DIR_')}=DIR` or the action's input artifact"
        )
    return ""
