"""Test report files (JUnit XML, Cucumber JSON, NUnit, TestNG, TRX) read into `Report`s.

One report group (a `reports:` entry of a buildspec) is many files of one format; each
is parsed and the totals summed. A file that cannot be read raises `ReportFileError`
naming the file and, for XML and JSON, the line and column. Code-coverage formats
(Clover, Cobertura, JaCoCo, SimpleCov) are not summarised: `UnsupportedReportFormat`.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from conveyor.adapters.jsonfile import read_json
from conveyor.model.report import Report


class ReportFileError(Exception):
    """A report file that is missing, not well-formed, or not of the declared format."""


class UnsupportedReportFormat(Exception):
    """A format CodeBuild knows that Conveyor does not summarise."""


def _count(
    c: Report, status: str, suite: str, name: str, message: str = "", seconds: float = 0.0
) -> None:
    """Count one test case of `status` into the group's summary."""
    c.total += 1
    c.duration_seconds += seconds
    if status == "passed":
        c.passed += 1
    elif status == "skipped":
        c.skipped += 1
    else:
        if status == "error":
            c.errors += 1
        else:
            c.failed += 1
        c.failures.append(
            {"suite": suite, "name": name, "message": _first_lines(message), "status": status}
        )


def _first_lines(text: str, limit: int = 500) -> str:
    text = (text or "").strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _seconds(v: Any) -> float:
    try:
        return float(str(v).replace(",", ""))
    except (TypeError, ValueError):
        return 0.0


def _xml(path: Path) -> ET.Element:
    try:
        return ET.parse(path).getroot()
    except ET.ParseError as e:
        line, col = e.position
        raise ReportFileError(
            f"{path}: not valid XML at line {line}, column {col + 1}: {str(e).split(':')[0]}"
        ) from None
    except OSError as e:
        raise ReportFileError(f"{path}: cannot read: {e.strerror}") from None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _junit(path: Path, c: Report) -> None:
    root = _xml(path)
    if _local(root.tag) not in ("testsuites", "testsuite"):
        raise ReportFileError(
            f"{path}: not a JUnit XML report (root element <{_local(root.tag)}>, "
            "expected <testsuites> or <testsuite>)"
        )
    for suite in root.iter():
        if _local(suite.tag) != "testsuite":
            continue
        sname = suite.get("name", "")
        for case in suite:
            if _local(case.tag) != "testcase":
                continue
            name = case.get("name", "")
            cls = case.get("classname")
            full = f"{cls}.{name}" if cls and cls != sname else name
            status, message = "passed", ""
            for child in case:
                tag = _local(child.tag)
                if tag in ("failure", "error"):
                    status = "failed" if tag == "failure" else "error"
                    message = child.get("message") or child.text or child.get("type") or ""
                    break
                if tag == "skipped":
                    status = "skipped"
            _count(c, status, sname, full, message, _seconds(case.get("time")))


def _cucumber(path: Path, c: Report) -> None:
    data = read_json(path, ReportFileError)
    if not isinstance(data, list):
        raise ReportFileError(f"{path}: not a Cucumber JSON report (expected a list of features)")
    for feature in data:
        if not isinstance(feature, dict):
            raise ReportFileError(
                f"{path}: not a Cucumber JSON report (a feature is not an object)"
            )
        fname = str(feature.get("name") or feature.get("uri") or "")
        for el in feature.get("elements") or []:
            if not isinstance(el, dict) or el.get("type") == "background":
                continue
            statuses: list[str] = []
            message = ""
            nanos = 0
            for step in [
                *(el.get("before") or []),
                *(el.get("steps") or []),
                *(el.get("after") or []),
            ]:
                result = step.get("result") or {} if isinstance(step, dict) else {}
                st = str(result.get("status", "undefined"))
                statuses.append(st)
                nanos += int(result.get("duration") or 0)
                if st == "failed" and not message:
                    message = str(
                        result.get("error_message") or f"step failed: {step.get('name', '')}"
                    )
            if "failed" in statuses:
                status = "failed"
            elif any(s in ("skipped", "pending", "undefined", "ambiguous") for s in statuses):
                status = "skipped"
            else:
                status = "passed"
            _count(c, status, fname, str(el.get("name", "")), message, nanos / 1e9)


