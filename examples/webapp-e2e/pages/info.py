"""The about page and the in-app health page."""

from __future__ import annotations

import json
from typing import Any

from pages.base import BasePage


class AboutPage(BasePage):
    path = "/about"

    @property
    def shown_version(self) -> str:
        return self.text("about-version")


class HealthPage(BasePage):
    path = "/healthz"

    def document(self) -> dict[str, Any]:
        """The health JSON as the in-app page shows it."""
        self.wait_text("healthz-json", '"version"')
        return dict(json.loads(self.text("healthz-json")))
