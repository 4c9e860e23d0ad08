"""The filter box narrows the list as you type."""

from __future__ import annotations

from pages import TaskListPage


def test_filter_by_title(driver, base_url):
    """Typing 'registry' keeps only the registry task and says 1 of 3."""
    page = TaskListPage(driver, base_url).open()
    page.filter("registry")
    rows = page.wait_row_count(1)
    assert rows[0].title == "Rotate the registry credentials"
    page.wait_text("task-count", "Showing 1 of 3 tasks")


def test_filter_matches_descriptions_case_insensitively(driver, base_url):
    """'APPROVAL' matches task 2 through its description."""
    page = TaskListPage(driver, base_url).open()
    page.filter("APPROVAL")
    assert [r.id for r in page.wait_row_count(1)] == [2]


def test_filter_without_match_says_so_and_clearing_restores_the_list(driver, base_url):
    """No match shows a message; an empty filter shows every task again."""
    page = TaskListPage(driver, base_url).open()
    page.filter("no such task")
    page.wait_text("no-match", "No task matches")
    page.filter("")
    assert len(page.wait_row_count(3)) == 3
    page.wait_text("task-count", "Showing 3 of 3 tasks")
