"""Bring your own app: detect an existing project and write the files that take it through
Conveyor (`conveyor init --app`). detect: what the app and its tests are; templates: the
files' text; junit: the unit-test runner's JUnit reporter set-up; project: plan and write."""
