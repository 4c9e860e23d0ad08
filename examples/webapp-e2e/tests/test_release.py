"""The deployed release: the right version on the page and on /healthz."""

from __future__ import annotations

import json
import os
import urllib.request

import pytest
from pages import TaskListPage


def test_home_opens_the_task_list_with_the_release_version(
    driver, base_url, expected_version, snapshot
):
    """/ redirects to /tasks, which shows the seed tasks and the version in the footer."""
    page = TaskListPage(driver, base_url)
    page.open("/")
    page.wait_for_path("/tasks")
    assert page.wait_row_count(3)
    version = page.version
    assert version and version != "0.0.0-dev", f"footer shows a development version: {version!r}"
    if expected_version:
        assert version == expected_version, (
            f"footer shows version {version!r}, expected {expected_version!r}"
        )
    snapshot("task-list")


def test_healthz_answers_json_with_version_and_commit(base_url, expected_version, expected_commit):
    """GET /healthz is 200 JSON with status ok, the build's version and its commit."""
    with urllib.request.urlopen(base_url + "/healthz", timeout=10) as response:
        assert response.status == 200
        assert response.headers.get_content_type() == "application/json"
        health = json.loads(response.read().decode("utf-8"))
    assert health["status"] == "ok"
    assert health["version"], "healthz has an empty version"
    assert health["commit"] and health["commit"] != "unknown", f"healthz has no commit: {health}"
    if expected_version:
        assert health["version"] == expected_version
    if expected_commit:
        assert health["commit"].startswith(expected_commit), f"healthz commit {health['commit']!r}"


def test_footer_and_healthz_agree(driver, base_url):
    """The version and commit on the page are the ones /healthz reports."""
    with urllib.request.urlopen(base_url + "/healthz", timeout=10) as response:
        health = json.loads(response.read().decode("utf-8"))
    page = TaskListPage(driver, base_url).open()
    assert page.version == health["version"]
    assert health["commit"].startswith(page.commit)


def test_header_names_the_environment(driver, base_url):
    """With EXPECTED_ENVIRONMENT set, the header badge shows it (APP_ENV, from the ConfigMap)."""
    expected = os.environ.get("EXPECTED_ENVIRONMENT")
    if not expected:
        pytest.skip("EXPECTED_ENVIRONMENT is not set")
    page = TaskListPage(driver, base_url).open()
    page.wait_text("env-name", expected)
    assert page.text("env-name") == expected
