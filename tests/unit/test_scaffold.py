"""`conveyor init --app`: what it detects in an app and its tests dir, the files it writes, and
the one-line refusals (exit 2, nothing written)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from conveyor.actions.registry import ActionRegistry
from conveyor.adapters.manifests import load_manifests
from conveyor.adapters.manifests import validate as validate_manifests
from conveyor.buildspec.spec import parse_buildspec
from conveyor.errors import ConfigError
from conveyor.scaffold import junit, project
from conveyor.scaffold.detect import detect_app, detect_tests
from conveyor.spec.pipeline_file import load_pipeline

REPO = Path(__file__).resolve().parents[2]

NG17_PACKAGE = {
    "name": "demo",
    "version": "0.0.0",
    "scripts": {"ng": "ng", "build": "ng build", "test": "ng test"},
    "dependencies": {"@angular/core": "^17.3.0", "zone.js": "~0.14.3"},
    "devDependencies": {
        "@angular-devkit/build-angular": "^17.3.17",
        "@angular/cli": "^17.3.17",
        "karma": "~6.4.0",
        "karma-chrome-launcher": "~3.2.0",
        "karma-jasmine": "~5.1.0",
    },
}


def ng_workspace(projects: dict[str, Any]) -> dict[str, Any]:
    return {"version": 1, "newProjectRoot": "projects", "projects": projects}


def ng_project(name: str, test_builder: str = "@angular-devkit/build-angular:karma") -> Any:
    return {
        "projectType": "application",
        "architect": {
            "build": {
                "builder": "@angular-devkit/build-angular:application",
                "options": {"outputPath": f"dist/{name}", "browser": "src/main.ts"},
            },
            "test": {"builder": test_builder, "options": {"tsConfig": "tsconfig.spec.json"}},
        },
    }


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


@pytest.fixture
def karma_app(tmp_path: Path) -> Path:
    app = tmp_path / "demo"
    write_json(app / "package.json", NG17_PACKAGE)
    write_json(app / "angular.json", ng_workspace({"demo": ng_project("demo")}))
    return app


@pytest.fixture
def jest_app(tmp_path: Path) -> Path:
    app = tmp_path / "shop"
    write_json(
        app / "package.json",
        {
            "name": "@acme/Shop_Front",
            "version": "2.1.0",
            "scripts": {"build": "vite build", "test": "jest"},
            "devDependencies": {"jest": "^29.7.0", "vite": "^5.0.0"},
        },
    )
    return app


@pytest.fixture
def selenium_tests(tmp_path: Path) -> Path:
    tests = tmp_path / "e2e"
    (tests / "tests").mkdir(parents=True)
    (tests / "requirements.txt").write_text("selenium==4.51.0\npytest\n")
    (tests / "tests" / "test_home.py").write_text("from selenium import webdriver\n")
    return tests


def test_karma_detection(karma_app: Path) -> None:
    """Angular 17 + Karma: major 17, project demo, dist/demo/browser (application builder)."""
    app = detect_app(karma_app)
    assert (app.angular_major, app.name, app.runner) == (17, "demo", "karma")
    assert app.output_dir == "dist/demo/browser"


def test_karma_junit_setup_is_a_karma_conf_the_test_target_and_the_reporter_package(
    karma_app: Path,
) -> None:
    """For Karma, init adds karma.conf.js (junit reporter, ChromeHeadlessCI), points
    angular.json at it and adds karma-junit-reporter to devDependencies."""
    changes = {c.path.name: c for c in junit.reporter_changes(detect_app(karma_app), lock=False)}
    assert set(changes) == {"karma.conf.js", "angular.json", "package.json"}
    conf = changes["karma.conf.js"].new
    assert "require('karma-junit-reporter')" in conf and "ChromeHeadlessCI" in conf
    assert "outputFile: 'unit-junit.xml'" in conf
    ng = json.loads(changes["angular.json"].new)
    assert ng["projects"]["demo"]["architect"]["test"]["options"]["karmaConfig"] == "karma.conf.js"
    assert '+    "karma-junit-reporter": "^2.0.1"' in changes["package.json"].diff(karma_app)


def test_an_existing_karma_conf_is_patched_not_replaced(karma_app: Path) -> None:
    """A karma.conf.js of the app keeps its lines and gains the plugin, reporter and launcher."""
    (karma_app / "karma.conf.js").write_text(
        "module.exports = function (config) {\n  config.set({\n    plugins: [\n"
        "      require('karma-jasmine')\n    ],\n    reporters: ['progress'],\n"
        "    browsers: ['Chrome']\n  });\n};\n"
    )
    ng = json.loads((karma_app / "angular.json").read_text())
    ng["projects"]["demo"]["architect"]["test"]["options"]["karmaConfig"] = "karma.conf.js"
    write_json(karma_app / "angular.json", ng)
    changes = junit.reporter_changes(detect_app(karma_app), lock=False)
    conf = next(c for c in changes if c.path.name == "karma.conf.js").new
    assert "require('karma-jasmine')" in conf and "require('karma-junit-reporter')," in conf
    assert "reporters: ['progress', 'junit']" in conf
    assert "ChromeHeadlessCI" in conf and "browsers: ['Chrome']" in conf
    assert all(c.path.name != "angular.json" for c in changes)


def test_jest_app_without_angular_json_is_a_node_app_with_jest_junit(jest_app: Path) -> None:
    """A package.json with jest and a build script: a Node app, name from the package name,
    jest-junit added, the buildspec runs jest with it."""
    app = detect_app(jest_app)
    assert (app.angular_major, app.name, app.runner, app.output_dir) == (
        None,
        "shop-front",
        "jest",
        "dist",
    )
    changes = junit.reporter_changes(app, lock=False)
    assert [c.path.name for c in changes] == ["package.json"]
    assert '"jest-junit": "^16.0.0"' in changes[0].new
    spec = project.plan(jest_app).files[jest_app / "buildspec.yml"]
    assert "npx jest --ci --reporters=default --reporters=jest-junit" in spec
    assert 'JEST_JUNIT_OUTPUT_NAME: "unit-junit.xml"' in spec


def test_examples_webapp_is_angular_21_with_vitest_and_needs_no_reporter_setup(
    tmp_path: Path,
) -> None:
    """examples/webapp: Angular 21, the unit-test builder (Vitest), output dist/webapp/browser;
    Vitest's junit reporter is built in, so no change to the app."""
    app_dir = tmp_path / "webapp"
    app_dir.mkdir()
    for name in ("package.json", "angular.json"):
        shutil.copy2(REPO / "examples" / "webapp" / name, app_dir / name)
    app = detect_app(app_dir)
    assert (app.angular_major, app.name, app.runner) == (21, "webapp", "vitest")
    assert app.output_dir == "dist/webapp/browser"
    assert junit.reporter_changes(app) == []
    spec = project.plan(app_dir).files[app_dir / "buildspec.yml"]
    assert "--reporters=junit" in spec and "--output-file=reports/unit-junit.xml" in spec
    e2e = tmp_path / "webapp-e2e"
    shutil.copytree(
        REPO / "examples" / "webapp-e2e", e2e, ignore=shutil.ignore_patterns("buildspec.yml")
    )
    project.write(project.plan(app_dir, e2e, name="board"))
    pipeline = load_pipeline(app_dir / "pipeline.yaml", ActionRegistry().catalogue())
    assert pipeline.name == "board" and pipeline.environments["prod"].repository == "board"
    assert "COPY dist/webapp/browser/ /www/" in (app_dir / "Containerfile").read_text()


