"""The list page, /tasks: rows, the filter, delete buttons and the flash message."""

from __future__ import annotations

from dataclasses import dataclass

from selenium.common.exceptions import TimeoutException
from selenium.webdriver.support.ui import WebDriverWait

from pages.base import TIMEOUT, BasePage, testid


@dataclass(frozen=True)
class TaskRow:
    id: int
    title: str
    status: str
    due: str


class TaskListPage(BasePage):
    path = "/tasks"

    def open(self, path: str | None = None) -> TaskListPage:
        super().open(path)
        self.wait_text("page-title", "Tasks")
        self.wait_visible("task-count")
        return self

    def rows(self) -> list[TaskRow]:
        rows = []
        for row in self.driver.find_elements("css selector", testid("task-row")):
            rows.append(
                TaskRow(
                    id=int(row.get_attribute("data-task-id") or 0),
                    title=row.find_element("css selector", testid("task-link")).text,
                    status=row.find_element("css selector", testid("task-status")).text,
                    due=row.find_element("css selector", testid("task-due")).text,
                )
            )
        return rows

    def titles(self) -> list[str]:
        return [row.title for row in self.rows()]

    def wait_row_count(self, count: int) -> list[TaskRow]:
        """Wait until the list shows `count` rows; fail with the rows it does show."""
        try:
            WebDriverWait(self.driver, TIMEOUT).until(
                lambda d: len(d.find_elements("css selector", testid("task-row"))) == count
            )
        except TimeoutException:
            shown = [f"#{r.id} {r.title}" for r in self.rows()]
            raise AssertionError(
                f"the task list should show {count} row(s) but shows {len(shown)}: {shown} "
                f"(filter {self.filter_value()!r}, on {self.driver.current_url})"
            ) from None
        return self.rows()

    def filter_value(self) -> str:
        boxes = self.find_all("filter-input")
        return (boxes[0].get_attribute("value") or "") if boxes else ""

    def filter(self, text: str) -> None:
        box = self.wait_visible("filter-input")
        box.clear()
        if text:
            box.send_keys(text)
        else:  # clear() alone does not fire Angular's input event
            self.driver.execute_script(
                "arguments[0].dispatchEvent(new Event('input', {bubbles: true}))", box
            )

    @property
    def count_text(self) -> str:
        return self.text("task-count")

    @property
    def flash(self) -> str:
        return self.text("flash")

    def _in_row(self, task_id: int, name: str) -> str:
        return f'{testid("task-row")}[data-task-id="{task_id}"] {testid(name)}'

    def open_task(self, task_id: int) -> None:
        self.driver.find_element("css selector", self._in_row(task_id, "task-link")).click()

    def delete(self, task_id: int) -> None:
        self.driver.find_element("css selector", self._in_row(task_id, "task-delete")).click()

    def new_task(self) -> None:
        self.click("new-task")