def _nunit(path: Path, c: Report) -> None:
    root = _xml(path)
    for case in root.iter("test-case"):
        suite = case.get("classname") or case.get("fullname", "").rsplit(".", 1)[0]
        name = case.get("name", "")
        result = (case.get("result") or "").lower()
        executed = case.get("executed", "True").lower() != "false"
        msg_el = case.find("./failure/message")
        if msg_el is None:
            msg_el = case.find("./reason/message")
        message = (msg_el.text or "") if msg_el is not None else ""
        if not executed or result in ("skipped", "ignored", "inconclusive", "notrunnable"):
            status = "skipped"
        elif result in ("failed", "failure"):
            status = "failed"
        elif result == "error":
            status = "error"
        else:
            status = "passed"
        _count(c, status, suite, name, message, _seconds(case.get("duration") or case.get("time")))


def _testng(path: Path, c: Report) -> None:
    root = _xml(path)
    for cls in root.iter("class"):
        for m in cls.iter("test-method"):
            if m.get("is-config", "false").lower() == "true":
                continue
            st = (m.get("status") or "").upper()
            status = {"PASS": "passed", "FAIL": "failed", "SKIP": "skipped"}.get(st, "error")
            msg_el = m.find("./exception/message")
            message = (
                (msg_el.text or "")
                if msg_el is not None
                else m.findtext("./exception/full-stacktrace", "")
            )
            _count(
                c,
                status,
                cls.get("name", ""),
                m.get("name", ""),
                message,
                _seconds(m.get("duration-ms")) / 1000,
            )


def _trx(path: Path, c: Report) -> None:
    root = _xml(path)
    for r in root.iter():
        if _local(r.tag) != "UnitTestResult":
            continue
        outcome = (r.get("outcome") or "").lower()
        status = {
            "passed": "passed",
            "failed": "failed",
            "notexecuted": "skipped",
            "inconclusive": "skipped",
        }.get(outcome, "error")
        message = ""
        for el in r.iter():
            if _local(el.tag) == "Message" and el.text:
                message = el.text
                break
        dur = r.get("duration", "0:0:0")
        try:
            h, m, s = dur.split(":")
            seconds = int(h) * 3600 + int(m) * 60 + float(s)
        except ValueError:
            seconds = 0.0
        _count(c, status, "", r.get("testName", ""), message, seconds)


PARSERS: dict[str, Callable[[Path, Report], None]] = {
    "JUNITXML": _junit,
    "CUCUMBERJSON": _cucumber,
    "NUNITXML": _nunit,
    "NUNIT3XML": _nunit,
    "TESTNGXML": _testng,
    "VISUALSTUDIOTRX": _trx,
}
COVERAGE = ("CLOVERXML", "COBERTURAXML", "JACOCOXML", "SIMPLECOV")


def parse_report(
    group: str, file_format: str, files: Sequence[Path], display: Callable[[Path], str] = str
) -> tuple[Report, list[str]]:
    """Parse every file of one report group; returns the Report and per-file problems.

    A file that cannot be parsed does not stop the others: its problem is returned (the
    report then counts only the files that were read).
    """
    fmt = file_format.upper()
    if fmt in COVERAGE:
        raise UnsupportedReportFormat(
            f"report group {group}: code-coverage format {fmt} is not summarised by Conveyor "
            f"(test formats are: {', '.join(PARSERS)}); the files are kept with the build"
        )
    parser = PARSERS.get(fmt)
    if parser is None:
        raise UnsupportedReportFormat(f"report group {group}: unknown report format {fmt!r}")
    report = Report(name=group, format=fmt, files=[display(f) for f in files])
    problems: list[str] = []
    for f in files:
        try:
            parser(f, report)
        except ReportFileError as e:
            problems.append(f"report group {group}: {str(e).replace(str(f), display(f), 1)}")
    report.duration_seconds = round(report.duration_seconds, 3)
    return report, problems
