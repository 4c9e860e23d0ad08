"""What an existing project is: the app (package.json, angular.json) and its end-to-end suite.

`detect_app(DIR, project=None)` reads the app's package.json and, for an Angular workspace,
angular.json: the Angular major version, the project, where `ng build` writes the browser
files, and the unit-test runner (Karma, Jest or Vitest). `detect_tests(DIR)` reads a tests
directory: pytest + Selenium or Playwright for Python; a Cypress suite is named as unsupported
here, with the reason. Anything else is a ConfigError (exit 2) that says what was looked for.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conveyor.adapters.jsonfile import read_json
from conveyor.errors import ConfigError

RUNNERS = ("karma", "jest", "vitest")
PROJECTS_KEY = '"projects"'

# angular.json test builders -> the runner behind them
_BUILDERS = {
    "@angular-devkit/build-angular:karma": "karma",
    "@angular/build:karma": "karma",
    "@angular-builders/jest:run": "jest",
    "@angular-devkit/build-angular:web-test-runner": "",
    "@angular/build:unit-test": "vitest",
    "@analogjs/vitest-angular:test": "vitest",
}
# Angular 17's experimental Jest builder: its schema refuses `--reporters` (additionalProperties
# false) and it runs Jest with its own empty config, so no JUnit report can come out of it
_EXPERIMENTAL_JEST = "@angular-devkit/build-angular:jest"
# builders that write the browser files to <outputPath>/browser (esbuild `application`)
_APPLICATION_BUILDERS = (
    "@angular-devkit/build-angular:application",
    "@angular/build:application",
)


@dataclass(frozen=True)
class AppInfo:
    """A web front-end to build: its directory, names, versions and test runner."""

    root: Path
    name: str  # the project (Angular) or the package name: names the image and the pipeline
    angular_major: int | None  # None: not an Angular app
    output_dir: str  # the browser files after the production build, relative to root
    runner: str  # karma | jest | vitest
    build_command: str
    node_major: int
    project: str = ""  # the angular.json project, if any

    @property
    def kind(self) -> str:
        return f"Angular {self.angular_major}" if self.angular_major else "Node"


@dataclass(frozen=True)
class TestsInfo:
    """An end-to-end suite run against the deployed app (BASE_URL)."""

    root: Path
    kind: str  # pytest-selenium | playwright
    requirements: str | None  # requirements.txt, relative to root, if any

    @property
    def label(self) -> str:
        return {"pytest-selenium": "pytest + Selenium", "playwright": "Playwright (Python)"}[
            self.kind
        ]


def _json(path: Path) -> dict[str, Any]:
    data = read_json(path, ConfigError, "; fix the file and run init again")
    if not isinstance(data, dict):
        raise ConfigError(f"{path}:1: expected a JSON object")
    return data


def major(spec: object) -> int | None:
    """`^17.3.0`, `~21.2.26`, `17` -> the major version; None when there is none."""
    if not isinstance(spec, str):
        return None
    m = re.search(r"(\d+)", spec)
    return int(m.group(1)) if m else None


def _dependencies(pkg: dict[str, Any]) -> dict[str, str]:
    deps: dict[str, str] = {}
    for key in ("dependencies", "devDependencies"):
        section = pkg.get(key)
        if isinstance(section, dict):
            deps.update({str(k): str(v) for k, v in section.items()})
    return deps


def _line_of(path: Path, needle: str) -> int:
    try:
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if needle in line:
                return i
    except OSError:
        pass
    return 1


def detect_app(root: Path, project: str | None = None) -> AppInfo:
    """The app in `root`; ConfigError (one line, exit 2) when it is not one we can build."""
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"--app {root}: no such directory")
    pkg_file = root / "package.json"
    if not pkg_file.is_file():
        raise ConfigError(
            f"{root}: not an Angular or Node app (no package.json); point --app at the "
            "directory that holds package.json"
        )
    pkg = _json(pkg_file)
    deps = _dependencies(pkg)
    engines = pkg.get("engines")
    node_major = major(engines.get("node")) if isinstance(engines, dict) else None
    ng_file = root / "angular.json"
    if ng_file.is_file():
        return _angular(root, pkg, deps, ng_file, project, node_major)
    scripts = pkg.get("scripts") if isinstance(pkg.get("scripts"), dict) else {}
    assert isinstance(scripts, dict)
    if "build" not in scripts:
        raise ConfigError(
            f"{pkg_file}:1: not an Angular app (no angular.json) and no `build` script: "
            'add one that writes the static files (e.g. "build": "vite build")'
        )
    runner = next((r for r in ("jest", "vitest", "karma") if r in deps), None)
    if runner is None:
        raise ConfigError(
            f"{pkg_file}:{_line_of(pkg_file, 'devDependencies')}: no unit-test runner found "
            f"(looked for {', '.join(RUNNERS)} in dependencies): add one, or tell init which "
            "by adding it to devDependencies"
        )
    name = _name(str(pkg.get("name") or root.resolve().name))
    out = "build" if "react-scripts" in deps else "dist"
    return AppInfo(root, name, None, out, runner, "npm run build", node_major or 20)


def _angular(
    root: Path,
    pkg: dict[str, Any],
    deps: dict[str, str],
    ng_file: Path,
    project: str | None,
    node_major: int | None,
) -> AppInfo:
    ng = _json(ng_file)
    projects = ng.get("projects")
    if not isinstance(projects, dict) or not projects:
        raise ConfigError(f"{ng_file}:1: no `projects`: not an Angular workspace")
    apps = {
        k: v
        for k, v in projects.items()
        if isinstance(v, dict) and v.get("projectType", "application") == "application"
    }
    if project is not None:
        if project not in projects:
            raise ConfigError(
                f"--project {project}: not in {ng_file} (projects: {', '.join(sorted(projects))})"
            )
        chosen = project
    elif len(apps) == 1:
        chosen = next(iter(apps))
    else:
        raise ConfigError(
            f"{ng_file}:{_line_of(ng_file, PROJECTS_KEY)}: {len(apps)} application projects "
            f"({', '.join(sorted(apps)) or 'none'}): choose one with --project NAME"
        )
    proj = projects[chosen]
    quoted = f'"{chosen}"'
    architect = proj.get("architect") or proj.get("targets") or {}
    build = architect.get("build") if isinstance(architect, dict) else None
    if not isinstance(build, dict):
        raise ConfigError(
            f"{ng_file}:{_line_of(ng_file, quoted)}: project '{chosen}' has no "
            "`build` target; init builds with `ng build`"
        )
    builder = str(build.get("builder", ""))
    options = build.get("options") if isinstance(build.get("options"), dict) else {}
    assert isinstance(options, dict)
    out = options.get("outputPath")
    browser = "browser"
    if isinstance(out, dict):
        browser = str(out.get("browser", "browser"))
        out = out.get("base")
    base = str(out or f"dist/{chosen}").rstrip("/")
    if builder in _APPLICATION_BUILDERS:
        output_dir = f"{base}/{browser}" if browser else base
    else:
        output_dir = base
    test = architect.get("test") if isinstance(architect, dict) else None
    runner = _runner(test, deps, ng_file, chosen)
    angular_major = major(deps.get("@angular/core")) or major(deps.get("@angular/cli"))
    if node_major is None:
        node_major = 20 if (angular_major or 0) >= 17 else 18
    return AppInfo(
        root, _name(chosen), angular_major, output_dir, runner, "npx ng build", node_major, chosen
    )


def _runner(test: Any, deps: dict[str, str], ng_file: Path, project: str) -> str:
    quoted = f'"{project}"'
    if not isinstance(test, dict):
        raise ConfigError(
            f"{ng_file}:{_line_of(ng_file, quoted)}: project '{project}' has no "
            "`test` target: add one (ng generate config karma, or the unit-test builder)"
        )
    builder = str(test.get("builder", ""))
    if builder == _EXPERIMENTAL_JEST:
        raise ConfigError(
            f"{ng_file}:{_line_of(ng_file, builder)}: test builder '{builder}' of project "
            f"'{project}' takes no Jest options and ignores jest.config, so it cannot write "
            "a JUnit report: use '@angular-builders/jest:run' (npm i -D @angular-builders/jest)"
        )
    runner = _BUILDERS.get(builder)
    if builder == "@angular/build:unit-test":
        opts = test.get("options") if isinstance(test.get("options"), dict) else {}
        assert isinstance(opts, dict)
        runner = str(opts.get("runner", "vitest"))
    if not runner or runner not in RUNNERS:
        raise ConfigError(
            f"{ng_file}:{_line_of(ng_file, builder) if builder else 1}: test builder "
            f"'{builder or '(none)'}' of project '{project}' is not one init knows "
            f"(known: Karma, Jest, Vitest; builders: {', '.join(b for b, r in _BUILDERS.items() if r)})"
        )
    return runner


def _name(text: str) -> str:
    """A name usable as image repository, pipeline, repo and namespace: `@org/My_App` -> `my-app`."""
    base = text.rsplit("/", 1)[-1].lower()
    name = re.sub(r"[^a-z0-9-]+", "-", base).strip("-")
    return name[:40].strip("-") or "app"


# ---- the end-to-end suite ------------------------------------------------------------------------

_CYPRESS_REASON = (
    "Cypress is not supported here: its npm package downloads the Cypress binary "
    "(Electron) from download.cypress.io at install, which a machine that reaches only the "
    "npm registry, PyPI and Debian cannot fetch; port the suite to pytest + Selenium or "
    "Playwright for Python (both drive Debian's chromium)"
)


_SKIPPED_DIRS = {"node_modules", "venv", "__pycache__", "reports", "site-packages"}


def _texts(root: Path) -> str:
    parts = []
    for pattern in ("requirements*.txt", "pyproject.toml", "setup.cfg", "conftest.py"):
        for f in sorted(root.glob(pattern)):
            parts.append(f.read_text(encoding="utf-8", errors="replace"))
    sources: list[Path] = []
    for top, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in _SKIPPED_DIRS and not d.startswith("."))
        sources += [Path(top) / n for n in sorted(names) if n.endswith(".py")]
        if len(sources) >= 200:
            break
    for f in sources[:200]:
        parts.append(f.read_text(encoding="utf-8", errors="replace")[:20_000])
    return "\n".join(parts).lower()


def detect_tests(root: Path) -> TestsInfo:
    """The end-to-end suite in `root`; ConfigError (one line, exit 2) when it is not one we
    can run here."""
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"--tests {root}: no such directory")
    cypress = [p for p in root.glob("cypress.config.*")] + [
        p for p in (root / "cypress.json",) if p.is_file()
    ]
    pkg = root / "package.json"
    if not cypress and pkg.is_file() and "cypress" in _dependencies(_json(pkg)):
        cypress = [pkg]
    if cypress:
        raise ConfigError(f"{cypress[0]}:1: {_CYPRESS_REASON}")
    text = _texts(root)
    req = next((f.name for f in sorted(root.glob("requirements*.txt"))), None)
    if "playwright" in text:
        return TestsInfo(root, "playwright", req)
    if "selenium" in text:
        return TestsInfo(root, "pytest-selenium", req)
    raise ConfigError(
        f"--tests {root}: no end-to-end suite init knows (looked for pytest + Selenium, "
        "Playwright for Python, Cypress in requirements*.txt, pyproject.toml and *.py); "
        "leave out --tests to generate a pipeline without the end-to-end stage"
    )
