"""Creating, editing and deleting tasks; the board survives a reload."""

from __future__ import annotations

from pages import TaskFormPage, TaskListPage


def test_create_a_task(driver, base_url, snapshot):
    """A new task gets id 4, is listed with its status, and says so in a message."""
    page = TaskListPage(driver, base_url).open()
    page.new_task()
    form = TaskFormPage(driver, base_url)
    form.wait_text("page-title", "New task")
    form.set_title("Prepare the demo")
    form.set_description("Slides and a dry run")
    form.set_status("doing")
    snapshot("task-form")
    form.save()

    page.wait_for_path("/tasks")
    assert "Created task #4 “Prepare the demo”" in page.flash
    rows = page.wait_row_count(4)
    assert rows[-1].id == 4
    assert rows[-1].title == "Prepare the demo"
    assert rows[-1].status == "doing"


def test_created_task_survives_a_reload(driver, base_url):
    """The board is kept in the browser: a reload still lists the new task."""
    form = TaskFormPage(driver, base_url).open()
    form.set_title("Persist me")
    form.save()
    page = TaskListPage(driver, base_url)
    page.wait_row_count(4)
    driver.refresh()
    page.wait_visible("task-count")
    assert "Persist me" in [row.title for row in page.wait_row_count(4)]


def test_edit_a_task(driver, base_url):
    """Editing task 1 changes its title and status in the list."""
    page = TaskListPage(driver, base_url).open()
    page.open_task(1)
    form = TaskFormPage(driver, base_url)
    form.wait_text("page-title", "Edit task #1")
    form.set_title("Write the release notes for 1.0")
    form.set_status("done")
    form.save()

    page.wait_for_path("/tasks")
    assert "Saved task #1" in page.flash
    row = next(r for r in page.wait_row_count(3) if r.id == 1)
    assert row.title == "Write the release notes for 1.0"
    assert row.status == "done"


def test_delete_a_task_from_its_page(driver, base_url):
    """Delete on the edit page removes the task and returns to the list."""
    form = TaskFormPage(driver, base_url).open_task(3)
    form.delete()
    page = TaskListPage(driver, base_url)
    page.wait_for_path("/tasks")
    assert "Deleted task #3" in page.flash
    assert [r.id for r in page.wait_row_count(2)] == [1, 2]


def test_delete_a_task_from_the_list(driver, base_url):
    """The list's delete button removes just that row, for good."""
    page = TaskListPage(driver, base_url).open()
    page.delete(2)
    assert [r.id for r in page.wait_row_count(2)] == [1, 3]
    driver.refresh()
    page.wait_visible("task-count")
    assert [r.id for r in page.wait_row_count(2)] == [1, 3]


def test_restore_the_sample_tasks(driver, base_url):
    """After deleting everything, the reset button brings back the three seed tasks."""
    page = TaskListPage(driver, base_url).open()
    for task_id in (1, 2, 3):
        page.delete(task_id)
    page.wait_text("no-tasks", "empty")
    page.click("reset-board")
    assert [r.id for r in page.wait_row_count(3)] == [1, 2, 3]
