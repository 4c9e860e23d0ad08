"""The JUnit reporter set-up a unit-test runner needs, as file changes shown as a diff.

- Karma: the `karma-junit-reporter` plugin (package.json devDependency and the lock file),
  a karma.conf.js that loads it, writes reports/unit-junit.xml and defines ChromeHeadlessCI
  (headless Chromium with --no-sandbox: CodeBuild and Conveyor run as root), and angular.json
  pointing the test target at that karma.conf.js.
- Jest: the `jest-junit` devDependency (the buildspec sets its output by JEST_JUNIT_*).
- Vitest: nothing (its junit reporter is built in).

The lock file is brought up to date by `npm install --package-lock-only` in a scratch copy,
so nothing in the app changes until every new text is known.
"""

from __future__ import annotations

import difflib
import json
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conveyor.errors import ConfigError, Unavailable
from conveyor.scaffold.detect import AppInfo

KARMA_JUNIT = ("karma-junit-reporter", "^2.0.1")
JEST_JUNIT = ("jest-junit", "^16.0.0")

KARMA_CONF = """\
// Karma configuration for `ng test` (written by `conveyor init --app`): the Angular CLI's
// defaults plus a JUnit report (reports/unit-junit.xml) and ChromeHeadlessCI, headless
// Chromium that runs as root (CodeBuild, Conveyor). CHROME_BIN names the browser.
module.exports = function (config) {
  config.set({
    basePath: '',
    frameworks: ['jasmine', '@angular-devkit/build-angular'],
    plugins: [
      require('karma-jasmine'),
      require('karma-chrome-launcher'),
      require('karma-jasmine-html-reporter'),
      require('karma-coverage'),
      require('karma-junit-reporter'),
      require('@angular-devkit/build-angular/plugins/karma')
    ],
    client: {
      jasmine: {},
      clearContext: false
    },
    jasmineHtmlReporter: {
      suppressAll: true
    },
    coverageReporter: {
      dir: require('path').join(__dirname, './coverage'),
      subdir: '.',
      reporters: [{ type: 'html' }, { type: 'text-summary' }]
    },
    junitReporter: {
      outputDir: require('path').join(__dirname, 'reports'),
      outputFile: 'unit-junit.xml',
      useBrowserName: false
    },
    customLaunchers: {
      ChromeHeadlessCI: {
        base: 'ChromeHeadless',
        flags: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage']
      }
    },
    reporters: ['progress', 'kjhtml', 'junit'],
    browsers: ['Chrome'],
    restartOnFileChange: true
  });
};
"""


@dataclass(frozen=True)
class Change:
    """A file's new text; `old` is None for a new file."""

    path: Path
    old: str | None
    new: str

    def diff(self, root: Path) -> str:
        rel = self.path.relative_to(root).as_posix()
        lines = difflib.unified_diff(
            (self.old or "").splitlines(keepends=True),
            self.new.splitlines(keepends=True),
            fromfile="/dev/null" if self.old is None else f"a/{rel}",
            tofile=f"b/{rel}",
        )
        return "".join(lines)


def reporter_changes(app: AppInfo, *, lock: bool = True) -> list[Change]:
    """The changes that make the app's unit tests write reports/unit-junit.xml; [] when none
    are needed. `lock=False` leaves package-lock.json alone (for showing the diff only)."""
    if app.runner == "karma" and app.angular_major:
        return _karma(app, lock)
    if app.runner == "jest":
        return _dev_dependency(app, *JEST_JUNIT, lock=lock)
    return []


def _karma(app: AppInfo, lock: bool) -> list[Change]:
    root = app.root
    changes: list[Change] = []
    ng_file = root / "angular.json"
    text = ng_file.read_text(encoding="utf-8")
    ng = json.loads(text)
    options = _test_target(ng, app).setdefault("options", {})
    configured = options.get("karmaConfig")
    conf = root / str(configured or "karma.conf.js")
    if conf.is_file():
        old = conf.read_text(encoding="utf-8")
        if "karma-junit-reporter" not in old:
            changes.append(Change(conf, old, _patch_karma_conf(conf, old)))
    else:
        changes.append(Change(conf, None, KARMA_CONF))
    if not configured:
        options["karmaConfig"] = "karma.conf.js"
        changes.append(Change(ng_file, text, _dump(ng, text)))
    changes += _dev_dependency(app, *KARMA_JUNIT, lock=lock)
    return changes


def _test_target(ng: dict[str, Any], app: AppInfo) -> dict[str, Any]:
    proj = ng.get("projects", {}).get(app.project)
    if isinstance(proj, dict):
        targets = proj.get("architect") or proj.get("targets") or {}
        test = targets.get("test")
        if isinstance(test, dict):
            return test
    raise ConfigError(f"{app.root / 'angular.json'}: no test target for project '{app.name}'")