def test_the_example_suite_is_pytest_selenium(tmp_path: Path) -> None:
    """examples/webapp-e2e (selenium in requirements.txt): pytest + Selenium."""
    assert detect_tests(REPO / "examples" / "webapp-e2e").kind == "pytest-selenium"


def test_a_playwright_suite_is_detected(tmp_path: Path) -> None:
    """A Python suite that imports playwright: Playwright (Python)."""
    (tmp_path / "test_app.py").write_text("from playwright.sync_api import sync_playwright\n")
    assert detect_tests(tmp_path).kind == "playwright"


def test_cypress_is_named_unsupported_with_the_reason(tmp_path: Path) -> None:
    """A Cypress suite: one line naming the file, why (the binary download), what instead."""
    (tmp_path / "cypress.config.ts").write_text("export default {}\n")
    with pytest.raises(ConfigError) as e:
        detect_tests(tmp_path)
    assert e.value.exit_code == 2
    assert "\n" not in e.value.message
    assert "cypress.config.ts:1: Cypress is not supported here" in e.value.message
    assert "download.cypress.io" in e.value.message


def test_a_dir_that_is_not_an_app_is_refused(tmp_path: Path) -> None:
    """No package.json: one line saying what was looked for."""
    with pytest.raises(ConfigError, match="not an Angular or Node app \\(no package.json\\)"):
        detect_app(tmp_path)


