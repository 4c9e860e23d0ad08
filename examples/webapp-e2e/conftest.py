"""Fixtures of the end-to-end suite: the app's URL, one headless Chromium per session,
a clean browser state per test, and screenshots (of every failure, and of the main
pages when a test asks for them) saved under reports/screenshots/ and embedded in the
HTML report.

Environment:
    BASE_URL           the deployed app (default http://127.0.0.1:8081, Conveyor's test environment)
    EXPECTED_VERSION   if set, the version the app and /healthz must report
    EXPECTED_COMMIT    if set, the commit (or a prefix of it) /healthz must report
    EXPECTED_ENVIRONMENT  if set, the environment name the header must show (APP_ENV)
    CHROME_BINARY      default /usr/bin/chromium (Debian's chromium)
    CHROMEDRIVER       default /usr/bin/chromedriver (Debian's chromium-driver)
    REPORTS_DIR        default reports/ (screenshots go to REPORTS_DIR/screenshots/)
    E2E_TIMEOUT        seconds to wait for the page to show something (default 10)
"""

from __future__ import annotations

import base64
import contextlib
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.remote.webdriver import WebDriver

# Selenium Manager must never try to download a driver or a browser.
os.environ.setdefault("SE_OFFLINE", "true")

BASE_URL = os.environ.get("BASE_URL", "http://127.0.0.1:8081").rstrip("/")
REPORTS_DIR = Path(os.environ.get("REPORTS_DIR", "reports"))
SCREENSHOTS = REPORTS_DIR / "screenshots"
CHROME_BINARY = os.environ.get("CHROME_BINARY", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")

CHROME_FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--lang=en-US",
    "--window-size=1280,900",
)


def pytest_report_header(config: pytest.Config) -> list[str]:
    return [
        f"base url: {BASE_URL}",
        f"expected version: {os.environ.get('EXPECTED_VERSION') or '(any)'}",
        f"browser: {CHROME_BINARY} via {CHROMEDRIVER}",
    ]


def pytest_configure(config: pytest.Config) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    try:
        from pytest_metadata.plugin import metadata_key
    except ImportError:  # pytest-html not installed: no metadata table to fill
        return
    config.stash[metadata_key]["Base URL"] = BASE_URL
    config.stash[metadata_key]["Expected version"] = os.environ.get("EXPECTED_VERSION", "")


def pytest_html_report_title(report: Any) -> None:
    report.title = f"Task board end-to-end tests: {BASE_URL}"


@pytest.fixture(scope="session")
def base_url() -> str:
    """The app under test, without a trailing slash."""
    return BASE_URL


@pytest.fixture(scope="session")
def expected_version() -> str | None:
    return os.environ.get("EXPECTED_VERSION") or None


@pytest.fixture(scope="session")
def expected_commit() -> str | None:
    return os.environ.get("EXPECTED_COMMIT") or None


@pytest.fixture(scope="session")
def session_driver() -> Iterator[WebDriver]:
    """One headless Chromium for the whole run (a fresh profile, removed at the end)."""
    for path, package in ((CHROME_BINARY, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not Path(path).exists():
            pytest.exit(
                f"{path} not found: install Debian's {package} (apt-get install -y chromium "
                "chromium-driver) or set CHROME_BINARY / CHROMEDRIVER",
                returncode=3,
            )
    profile = tempfile.mkdtemp(prefix="webapp-e2e-chrome-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROME_BINARY
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def driver(session_driver: WebDriver, base_url: str, request: pytest.FixtureRequest) -> WebDriver:
    """The session's browser with this origin's storage cleared: every test starts
    from the three seed tasks."""
    request.node.stash[DRIVER_KEY] = session_driver
    session_driver.get(base_url + "/healthz")  # a same-origin document that runs no app code
    session_driver.execute_script("window.localStorage.clear(); window.sessionStorage.clear();")
    session_driver.delete_all_cookies()
    return session_driver


DRIVER_KEY = pytest.StashKey[WebDriver]()
EXTRAS_KEY = pytest.StashKey[list[Any]]()


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")[:120]


def _save_screenshot(item: pytest.Item, driver: WebDriver, name: str) -> Path | None:
    path = SCREENSHOTS / f"{_safe_name(name)}.png"
    try:
        png = driver.get_screenshot_as_png()
    except WebDriverException:
        return None
    path.write_bytes(png)
    item.user_properties.append(("screenshot", str(path)))
    extras = item.stash.setdefault(EXTRAS_KEY, [])
    try:
        from pytest_html import extras as html_extras
    except ImportError:
        return path
    extras.append(html_extras.png(base64.b64encode(png).decode("ascii"), name=path.name))
    return path


@pytest.fixture
def snapshot(request: pytest.FixtureRequest, driver: WebDriver) -> Callable[[str], Path | None]:
    """`snapshot("task-list")` saves reports/screenshots/page-task-list.png and shows it
    in the HTML report (evidence for the approver on success too)."""

    def take(page: str) -> Path | None:
        return _save_screenshot(request.node, driver, f"page-{page}")

    return take


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    driver = item.stash.get(DRIVER_KEY, None)
    if report.failed and report.when in ("setup", "call") and driver is not None:
        path = _save_screenshot(item, driver, f"FAILED-{item.nodeid}")
        if path is not None:
            crash = getattr(report.longrepr, "reprcrash", None)
            if crash is not None:
                crash.message = f"{crash.message} [screenshot: {path}]"
            if hasattr(report.longrepr, "addsection"):
                report.longrepr.addsection("screenshot", str(path))
            with contextlib.suppress(AttributeError, WebDriverException):
                report.longrepr.addsection("page", driver.current_url)
    if report.when == "call" or (report.when == "setup" and report.failed):
        report.extras = [*getattr(report, "extras", []), *item.stash.get(EXTRAS_KEY, [])]
        item.stash[EXTRAS_KEY] = []
