"""Which values from data become links on the dashboard: http(s) URLs and same-site paths."""

from __future__ import annotations

import pytest

from conveyor.server.headers import http_link, local_path


@pytest.mark.parametrize(
    "url",
    ["https://example.com/change/42", "http://127.0.0.1:8081/", "HTTPS://Example.com/a?b=c#d"],
)
def test_http_and_https_urls_are_links(url: str) -> None:
    """An absolute http(s) URL with a host is kept as a link."""
    assert http_link(url) == url


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        " javascript:alert(1)",
        "JaVaScRiPt:alert(1)",
        "java\tscript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "vbscript:msgbox(1)",
        "//evil.example/x",
        "/relative",
        "https://",
        "https:///path-only",
        "http://exa mple.com/",
        "https://example.com/\x00",
        "https://[::1",
        "",
        None,
        42,
    ],
)
def test_anything_else_is_text(url: object) -> None:
    """Other schemes, scheme-relative and relative URLs, spaces and control characters, and
    malformed URLs are not links."""
    assert http_link(url) is None


@pytest.mark.parametrize(
    ("path", "kept"),
    [
        ("/api/v1/artifacts/sha256:ab/files/report.html", True),
        ("//evil.example/x", False),
        ("/\\evil.example", False),
        ("javascript:alert(1)", False),
        ("https://example.com/", False),
        ("/ok\nSet-Cookie: x", False),
    ],
)
def test_local_paths_stay_on_this_site(path: str, kept: bool) -> None:
    """Server-built URLs are used only when they are paths on this site; otherwise a dead '#'."""
    assert local_path(path) == (path if kept else "#")
