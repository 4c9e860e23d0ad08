"""Tool failures are classified by the tool's own error line; the messages below were captured
from the real tools on Debian 12 (podman 4.3.1 with runc, skopeo 1.9.3, git 2.39.5)."""

from __future__ import annotations

import pytest

from conveyor.adapters.containers import ContainerError
from conveyor.adapters.tool_errors import advice, describe, error_line, explain

PAUSE = (
    'Error: building local pause image: finding pause binary: exec: "catatonit": '
    "executable file not found in $PATH"
)
BAD_CMD = (
    'Error: runc: runc create failed: unable to start container process: exec: "nosuch": '
    "executable file not found in $PATH: OCI runtime attempted to invoke a command that was "
    "not found"
)
BAD_CMD_PATH = (
    'Error: runc: runc create failed: unable to start container process: exec: "/nosuch": '
    "stat /nosuch: no such file or directory: OCI runtime attempted to invoke a command that "
    "was not found"
)
MISSING_IMAGE = (
    "Error: initializing source docker://127.0.0.1:59996/webapp:nope: reading manifest nope in "
    "127.0.0.1:59996/webapp: manifest unknown: manifest unknown"
)
MISSING_LOCAL_IMAGE = "Error: inspecting object: localhost/nope:1: image not known"
PORT_IN_USE = (
    "Error: cannot listen on the TCP port: listen tcp4 127.0.0.1:59997: bind: address already "
    "in use"
)
REGISTRY_DOWN_PODMAN = (
    'time="2026-11-30T22:10:40Z" level=warning msg="Failed, retrying in 1s ... (3/3). Error: '
    "initializing source docker://127.0.0.1:59999/webapp:1: pinging container registry "
    '127.0.0.1:59999: Get \\"http://127.0.0.1:59999/v2/\\": dial tcp 127.0.0.1:59999: connect: '
    'connection refused"\n'
    "Error: initializing source docker://127.0.0.1:59999/webapp:1: pinging container registry "
    '127.0.0.1:59999: Get "http://127.0.0.1:59999/v2/": dial tcp 127.0.0.1:59999: connect: '
    "connection refused"
)
REGISTRY_DOWN_SKOPEO = (
    'time="2026-11-30T22:10:41Z" level=fatal msg="initializing source '
    "docker://127.0.0.1:59999/webapp:1: pinging container registry 127.0.0.1:59999: Get "
    '\\"http://127.0.0.1:59999/v2/\\": dial tcp 127.0.0.1:59999: connect: connection refused"'
)
MISSING_IMAGE_SKOPEO = (
    'time="2026-11-30T22:10:52Z" level=fatal msg="initializing source '
    "docker://127.0.0.1:59996/webapp:nope: reading manifest nope in 127.0.0.1:59996/webapp: "
    'manifest unknown: manifest unknown"'
)
GIT_NO_REPO = (
    "fatal: '/nonexistent/repo' does not appear to be a git repository\n"
    "fatal: Could not read from remote repository.\n\n"
    "Please make sure you have the correct access rights\nand the repository exists.\n"
)
GIT_DOWN = (
    "Cloning into '/tmp/cap/gx'...\nfatal: unable to access 'http://127.0.0.1:59999/x.git/': "
    "Failed to connect to 127.0.0.1 port 59999 after 1 ms: Couldn't connect to server\n"
)


@pytest.mark.parametrize(
    ("output", "line_has", "advice_has"),
    [
        (PAUSE, "finding pause binary", "apt-get install -y catatonit"),
        (BAD_CMD, '"nosuch"', "the image has no such command"),
        (BAD_CMD_PATH, '"/nosuch"', "the image has no such command"),
        (MISSING_IMAGE, "manifest unknown", "does not exist there"),
        (MISSING_LOCAL_IMAGE, "image not known", "does not exist there"),
        (PORT_IN_USE, "127.0.0.1:59997", "already taken"),
        (REGISTRY_DOWN_PODMAN, "connection refused", "registry is not answering"),
        (REGISTRY_DOWN_SKOPEO, "connection refused", "registry is not answering"),
        (MISSING_IMAGE_SKOPEO, "reading manifest nope", "does not exist there"),
        (GIT_NO_REPO, "does not appear to be a git repository", "does not exist"),
        (GIT_DOWN, "Couldn't connect to server", "not reachable"),
    ],
)
def test_real_messages_are_classified_by_their_error_line(
    output: str, line_has: str, advice_has: str
) -> None:
    """Each real failure yields the tool's own error line and the advice that fits it."""
    line = error_line(output)
    assert line_has in line
    assert advice_has in (advice(line) or "")


def test_missing_pause_binary_is_not_blamed_on_the_image() -> None:
    """A missing catatonit names the package; it is never 'the image has no such command'."""
    hint = explain(PAUSE) or ""
    assert "catatonit" in hint
    assert "no such command" not in hint


def test_skopeo_message_is_unquoted() -> None:
    """skopeo's fatal msg is quoted as skopeo meant it, without the logfmt escaping."""
    line = error_line(REGISTRY_DOWN_SKOPEO)
    assert line.startswith("initializing source docker://127.0.0.1:59999/webapp:1")
    assert 'Get "http://127.0.0.1:59999/v2/"' in line


def test_git_quotes_its_first_fatal_line() -> None:
    """git's first fatal line says what failed; the generic follow-up lines are not quoted."""
    assert error_line(GIT_NO_REPO) == (
        "fatal: '/nonexistent/repo' does not appear to be a git repository"
    )


def test_an_unknown_failure_is_quoted_without_advice() -> None:
    """An unknown error line is quoted as it is, with no invented advice."""
    text = describe("podman", "`podman build` failed (exit 1)", "Error: something new\n")
    assert text == "`podman build` failed (exit 1): podman said: Error: something new"


def test_container_error_quotes_podman_and_advises_catatonit() -> None:
    """ContainerError for `kube play` without catatonit quotes podman's line and the fix."""
    err = ContainerError(["podman", "kube", "play", "--network", "x"], 125, PAUSE + "\n")
    first, second = str(err).splitlines()
    assert first == f"`podman kube play --network` failed (exit 125): podman said: {PAUSE}"
    assert "apt-get install -y catatonit" in second
