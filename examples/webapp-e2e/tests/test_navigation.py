"""Moving around the app with its links, the browser's history, and direct URLs."""

from __future__ import annotations

from pages import AboutPage, BasePage, HealthPage, TaskFormPage, TaskListPage


def test_header_links_reach_every_page(driver, base_url):
    """The header links open the new-task form, about, health and back the list."""
    page = TaskListPage(driver, base_url).open()
    page.nav("new")
    page.wait_for_path("/tasks/new")
    page.wait_text("page-title", "New task")

    page.nav("about")
    page.wait_for_path("/about")
    about = AboutPage(driver, base_url)
    about.wait_text("page-title", "About")
    assert about.shown_version == page.version

    page.nav("healthz")
    page.wait_for_path("/healthz")
    health = HealthPage(driver, base_url).document()
    assert health["status"] == "ok"
    assert health["version"] == page.version

    page.nav("tasks")
    page.wait_for_path("/tasks")
    assert len(page.wait_row_count(3)) == 3


def test_back_button_returns_to_the_previous_page(driver, base_url):
    """History works: list -> task 1 -> back shows the list again."""
    page = TaskListPage(driver, base_url).open()
    page.open_task(1)
    page.wait_for_path("/tasks/1")
    driver.back()
    page.wait_for_path("/tasks")
    assert len(page.wait_row_count(3)) == 3


def test_deep_link_opens_a_task_for_editing(driver, base_url, snapshot):
    """Loading /tasks/2 directly (a bookmark) shows task 2 in the edit form."""
    form = TaskFormPage(driver, base_url).open_task(2)
    form.wait_text("page-title", "Edit task #2")
    assert form.title_value == "Review the pipeline dashboard"
    assert form.status_value == "doing"
    snapshot("task-detail")


def test_deep_links_to_other_pages_load(driver, base_url):
    """/tasks/new and /about load directly too, with the version in the footer."""
    form = TaskFormPage(driver, base_url).open("/tasks/new")
    form.wait_text("page-title", "New task")
    about = AboutPage(driver, base_url).open()
    about.wait_text("page-title", "About")
    assert about.version


def test_unknown_task_and_unknown_page_say_so(driver, base_url):
    """/tasks/999 says the task does not exist; /no/such/page says page not found."""
    form = TaskFormPage(driver, base_url).open("/tasks/999")
    form.wait_text("task-not-found", "no task #999")
    page = BasePage(driver, base_url).open("/no/such/page")
    page.wait_text("page-not-found", "nothing here")
