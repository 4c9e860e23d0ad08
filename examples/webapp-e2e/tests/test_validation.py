"""The form refuses bad input and says why, next to the field."""

from __future__ import annotations

from pages import TaskFormPage, TaskListPage


def test_empty_title_is_refused(driver, base_url, snapshot):
    """Saving an empty form shows 'Title is required.' and stays on the form."""
    form = TaskFormPage(driver, base_url).open()
    form.save()
    assert form.error("title") == "Title is required."
    assert "Fix the errors" in form.error("form")
    assert form.current_path == "/tasks/new"
    snapshot("task-form-errors")


def test_short_title_is_refused(driver, base_url):
    """A two-letter title gets the minimum-length message once the field is left."""
    form = TaskFormPage(driver, base_url).open()
    form.set_title("ab")
    form.blur_title()
    assert form.error("title") == "Title must be at least 3 characters."


def test_due_date_in_the_past_is_refused(driver, base_url):
    """A due date before today is refused; no task is created."""
    form = TaskFormPage(driver, base_url).open()
    form.set_title("Back to the future")
    form.set_due("2000-01-01")
    form.save()
    assert form.error("due") == "Due date cannot be in the past."
    page = TaskListPage(driver, base_url).open()
    assert len(page.wait_row_count(3)) == 3


def test_fixing_the_errors_lets_the_task_be_saved(driver, base_url):
    """The messages go away when the input becomes valid, and the save goes through."""
    form = TaskFormPage(driver, base_url).open()
    form.save()
    form.wait_visible("title-error")
    form.set_title("Valid title")
    form.wait_gone("title-error")
    form.save()
    page = TaskListPage(driver, base_url)
    page.wait_for_path("/tasks")
    assert "Valid title" in page.titles()
