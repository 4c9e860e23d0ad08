"""The form page: /tasks/new (create) and /tasks/:id (edit, delete)."""

from __future__ import annotations

from selenium.webdriver.support.ui import Select

from pages.base import BasePage


class TaskFormPage(BasePage):
    path = "/tasks/new"

    def open_task(self, task_id: int) -> TaskFormPage:
        self.open(f"/tasks/{task_id}")
        return self

    # -- fields ----------------------------------------------------------------------
    def set_title(self, text: str) -> None:
        box = self.wait_visible("title-input")
        box.clear()
        box.send_keys(text)

    def set_description(self, text: str) -> None:
        box = self.wait_visible("description-input")
        box.clear()
        box.send_keys(text)

    def set_due(self, iso_day: str) -> None:
        """Set the date field (YYYY-MM-DD) without depending on the browser's date format."""
        box = self.wait_visible("due-input")
        self.driver.execute_script(
            "arguments[0].value = arguments[1];"
            "arguments[0].dispatchEvent(new Event('input', {bubbles: true}));"
            "arguments[0].dispatchEvent(new Event('blur'));",
            box,
            iso_day,
        )

    def set_status(self, status: str) -> None:
        Select(self.wait_visible("status-select")).select_by_visible_text(status)

    def blur_title(self) -> None:
        self.driver.execute_script("arguments[0].blur()", self.wait_visible("title-input"))

    @property
    def title_value(self) -> str:
        return self.wait_visible("title-input").get_attribute("value") or ""

    @property
    def status_value(self) -> str:
        return Select(self.wait_visible("status-select")).first_selected_option.text

    # -- actions ---------------------------------------------------------------------
    def save(self) -> None:
        self.click("save-button")

    def delete(self) -> None:
        self.click("delete-button")

    def cancel(self) -> None:
        self.click("cancel-link")

    # -- messages ----------------------------------------------------------------------
    def error(self, field: str) -> str:
        """The validation message under `title`, `due` or the form (`form`)."""
        return self.text(f"{field}-error")

    def has_error(self, field: str) -> bool:
        return self.exists(f"{field}-error")