def _patch_karma_conf(path: Path, text: str) -> str:
    """An existing karma.conf.js with the junit plugin, reporter and ChromeHeadlessCI added."""
    out = text
    plugins = re.search(r"plugins\s*:\s*\[", out)
    reporters = re.search(r"reporters\s*:\s*\[([^\]]*)\]", out)
    browsers = re.search(r"\n(\s*)browsers\s*:", out)
    if not (plugins and reporters and browsers):
        raise ConfigError(
            f"{path}:1: cannot find `plugins: [`, `reporters: [...]` and `browsers:` to add the "
            "JUnit reporter; add require('karma-junit-reporter') to plugins, 'junit' to "
            "reporters, and a junitReporter {outputDir: 'reports', outputFile: "
            "'unit-junit.xml', useBrowserName: false}, then run init again"
        )
    indent = browsers.group(1)
    block = (
        f"\n{indent}junitReporter: {{\n{indent}  outputDir: require('path').join(__dirname, "
        f"'reports'),\n{indent}  outputFile: 'unit-junit.xml',\n{indent}  useBrowserName: false"
        f"\n{indent}}},\n{indent}customLaunchers: {{\n{indent}  ChromeHeadlessCI: {{\n{indent}"
        f"    base: 'ChromeHeadless',\n{indent}    flags: ['--no-sandbox', '--disable-gpu', "
        f"'--disable-dev-shm-usage']\n{indent}  }}\n{indent}}},"
    )
    out = out[: browsers.start()] + block + out[browsers.start() :]
    reporters = re.search(r"reporters\s*:\s*\[([^\]]*)\]", out)
    assert reporters is not None
    inner = reporters.group(1).rstrip()
    sep = ", " if inner.strip() else ""
    out = out[: reporters.start(1)] + inner + f"{sep}'junit'" + out[reporters.end(1) :]
    plugins = re.search(r"plugins\s*:\s*\[", out)
    assert plugins is not None
    m = re.search(r"\n(\s*)\S", out[plugins.end() :])
    item_indent = m.group(1) if m else "      "
    insert = f"\n{item_indent}require('karma-junit-reporter'),"
    return out[: plugins.end()] + insert + out[plugins.end() :]


def _dump(data: dict[str, Any], like: str) -> str:
    m = re.search(r"\n( +)\"", like)
    indent = len(m.group(1)) if m else 2
    return json.dumps(data, indent=indent) + "\n"


def _dev_dependency(app: AppInfo, name: str, version: str, *, lock: bool) -> list[Change]:
    pkg_file = app.root / "package.json"
    text = pkg_file.read_text(encoding="utf-8")
    pkg = json.loads(text)
    dev = pkg.setdefault("devDependencies", {})
    if name in dev or name in pkg.get("dependencies", {}):
        return []
    dev[name] = version
    pkg["devDependencies"] = dict(sorted(dev.items()))
    new = _dump(pkg, text)
    changes = [Change(pkg_file, text, new)]
    lock_file = app.root / "package-lock.json"
    if lock and lock_file.is_file():
        changes.append(Change(lock_file, lock_file.read_text(encoding="utf-8"), _lock(app, new)))
    return changes


def _lock(app: AppInfo, package_json: str) -> str:
    """package-lock.json for the new package.json, computed in a scratch directory."""
    npm = shutil.which("npm")
    if npm is None:
        raise Unavailable("npm is not on PATH: it updates package-lock.json (install Node.js)")
    with tempfile.TemporaryDirectory(prefix="conveyor-init-") as tmp:
        scratch = Path(tmp)
        (scratch / "package.json").write_text(package_json, encoding="utf-8")
        shutil.copy2(app.root / "package-lock.json", scratch / "package-lock.json")
        base = [npm, "install", "--package-lock-only", "--no-audit", "--no-fund"]
        # cached metadata first; npm does not revalidate it when a version is missing from it
        # (ETARGET), so that failure, and only that one, retries once with fresh metadata
        for cmd in ([*base, "--prefer-offline"], base):
            res = subprocess.run(
                cmd, cwd=scratch, capture_output=True, text=True, timeout=600, check=False
            )
            if res.returncode == 0 or "ETARGET" not in res.stderr:
                break
        if res.returncode != 0:
            lines = res.stderr.strip().splitlines() or ["(no output)"]
            # npm's own reason (`npm error code ETARGET`, `npm error notarget ...`), not the
            # closing "A complete log of this run can be found in ..."
            said = [ln for ln in lines if ln.startswith("npm error") and "complete log" not in ln]
            raise Unavailable(
                "npm install --package-lock-only failed: " + "; ".join(said[:2] or lines[-1:])
            )
        return (scratch / "package-lock.json").read_text(encoding="utf-8")
