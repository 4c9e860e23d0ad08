"""What every page of the app shares: navigation, the header and the footer."""

from __future__ import annotations

import os
from urllib.parse import urlsplit

from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import WebDriverWait

# seconds to wait for the app to show something (E2E_TIMEOUT overrides)
TIMEOUT = float(os.environ.get("E2E_TIMEOUT", "10"))


def testid(name: str) -> str:
    """CSS selector of an element by its data-testid attribute."""
    return f'[data-testid="{name}"]'


class BasePage:
    """A page of the task board at `base_url` (no trailing slash)."""

    path = "/"

    def __init__(self, driver: WebDriver, base_url: str) -> None:
        self.driver = driver
        self.base_url = base_url.rstrip("/")

    # -- navigation ------------------------------------------------------------------
    def open(self, path: str | None = None) -> BasePage:
        """Load the page with a full browser navigation (what a bookmark or deep link does)."""
        self.driver.get(self.base_url + (path if path is not None else self.path))
        self.wait_visible("page-title")
        return self

    @property
    def current_path(self) -> str:
        return urlsplit(self.driver.current_url).path

    def wait_for_path(self, path: str) -> None:
        WebDriverWait(self.driver, TIMEOUT).until(
            lambda d: urlsplit(d.current_url).path == path,
            f"the browser did not reach {path} (at {self.driver.current_url})",
        )

    def nav(self, name: str) -> None:
        """Click a header link: tasks, new, about or healthz."""
        self.click(f"nav-{name}")

    # -- elements --------------------------------------------------------------------
    def find(self, name: str) -> WebElement:
        return self.driver.find_element("css selector", testid(name))

    def find_all(self, name: str) -> list[WebElement]:
        return self.driver.find_elements("css selector", testid(name))

    def exists(self, name: str) -> bool:
        return len(self.find_all(name)) > 0

    def wait_visible(self, name: str, timeout: float = TIMEOUT) -> WebElement:
        return WebDriverWait(self.driver, timeout).until(
            ec.visibility_of_element_located(("css selector", testid(name))),
            f"no visible element data-testid={name} on {self.driver.current_url}",
        )

    def wait_gone(self, name: str, timeout: float = TIMEOUT) -> None:
        WebDriverWait(self.driver, timeout).until(
            lambda d: len(d.find_elements("css selector", testid(name))) == 0,
            f"element data-testid={name} is still on {self.driver.current_url}",
        )

    def wait_text(self, name: str, expected: str, timeout: float = TIMEOUT) -> str:
        """Wait until the element's text contains `expected`; return the text."""

        def has_text(_: WebDriver) -> str | bool:
            try:
                text = self.find(name).text
            except (NoSuchElementException, StaleElementReferenceException):
                return False
            return text if expected in text else False

        try:
            return str(WebDriverWait(self.driver, timeout).until(has_text))
        except Exception:
            actual = self.text_or_none(name)
            raise AssertionError(
                f"data-testid={name} should contain {expected!r} but shows {actual!r} "
                f"on {self.driver.current_url}"
            ) from None

    def text(self, name: str) -> str:
        return self.wait_visible(name).text

    def text_or_none(self, name: str) -> str | None:
        found = self.find_all(name)
        return found[0].text if found else None

    def click(self, name: str) -> None:
        WebDriverWait(self.driver, TIMEOUT).until(
            ec.element_to_be_clickable(("css selector", testid(name))),
            f"element data-testid={name} is not clickable on {self.driver.current_url}",
        ).click()

    # -- header and footer -------------------------------------------------------------
    @property
    def title(self) -> str:
        return self.text("page-title")

    @property
    def version(self) -> str:
        """The version in the footer (read from the build's healthz.json)."""
        return self.text("app-version")

    @property
    def commit(self) -> str:
        return self.text("app-commit")
