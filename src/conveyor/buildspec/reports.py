"""Test reports: each `reports` group's files copied out of the build (secrets masked) and
parsed into a summary (adapters/reports.py reads the formats)."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from conveyor.adapters import reports as report_files
from conveyor.buildspec.context import BuildContext
from conveyor.buildspec.files import match_files, missing_dir
from conveyor.buildspec.result import BuildStopped
from conveyor.model.masking import Masker


def collect_reports(ctx: BuildContext, quiet: bool = False) -> None:
    spec, result = ctx.spec, ctx.result
    report_root = ctx.report_dir or ctx.workdir / "reports"
    for rs in spec.reports:
        try:
            alive = ctx.session.proc is not None or not ctx.session.stopped
            bases = ctx.bases(rs.base_directory) if alive else [ctx.src]
        except BuildStopped:
            bases = [ctx.src]
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", rs.group.rsplit("/", 1)[-1])
        dest = report_root / safe
        files: list[Path] = []
        for base in bases:
            if not base.is_dir():
                continue
            for pattern in rs.files:
                for rel in match_files(base, pattern):
                    src_file = base / rel
                    if not src_file.is_file():
                        continue
                    target = dest / (os.path.basename(rel) if rs.discard_paths else rel)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(src_file, target)
                    _mask_file(target, ctx.masker)
                    files.append(target)
        if not files:
            gone = [b for b in bases if not b.is_dir()]
            msg = f"report group {rs.group}: no report files matched {', '.join(rs.files)}" + (
                f" in {rs.base_directory}" if rs.base_directory else ""
            )
            if rs.base_directory and (gone or not bases):
                msg += f" (base-directory {gone[0] if gone else rs.base_directory} does not exist)"
            else:
                msg += "".join(missing_dir(bases, p) for p in rs.files[:1])
            if not quiet:
                ctx.log(f"[Container] WARNING: {msg}\n")
            result.warnings.append(msg)
            continue
        try:
            report, problems = report_files.parse_report(
                rs.group,
                rs.file_format,
                files,
                display=lambda p: os.path.relpath(p, report_root.parent),
            )
        except report_files.UnsupportedReportFormat as e:
            ctx.log(f"[Container] WARNING: {e}\n")
            result.warnings.append(str(e))
            continue
        for p in problems:
            ctx.log(f"[Container] WARNING: {p}\n")
            result.warnings.append(p)
        report.failures = [
            {k: ctx.masker.mask(str(v)) for k, v in f.items()} for f in report.failures
        ]
        result.reports.append(report)
        ctx.log(
            f"[Container] Report {rs.group} ({report.format}): {report.total} tests, "
            f"{report.passed} "
            f"passed, {report.failed} failed, {report.errors} errors, {report.skipped} skipped\n"
        )


def _mask_file(path: Path, masker: Masker) -> None:
    """Mask secrets in a copied text report (the copy others read), in place."""
    if not masker:
        return
    try:
        text = path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return  # a screenshot or another binary file
    masked = masker.mask(text)
    if masked != text:
        path.write_text(masked, encoding="utf-8")