def test_a_broken_package_json_is_one_config_error_with_its_line(tmp_path: Path) -> None:
    """A package.json that is not JSON fails detection naming the file, line and the fix."""
    (tmp_path / "package.json").write_text('{\n  "name": "app",\n  "scripts": {,}\n}\n')
    with pytest.raises(
        ConfigError, match=r"package.json:3: not valid JSON at column 15 .*init again"
    ):
        detect_app(tmp_path)


def test_a_workspace_with_several_projects_needs_project(karma_app: Path) -> None:
    """Two application projects and no --project: the names and the flag; --project picks."""
    write_json(
        karma_app / "angular.json",
        ng_workspace({"shop": ng_project("shop"), "admin": ng_project("admin")}),
    )
    with pytest.raises(ConfigError, match="2 application projects \\(admin, shop\\): choose"):
        detect_app(karma_app)
    assert detect_app(karma_app, "admin").output_dir == "dist/admin/browser"


def test_an_unknown_test_builder_is_refused(karma_app: Path) -> None:
    """A test builder init does not know: its name and the known runners."""
    write_json(
        karma_app / "angular.json",
        ng_workspace({"demo": ng_project("demo", "@acme/mocha:run")}),
    )
    with pytest.raises(ConfigError, match="test builder '@acme/mocha:run' .*known: Karma, Jest"):
        detect_app(karma_app)


def test_angular_with_angular_builders_jest_runs_ng_test_with_jest_junit(karma_app: Path) -> None:
    """An Angular app on @angular-builders/jest:run: `ng test` passes --ci and the jest-junit
    reporter through (checked against a real Angular 17 app), JEST_JUNIT_* name the report."""
    write_json(
        karma_app / "angular.json",
        ng_workspace({"demo": ng_project("demo", "@angular-builders/jest:run")}),
    )
    app = detect_app(karma_app)
    assert (app.angular_major, app.runner) == (17, "jest")
    spec = project.plan(karma_app).files[karma_app / "buildspec.yml"]
    assert "npx ng test --ci --reporters=default --reporters=jest-junit" in spec
    assert 'JEST_JUNIT_OUTPUT_DIR: "reports"' in spec
    assert 'JEST_JUNIT_OUTPUT_NAME: "unit-junit.xml"' in spec


def test_angular_experimental_jest_builder_is_refused_with_the_replacement(
    karma_app: Path,
) -> None:
    """Angular 17's experimental devkit Jest builder rejects --reporters ("Unknown arguments:
    ci, reporters") and ignores jest.config: refused, naming @angular-builders/jest:run."""
    write_json(
        karma_app / "angular.json",
        ng_workspace({"demo": ng_project("demo", "@angular-devkit/build-angular:jest")}),
    )
    with pytest.raises(
        ConfigError, match="cannot write a JUnit report: use '@angular-builders/jest:run'"
    ):
        detect_app(karma_app)


