"""What podman, buildah, skopeo and git said when they failed, and what to do about it.

`error_line(output)` finds the tool's own error line in its output:
- podman / buildah: the last `Error: ...` line;
- skopeo: the `msg` of the last `level=fatal` (or `level=error`) line;
- git: the first `fatal: ...` line (git's later lines are generic), else the last `error: ...`;
- otherwise the last non-empty line.

`advice(line)` classifies a failure by that line only, never by the rest of the output: a
message about podman's pause binary is not "the image has no such command". Each pattern was
taken from the real tools on Debian 12 (podman 4.3.1, skopeo 1.9.3, git 2.39); see
tests/unit/test_tool_errors.py.
"""

from __future__ import annotations

import re

# (pattern on the error line, lower-cased; advice). The first match wins.
_ADVICE: tuple[tuple[str, str], ...] = (
    (
        r"finding pause binary|\"catatonit\"",
        "podman's pause binary (catatonit) is not installed: `apt-get install -y catatonit` "
        "(`conveyor doctor` checks it)",
    ),
    (
        r"cgroups in hybrid mode not supported",
        "the OCI runtime crun cannot run here: use runtime runc (Conveyor's CONTAINERS_CONF "
        "sets it; is CONTAINERS_CONF overridden?)",
    ),
    (
        r"setrlimit",
        "the container's ulimits exceed the host's hard limits: Conveyor's "
        "CONTAINERS_CONF lowers them (nofile=1000, nproc=1000); is CONTAINERS_CONF overridden?",
    ),
    (
        r"server gave http response to https client",
        "the registry speaks plain HTTP: pass --tls-verify=false or list it as insecure in "
        "registries.conf (Conveyor's CONTAINERS_REGISTRIES_CONF does for 127.0.0.1:5001/5002)",
    ),
    (
        r"pinging container registry .*connection refused",
        "the registry is not answering: start the local registries with `conveyor up`",
    ),
    (
        r"manifest unknown|image not known",
        "the image (tag or digest) does not exist there: check that the build pushed it, "
        "or that it was promoted to this environment's registry",
    ),
    (r"name unknown", "the repository does not exist in the registry: check the image name"),
    (
        r"address already in use|port is already allocated",
        "a port the container publishes is already taken by another process (`ss -ltnp`)",
    ),
    (r"no such container", "the container does not exist (it was removed or never started)"),
    (r"no such pod", "the pod does not exist (it was removed or never started)"),
    (
        r"unable to start container process: exec: .*(not found|no such file)",
        "the image has no such command: check the image's CMD / the probe's command",
    ),
    (
        r"executable file not found",
        "a program the tool runs is not installed on this machine: `conveyor doctor` names "
        "its package",
    ),
    (r"no space left on device", "the disk is full: free space (podman system prune)"),
    (
        r"does not appear to be a git repository|repository .* not found",
        "the git repository does not exist at that URL or path: check the source's `repository`",
    ),
    (
        r"could not resolve host|failed to connect to|couldn't connect to server",
        "the git server is not reachable from this machine",
    ),
    (
        r"authentication failed|could not read username",
        "the git server asks for credentials: use a URL this machine can read without a prompt",
    ),
)

_SKOPEO = re.compile(r'level=(fatal|error) msg="((?:[^"\\]|\\.)*)"')


def error_line(output: str) -> str:
    """The line in which the tool said what went wrong ('' for empty output)."""
    lines = [
        line.strip()
        for line in output.splitlines()
        if line.strip() and "failed to connect to syslog" not in line
    ]
    podman = [line for line in lines if line.startswith("Error: ")]
    if podman:
        return podman[-1]
    for level in ("fatal", "error"):
        found = [m for line in lines if (m := _SKOPEO.search(line)) and m.group(1) == level]
        if found:
            return found[-1].group(2).replace('\\"', '"')
    fatal = [line for line in lines if line.startswith("fatal: ")]
    if fatal:
        return fatal[0]
    error = [line for line in lines if line.startswith("error: ")]
    if error:
        return error[-1]
    return lines[-1] if lines else ""


def advice(line: str) -> str | None:
    """What to do about a failure whose error line is `line`, or None if it is not known."""
    low = line.lower()
    for pattern, text in _ADVICE:
        if re.search(pattern, low):
            return text
    return None


def explain(output: str) -> str | None:
    """The advice for a tool's whole output, classified by its error line only."""
    return advice(error_line(output))


def describe(tool: str, head: str, output: str) -> str:
    """`HEAD: TOOL said: LINE` and, on the next line, the advice when the line is a known one."""
    line = error_line(output)
    said = f"{head}: {tool} said: {line}" if line else f"{head} (no output)"
    hint = advice(line)
    return f"{said}\n{hint}" if hint else said
