"""Page objects of the task board: one class per page, selectors by data-testid only."""

from pages.base import BasePage
from pages.info import AboutPage, HealthPage
from pages.task_form import TaskFormPage
from pages.task_list import TaskListPage, TaskRow

__all__ = ["AboutPage", "BasePage", "HealthPage", "TaskFormPage", "TaskListPage", "TaskRow"]