def test_generated_files_are_valid_buildspecs_manifests_and_pipeline(
    karma_app: Path, selenium_tests: Path
) -> None:
    """The buildspecs parse, the manifests validate and name the image after the repository,
    and pipeline.yaml validates with the publish contract in it."""
    plan = project.plan(karma_app, selenium_tests)
    project.write(plan)
    parse_buildspec((karma_app / "buildspec.yml").read_text(), "buildspec.yml")
    parse_buildspec((selenium_tests / "buildspec.yml").read_text(), "e2e/buildspec.yml")
    mset = load_manifests(karma_app, "k8s/")
    assert validate_manifests(mset) == []
    assert "image: demo:latest" in (karma_app / "k8s" / "deployment.yaml").read_text()
    pipeline = load_pipeline(karma_app / "pipeline.yaml", ActionRegistry().catalogue())
    build = next(a for _, a in pipeline.all_actions() if a.name == "BuildAndPushImage")
    assert build.config["publishes"]["repository"] == "demo"
    assert "env" not in build.config  # REPOSITORY_URI and IMAGE_TAG come from publishes
    assert {e.repository for e in pipeline.environments.values()} == {"demo"}
    assert [s.name for s in pipeline.stages][3] == "EndToEndTests"
    text = (karma_app / "Containerfile").read_text()
    assert "ARG BASE=localhost/conveyor/web" in text and "COPY dist/demo/browser/" in text


def test_existing_file_without_force_is_one_line_exit_2_and_nothing_written(
    karma_app: Path, selenium_tests: Path
) -> None:
    """An existing buildspec.yml: `init --app` exits 2 with one line naming it; no file of
    init's is written, the existing one is unchanged, no temporary file is left."""
    from conveyor.cli.main import cli

    (karma_app / "buildspec.yml").write_text("mine\n")
    before = sorted(p.name for p in karma_app.rglob("*"))
    res = CliRunner().invoke(
        cli, ["init", "--app", str(karma_app), "--tests", str(selenium_tests), "--apply"]
    )
    assert res.exit_code == 2
    lines = res.output.strip().splitlines()
    assert len(lines) == 1, res.output
    assert "buildspec.yml already exists: nothing was written; use --force" in lines[0]
    assert (karma_app / "buildspec.yml").read_text() == "mine\n"
    assert sorted(p.name for p in karma_app.rglob("*")) == before
    assert not (selenium_tests / "buildspec.yml").exists()


def test_force_overwrites_and_unchanged_files_are_no_conflict(karma_app: Path) -> None:
    """--force overwrites; running init again with the same result needs no --force."""
    from conveyor.cli.main import cli

    (karma_app / "buildspec.yml").write_text("mine\n")
    res = CliRunner().invoke(cli, ["init", "--app", str(karma_app), "--force"])
    assert res.exit_code == 0, res.output
    assert "mine" not in (karma_app / "buildspec.yml").read_text()
    again = CliRunner().invoke(cli, ["init", "--app", str(karma_app)])
    assert again.exit_code == 0, again.output
    assert again.output.splitlines()[-3:] == [
        "  conveyor up",
        "  conveyor repo create demo",
        f"  conveyor pipeline apply {karma_app / 'pipeline.yaml'}",
    ]
    # without --apply the Karma set-up is shown as a diff and not applied
    assert "+++ b/karma.conf.js" in again.output
    assert not (karma_app / "karma.conf.js").exists()


def test_init_without_app_still_writes_the_example_word_for_word(tmp_path: Path) -> None:
    """`conveyor init DIR` writes the packaged seed pipeline unchanged."""
    from conveyor.cli.main import cli

    res = CliRunner().invoke(cli, ["init", str(tmp_path)])
    assert res.exit_code == 0, res.output
    packaged = REPO / "src" / "conveyor" / "templates" / "pipeline.yaml"
    assert (tmp_path / "pipeline.yaml").read_text() == packaged.read_text()


def test_atomic_write_leaves_nothing_when_one_file_cannot_be_written(tmp_path: Path) -> None:
    """A file that cannot be written (its directory is a file): no other file appears."""
    (tmp_path / "k8s").write_text("a file, not a directory")
    with pytest.raises(ConfigError, match="nothing was written"):
        project.atomic_write({tmp_path / "a.yml": "a", tmp_path / "k8s" / "b.yaml": "b"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["k8s"]
