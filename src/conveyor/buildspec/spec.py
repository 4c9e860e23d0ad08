"""CodeBuild buildspec files (versions 0.1 and 0.2) parsed into frozen values.

`load_buildspec(path)` reads a file, `parse_buildspec(text, name)` reads the inline form (a
buildspec given as a string in a pipeline action's config, or the single-string form the
AWS CLI takes). Both collect *every* problem, each located `file:line`, and raise
`ValidationFailed` with all of them: invalid YAML (line and column), unknown keys and
phase names (with a did-you-mean), wrong value types, unsupported forms, and buildspecs
written for a Windows build environment (PowerShell / cmd), which a Linux runner cannot run.

What is accepted follows the CodeBuild buildspec reference: `version`, `run-as`, `env`
(`shell`, `variables`, `parameter-store`, `secrets-manager`, `exported-variables`,
`git-credential-helper`), `proxy`, `batch`, `phases` (`install`, `pre_build`, `build`,
`post_build` with `run-as`, `on-failure`, `runtime-versions` (install only), `commands`,
`finally`), `reports`, `artifacts` (with `secondary-artifacts`) and `cache`.

Batch builds: `build-list` and `build-graph` are supported (run one after the other, in
`depend-on` order); `build-matrix` and `build-fanout` are rejected with a message saying
how to express the builds as a `build-list`.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq, TaggedScalar
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from conveyor.errors import ConfigError, Problem, ValidationFailed
from conveyor.spec import limits

PHASE_NAMES = ("install", "pre_build", "build", "post_build")
TOP_KEYS = ("version", "run-as", "env", "proxy", "batch", "phases", "reports", "artifacts", "cache")
ENV_KEYS = (
    "shell",
    "variables",
    "parameter-store",
    "exported-variables",
    "secrets-manager",
    "git-credential-helper",
)
PHASE_KEYS = ("run-as", "on-failure", "runtime-versions", "commands", "finally")
ARTIFACT_KEYS = (
    "files",
    "name",
    "discard-paths",
    "base-directory",
    "exclude-paths",
    "enable-symlinks",
    "s3-prefix",
    "secondary-artifacts",
)
REPORT_KEYS = ("files", "base-directory", "discard-paths", "file-format")
CACHE_KEYS = ("paths", "key", "fallback-keys", "action")
PROXY_KEYS = ("upload-artifacts", "logs")
BATCH_KEYS = ("fast-fail", "build-list", "build-graph", "build-matrix", "build-fanout")
BATCH_BUILD_KEYS = (
    "identifier",
    "buildspec",
    "env",
    "depend-on",
    "ignore-failure",
    "debug-session",
)
BATCH_ENV_KEYS = ("compute-type", "image", "privileged-mode", "type", "variables", "fleet")
LINUX_SHELLS = {"bash": "bash", "/bin/bash": "bash", "sh": "sh", "/bin/sh": "sh"}
WINDOWS_SHELLS = ("powershell", "powershell.exe", "pwsh", "pwsh.exe", "cmd", "cmd.exe")
TEST_REPORT_FORMATS = (
    "JUNITXML",
    "CUCUMBERJSON",
    "NUNITXML",
    "NUNIT3XML",
    "TESTNGXML",
    "VISUALSTUDIOTRX",
)
COVERAGE_REPORT_FORMATS = ("CLOVERXML", "COBERTURAXML", "JACOCOXML", "SIMPLECOV")
MAX_REPORT_GROUPS = 5

_ON_FAILURE = re.compile(r"^(ABORT|CONTINUE|RETRY)(?:-(\d+))?(?:-(.+))?$", re.S)
_POWERSHELL = re.compile(
    r"\$env:\w+|\b(?:Invoke-WebRequest|Invoke-RestMethod|Get-ChildItem|Set-Location|"
    r"Write-Host|Write-Output|Select-Object|Where-Object|ForEach-Object|Join-Path|"
    r"Copy-Item|Remove-Item|New-Item|Test-Path|Start-Process|Resolve-Path|Get-Content|"
    r"Set-Content|Expand-Archive|Out-File)\b|\[Net\.ServicePointManager\]|\$LastExitCode\b",
    re.IGNORECASE,
)

# bash-only syntax that `sh` (CodeBuild's default shell on Linux) does not run
_BASH_ONLY = (
    (
        re.compile(r"(?:^|[;&|({]\s*|\b(?:then|do|else)\s+)source\s+\S"),
        "`source` is bash-only: write `. FILE` instead, or set `env.shell: bash`",
    ),
    (
        re.compile(r"\[\[\s"),
        "`[[ ]]` is bash-only: use `[ ]`, or set `env.shell: bash`",
    ),
    (
        re.compile(r"(?:^|[\s;])[A-Za-z_]\w*=\(|\$\{[A-Za-z_]\w*\[|\bdeclare\s+-[aA]\b"),
        "arrays are bash-only: set `env.shell: bash`, or use plain variables",
    ),
)


# ---------------------------------------------------------------- the model


@dataclass(frozen=True)
class Command:
    text: str
    line: int | None = None


@dataclass(frozen=True)
class OnFailure:
    """`on-failure`: ABORT, CONTINUE, or RETRY[-count][-regex] (count 0-100, default 3)."""

    mode: str  # ABORT | CONTINUE | RETRY
    retries: int = 0
    pattern: str | None = None

    def __str__(self) -> str:
        if self.mode != "RETRY":
            return self.mode
        return "-".join(["RETRY", str(self.retries), *([self.pattern] if self.pattern else [])])


@dataclass(frozen=True)
class Phase:
    name: str
    commands: tuple[Command, ...] = ()
    finally_: tuple[Command, ...] = ()
    on_failure: OnFailure | None = None
    run_as: str | None = None
    runtime_versions: Mapping[str, str] = field(default_factory=dict)
    line: int | None = None


@dataclass(frozen=True)
class Env:
    shell: str = "sh"  # sh | bash
    variables: Mapping[str, str] = field(default_factory=dict)
    parameter_store: Mapping[str, str] = field(default_factory=dict)
    secrets_manager: Mapping[str, str] = field(default_factory=dict)
    exported_variables: tuple[str, ...] = ()
    git_credential_helper: bool = False


@dataclass(frozen=True)
class ArtifactSpec:
    identifier: str | None  # None: the primary artifact
    files: tuple[str, ...]
    name: str | None = None
    base_directory: str | None = None
    discard_paths: bool = False
    exclude_paths: tuple[str, ...] = ()
    enable_symlinks: bool = False
    s3_prefix: str | None = None
    line: int | None = None


@dataclass(frozen=True)
class Artifacts:
    primary: ArtifactSpec
    secondary: tuple[ArtifactSpec, ...] = ()


@dataclass(frozen=True)
class ReportSpec:
    group: str
    files: tuple[str, ...]
    base_directory: str | None = None
    discard_paths: bool = False
    file_format: str = "JUNITXML"
    line: int | None = None


@dataclass(frozen=True)
class CacheSpec:
    paths: tuple[str, ...]
    key: str | None = None
    fallback_keys: tuple[str, ...] = ()
    action: str | None = None  # restore | save | None (both)


@dataclass(frozen=True)
class BatchBuild:
    identifier: str
    buildspec: str | None = None
    variables: Mapping[str, str] = field(default_factory=dict)
    image: str | None = None
    env_type: str | None = None
    depend_on: tuple[str, ...] = ()
    ignore_failure: bool = False
    line: int | None = None


@dataclass(frozen=True)
class Batch:
    kind: str  # build-list | build-graph
    builds: tuple[BatchBuild, ...]
    fast_fail: bool = False


@dataclass(frozen=True)
class Buildspec:
    file: str
    version: str
    phases: tuple[Phase, ...] = ()
    env: Env = Env()
    run_as: str | None = None
    artifacts: Artifacts | None = None
    reports: tuple[ReportSpec, ...] = ()
    cache: CacheSpec | None = None
    batch: Batch | None = None
    warnings: tuple[Problem, ...] = ()  # valid, but likely not what the author meant

    def phase(self, name: str) -> Phase | None:
        for p in self.phases:
            if p.name == name:
                return p
        return None


# ---------------------------------------------------------------- reading YAML


def _yaml_error(
    label: str, e: MarkedYAMLError, offset: int = 0, source: str | None = None
) -> Problem:
    mark = e.problem_mark or e.context_mark
    line = mark.line + 1 + offset if mark else None
    col = f", column {mark.column + 1}" if mark else ""
    what = (e.problem or "").strip()
    ctx = (e.context or "").strip()
    detail = f"{what} ({ctx})" if what and ctx else (what or ctx or "cannot parse")
    if mark is not None and source is not None:
        detail += _quoted_hint(source, mark.line, mark.column)
    return Problem(label, line, f"invalid YAML at line {line}{col}: {detail}")


def _quoted_hint(source: str, line: int, column: int) -> str:
    """Explain the usual cause when a double-quoted scalar ends before its line does."""
    lines = source.splitlines()
    if line >= len(lines):
        return ""
    text = lines[line]
    if not text.lstrip().startswith('"') or column == 0:
        return ""
    before = text[:column].rstrip()
    if before.endswith('\\\\"'):
        return (
            f'; the double-quoted string ends early at column {len(before)}: `\\\\"` is an '
            'escaped backslash followed by a closing quote (write `\\"` for a quote)'
        )
    if before.endswith('"'):
        return (
            f"; the double-quoted string ends at column {len(before)}, before the end of the line"
        )
    return ""


def _read_yaml(text: str, label: str, offset: int = 0) -> Any:
    limits.check_yaml(text, label, offset)
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    try:
        return yaml.load(text)
    except DuplicateKeyError as e:
        mark = e.problem_mark
        line = mark.line + 1 + offset if mark else None
        raise ValidationFailed(
            [Problem(label, line, f"duplicate key: {e.problem}".strip())]
        ) from None
    except MarkedYAMLError as e:
        raise ValidationFailed([_yaml_error(label, e, offset, text)]) from None
    except (YAMLError, ValueError, RecursionError) as e:
        raise limits.parse_failure(label, e, offset) from None


def load_buildspec(path: str | Path, *, name: str | None = None) -> Buildspec:
    """Read and validate a buildspec file; ValidationFailed lists every problem."""
    p = Path(path)
    label = name or str(path)
    if not p.exists():
        raise ValidationFailed([Problem(label, None, f"buildspec file not found{_near(p)}")])
    if p.is_dir():
        raise ValidationFailed(
            [Problem(label, None, "is a directory, expected a buildspec YAML file")]
        )
    limits.check_file(p, label)
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ValidationFailed(
            [Problem(label, None, f"not UTF-8 text ({e.reason} at byte {e.start})")]
        ) from None
    return parse_buildspec(text, label)


def find_buildspec(source_dir: Path, name: str = "buildspec.yml") -> Path:
    """The buildspec at `name` inside a source directory, or ConfigError with a did-you-mean."""
    candidate = source_dir / name
    if candidate.is_file():
        return candidate
    raise ConfigError(
        f"{candidate}: buildspec file not found{_near(candidate)}; set the action's "
        "`buildspec` to its path inside the source, or give the buildspec inline"
    )


def _near(p: Path) -> str:
    parent = p.parent
    if not parent.is_dir():
        return f" (directory {parent} does not exist)"
    names = sorted(c.name for c in parent.iterdir() if c.is_file())
    close = difflib.get_close_matches(p.name, names, n=2, cutoff=0.7)
    if close:
        return " (did you mean " + " or ".join(f"'{c}'" for c in close) + "?)"
    ymls = [n for n in names if n.endswith((".yml", ".yaml"))]
    return f" (YAML files there: {', '.join(ymls[:8])})" if ymls else ""


def parse_buildspec(
    text: str, name: str = "<inline buildspec>", *, line_offset: int = 0
) -> Buildspec:
    """Parse a buildspec given as text (a file's contents or the inline form in an action).

    `line_offset` shifts reported lines (for a buildspec embedded in a larger YAML file).
    A document that is a single YAML string is read as the AWS CLI single-string form.
    """
    doc = _read_yaml(text, name, line_offset)
    if isinstance(doc, str) and "version" in doc and ":" in doc:
        # the single-string form: the buildspec is the string's contents
        inner = _read_yaml(str(doc), name, line_offset)
        if isinstance(inner, CommentedMap):
            doc = inner
            line_offset = line_offset  # lines refer to the unescaped text, best effort
    return _Parser(name, text, line_offset).buildspec(doc)


# ---------------------------------------------------------------- validation


class _Parser:
    def __init__(self, label: str, text: str, offset: int) -> None:
        self.label = label
        self.source_lines = text.splitlines()
        self.offset = offset
        self.problems: list[Problem] = []
        self.warnings: list[Problem] = []
        self.windows: list[tuple[int | None, str]] = []

    # -- helpers

    def add(self, line: int | None, message: str) -> None:
        self.problems.append(Problem(self.label, line, message))

    def warn(self, line: int | None, message: str) -> None:
        self.warnings.append(Problem(self.label, line, f"warning: {message}"))

    def key_line(self, node: CommentedMap, key: Any) -> int | None:
        try:
            return int(node.lc.key(key)[0]) + 1 + self.offset
        except (KeyError, TypeError, AttributeError):
            return self.node_line(node)

    def node_line(self, node: Any) -> int | None:
        lc = getattr(node, "lc", None)
        if lc is None or lc.line is None:
            return None
        return int(lc.line) + 1 + self.offset

    def item_line(self, seq: CommentedSeq, i: int) -> int | None:
        try:
            return int(seq.lc.item(i)[0]) + 1 + self.offset
        except (KeyError, TypeError, AttributeError, IndexError):
            return self.node_line(seq)

    def unknown_keys(self, node: CommentedMap, allowed: Sequence[str], where: str) -> None:
        for k in node:
            if str(k) in allowed:
                continue
            close = difflib.get_close_matches(str(k), allowed, n=1, cutoff=0.6)
            hint = (
                f" (did you mean '{close[0]}'?)" if close else f" (allowed: {', '.join(allowed)})"
            )
            self.add(self.key_line(node, k), f"unknown key '{k}' in {where}{hint}")

    def section(self, doc: CommentedMap, key: str) -> tuple[int | None, CommentedMap | None]:
        """A top-level section's line and mapping (None when absent or not a mapping)."""
        line = self.key_line(doc, key)
        return line, self.mapping(doc.get(key), line, key)

    def base_directory(self, node: CommentedMap, where: str) -> str | None:
        """`base-directory`, noting a PowerShell variable in it (a Windows buildspec)."""
        base = self.string(node, "base-directory", where)
        if base and _POWERSHELL.search(base):
            self.windows.append(
                (
                    self.key_line(node, "base-directory"),
                    f"PowerShell variable in {where}.base-directory {base!r}",
                )
            )
        return base

    def mapping(self, node: Any, line: int | None, where: str) -> CommentedMap | None:
        if node is None:
            return None
        if not isinstance(node, CommentedMap):
            self.add(line, f"{where} must be a mapping, got {_kind(node)}")
            return None
        return node

    def scalar_text(self, parent: Any, key: Any, value: Any) -> str:
        """A scalar as written: `GCC_VERSION: 4.10` stays '4.10', `true` becomes 'true'."""
        if isinstance(value, TaggedScalar):
            where = self.key_line(parent, key) if isinstance(parent, CommentedMap) else None
            if where is None and isinstance(parent, CommentedSeq):
                where = self.item_line(parent, key)
            self.add(
                where,
                f"`{_tagged(value)}` is a CloudFormation intrinsic: it resolves only inside a "
                "CloudFormation template, not in a buildspec file; write the value itself "
                "(or pass it as an environment variable)",
            )
            return str(value.value)
        if isinstance(value, str):
            return str(value)
        if isinstance(value, bool):
            return "true" if value else "false"
        if value is None:
            return ""
        try:
            ln, col = (
                parent.lc.value(key) if isinstance(parent, CommentedMap) else parent.lc.item(key)
            )
            raw = self.source_lines[ln][col:]
            m = re.match(r"[^\s#,\]\}]+", raw)
            if m and isinstance(value, int | float):
                return m.group(0)
        except (KeyError, TypeError, AttributeError, IndexError):
            pass
        return str(value)

    def boolean(self, node: CommentedMap, key: str, where: str) -> bool:
        v = node.get(key)
        if v is None:
            return False
        if isinstance(v, bool):
            return v
        if isinstance(v, str) and v.strip().lower() in ("yes", "true", "on", "y"):
            return True
        if isinstance(v, str) and v.strip().lower() in ("no", "false", "off", "n"):
            return False
        self.add(
            self.key_line(node, key), f"{where}.{key} must be yes/no (or true/false), got {v!r}"
        )
        return False

    def string(self, node: CommentedMap, key: str, where: str) -> str | None:
        v = node.get(key)
        if v is None:
            return None
        if isinstance(v, CommentedMap | CommentedSeq):
            self.add(self.key_line(node, key), f"{where}.{key} must be a string, got {_kind(v)}")
            return None
        return self.scalar_text(node, key, v)

    def strings(
        self, node: CommentedMap, key: str, where: str, *, one_ok: bool = True
    ) -> tuple[str, ...]:
        v = node.get(key)
        line = self.key_line(node, key)
        if v is None:
            return ()
        if isinstance(v, str) and one_ok:
            return (str(v),)
        if not isinstance(v, CommentedSeq):
            self.add(line, f"{where}.{key} must be a list of strings, got {_kind(v)}")
            return ()
        out: list[str] = []
        for i, item in enumerate(v):
            if isinstance(item, CommentedMap | CommentedSeq) or item is None:
                self.add(
                    self.item_line(v, i), f"{where}.{key}[{i}] must be a string, got {_kind(item)}"
                )
                continue
            out.append(self.scalar_text(v, i, item))
        return tuple(out)

    def str_map(self, node: CommentedMap, key: str, where: str) -> dict[str, str]:
        m = self.mapping(node.get(key), self.key_line(node, key), f"{where}.{key}")
        out: dict[str, str] = {}
        if m is None:
            return out
        for k, v in m.items():
            if isinstance(v, CommentedMap | CommentedSeq):
                self.add(
                    self.key_line(m, k), f"{where}.{key}.{k} must be a scalar value, got {_kind(v)}"
                )
                continue
            out[str(k)] = self.scalar_text(m, k, v)
        return out

    # -- sections

    def buildspec(self, doc: Any) -> Buildspec:
        if doc is None:
            self.add(None, "the buildspec is empty: it needs at least `version: 0.2` and `phases`")
            raise ValidationFailed(self.problems)
        if isinstance(doc, str):
            self.add(
                1 + self.offset,
                "the document is a single YAML string, not a buildspec mapping "
                "(if it is the AWS CLI single-string form, its escaped contents are broken)",
            )
            raise ValidationFailed(self.problems)
        if not isinstance(doc, CommentedMap):
            self.add(self.node_line(doc), f"a buildspec must be a mapping, got {_kind(doc)}")
            raise ValidationFailed(self.problems)
        self.unknown_keys(doc, TOP_KEYS, "the buildspec")
        version = self.version(doc)
        env = self.env(doc)
        run_as = self.string(doc, "run-as", "buildspec")
        phases = self.phases(doc, version)
        batch = self.batch(doc)
        if not phases and batch is None and "phases" not in doc:
            self.add(
                self.node_line(doc),
                "missing required key 'phases' (install, pre_build, build, post_build)",
            )
        if batch is not None and not phases and any(b.buildspec is None for b in batch.builds):
            missing = [b.identifier for b in batch.builds if b.buildspec is None]
            self.add(
                self.key_line(doc, "batch"),
                "batch builds " + ", ".join(missing) + " name no "
                "`buildspec` of their own, and this buildspec has no phases for them to run",
            )
        artifacts = self.artifacts(doc)
        reports = self.reports(doc)
        cache = self.cache(doc)
        if "proxy" in doc:
            proxy = self.mapping(doc["proxy"], self.key_line(doc, "proxy"), "proxy")
            if proxy is not None:
                self.unknown_keys(proxy, PROXY_KEYS, "proxy")
        if self.windows:
            line, what = self.windows[0]
            more = f" (and {len(self.windows) - 1} more place(s))" if len(self.windows) > 1 else ""
            self.add(
                line,
                f"this buildspec needs a Windows build environment: {what}{more}; "
                "Conveyor runs Linux builds (sh/bash) only: run it on a Windows CodeBuild "
                "image, or port its commands to sh/bash",
            )
        if self.problems:
            raise ValidationFailed(sorted(self.problems, key=lambda p: p.line or 0))
        if version == "0.1":
            self.warn(
                self.key_line(doc, "version"),
                "buildspec version 0.1 runs each command in its own shell: `cd` and `export` "
                "do not carry over to the next command; use `version: 0.2`",
            )
        if env.shell == "sh":
            self.bash_only(phases)
        return Buildspec(
            file=self.label,
            version=version,
            phases=phases,
            env=env,
            run_as=run_as,
            artifacts=artifacts,
            reports=reports,
            cache=cache,
            batch=batch,
            warnings=tuple(sorted(self.warnings, key=lambda p: p.line or 0)),
        )

    def bash_only(self, phases: Sequence[Phase]) -> None:
        """Warn about bash-only syntax in a buildspec that runs under `sh`."""
        for phase in phases:
            for cmd in (*phase.commands, *phase.finally_):
                for pattern, advice in _BASH_ONLY:
                    if pattern.search(cmd.text):
                        self.warn(cmd.line, f"this buildspec runs under sh: {advice}")

    def version(self, doc: CommentedMap) -> str:
        if "version" not in doc:
            self.add(self.node_line(doc), "missing required key 'version' (use `version: 0.2`)")
            return "0.2"
        raw = doc["version"]
        v = self.scalar_text(doc, "version", raw).strip()
        if v not in ("0.1", "0.2"):
            self.add(
                self.key_line(doc, "version"),
                f"unsupported buildspec version {v!r}: use 0.2 (or 0.1)",
            )
            return "0.2"
        return v

    def env(self, doc: CommentedMap) -> Env:
        node = self.mapping(doc.get("env"), self.key_line(doc, "env"), "env")
        if node is None:
            return Env()
        self.unknown_keys(node, ENV_KEYS, "env")
        shell = "sh"
        raw_shell = self.string(node, "shell", "env")
        if raw_shell is not None:
            s = raw_shell.strip()
            if s.lower() in WINDOWS_SHELLS:
                self.windows.append((self.key_line(node, "shell"), f"env.shell is {s!r}"))
            elif s in LINUX_SHELLS:
                shell = LINUX_SHELLS[s]
            else:
                self.add(
                    self.key_line(node, "shell"),
                    f"env.shell {s!r} is not a supported shell (Linux: bash, /bin/sh)",
                )
        variables = self.str_map(node, "variables", "env")
        for k in variables:
            if k.startswith("CODEBUILD_"):
                vm = node["variables"]
                self.add(
                    self.key_line(vm, k),
                    f"env.variables.{k}: names starting with CODEBUILD_ "
                    "are reserved for CodeBuild; rename the variable",
                )
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k):
                self.add(
                    self.key_line(node["variables"], k),
                    f"env.variables: {k!r} is not a valid environment variable name",
                )
        params = self.str_map(node, "parameter-store", "env")
        secrets = self.str_map(node, "secrets-manager", "env")
        for key, ref in secrets.items():
            if not ref.strip():
                self.add(
                    self.key_line(node["secrets-manager"], key),
                    f"env.secrets-manager.{key}: empty reference "
                    "(secret-id:json-key:version-stage:version-id)",
                )
        exported = self.strings(node, "exported-variables", "env", one_ok=False)
        for i, name in enumerate(exported):
            line = self.item_line(node["exported-variables"], i)
            if name.startswith("AWS_"):
                self.add(
                    line,
                    f"env.exported-variables: {name} cannot be exported (names starting "
                    "with AWS_ are not exportable)",
                )
            if name in params or name in secrets:
                self.add(
                    line,
                    f"env.exported-variables: {name} is a secret (parameter-store / "
                    "secrets-manager) and cannot be exported",
                )
        gch = self.boolean(node, "git-credential-helper", "env")
        return Env(
            shell=shell,
            variables=variables,
            parameter_store=params,
            secrets_manager=secrets,
            exported_variables=exported,
            git_credential_helper=gch,
        )

    def phases(self, doc: CommentedMap, version: str) -> tuple[Phase, ...]:
        if "phases" not in doc:
            return ()
        node = self.mapping(doc["phases"], self.key_line(doc, "phases"), "phases")
        if node is None:
            if doc["phases"] is None:
                self.add(
                    self.key_line(doc, "phases"),
                    "phases is empty: give at least one of " + ", ".join(PHASE_NAMES),
                )
            return ()
        out: list[Phase] = []
        for k in node:
            name = str(k)
            line = self.key_line(node, k)
            if name not in PHASE_NAMES:
                close = difflib.get_close_matches(name, PHASE_NAMES, n=1, cutoff=0.5)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                self.add(line, f"unknown phase '{name}'{hint}; phases are {', '.join(PHASE_NAMES)}")
                continue
            out.append(self.phase(name, node[k], line, node))
        out.sort(key=lambda p: PHASE_NAMES.index(p.name))
        return tuple(out)

    def phase(self, name: str, raw: Any, line: int | None, parent: CommentedMap) -> Phase:
        where = f"phases.{name}"
        node = self.mapping(raw, line, where)
        if node is None:
            if raw is None:
                self.add(line, f"{where} is empty: give it `commands`")
            return Phase(name=name, line=line)
        self.unknown_keys(node, PHASE_KEYS, where)
        if "runtime-versions" in node and name != "install":
            self.add(
                self.key_line(node, "runtime-versions"),
                f"{where}.runtime-versions: runtime-versions is only allowed in the install phase",
            )
        commands = self.commands(node, "commands", where)
        finally_ = self.commands(node, "finally", where)
        if "commands" not in node and name != "install":
            self.add(line, f"{where}: missing required key 'commands'")
        if "commands" not in node and name == "install" and "runtime-versions" not in node:
            self.add(line, f"{where}: give `commands` or `runtime-versions`")
        on_failure = None
        raw_of = self.string(node, "on-failure", where)
        if raw_of is not None:
            on_failure = self.on_failure(raw_of.strip(), self.key_line(node, "on-failure"), where)
        runtimes: dict[str, str] = {}
        if "runtime-versions" in node:
            runtimes = self.str_map(node, "runtime-versions", where)
            if not runtimes and isinstance(node["runtime-versions"], CommentedMap):
                self.add(
                    self.key_line(node, "runtime-versions"),
                    f"{where}.runtime-versions: give at least one runtime",
                )
        return Phase(
            name=name,
            commands=commands,
            finally_=finally_,
            on_failure=on_failure,
            run_as=self.string(node, "run-as", where),
            runtime_versions=runtimes,
            line=line,
        )

    def commands(self, node: CommentedMap, key: str, where: str) -> tuple[Command, ...]:
        if key not in node:
            return ()
        v = node[key]
        line = self.key_line(node, key)
        if v is None:
            self.add(line, f"{where}.{key} is empty: list at least one command")
            return ()
        if isinstance(v, str):
            self.add(
                line, f"{where}.{key} must be a list of commands (`- command`), got a single string"
            )
            return ()
        if not isinstance(v, CommentedSeq):
            self.add(line, f"{where}.{key} must be a list of commands, got {_kind(v)}")
            return ()
        out: list[Command] = []
        for i, item in enumerate(v):
            il = self.item_line(v, i)
            if isinstance(item, CommentedMap):
                k0 = next(iter(item), "")
                self.add(
                    il,
                    f"{where}.{key}[{i}] is a mapping, not a command: the command contains "
                    f"': ' (after {str(k0)!r}); put the whole command in quotes",
                )
                continue
            if isinstance(item, CommentedSeq) or item is None:
                self.add(il, f"{where}.{key}[{i}] must be a command string, got {_kind(item)}")
                continue
            text = self.scalar_text(v, i, item)
            m = _POWERSHELL.search(text)
            if m:
                self.windows.append((il, f"PowerShell syntax `{m.group(0)}` in {where}.{key}"))
            out.append(Command(text=text, line=il))
        return tuple(out)

    def on_failure(self, raw: str, line: int | None, where: str) -> OnFailure | None:
        m = _ON_FAILURE.match(raw)
        if not m:
            self.add(
                line,
                f"{where}.on-failure {raw!r} is not one of ABORT, CONTINUE, RETRY, "
                "RETRY-count, RETRY-regex, RETRY-count-regex",
            )
            return None
        mode, count, pattern = m.group(1), m.group(2), m.group(3)
        if mode != "RETRY":
            if count or pattern:
                self.add(line, f"{where}.on-failure {raw!r}: only RETRY takes a count or a regex")
            return OnFailure(mode)
        retries = int(count) if count is not None else 3
        if retries > 100:
            self.add(line, f"{where}.on-failure {raw!r}: the retry count must be between 0 and 100")
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as e:
                self.add(line, f"{where}.on-failure {raw!r}: invalid regex: {e}")
        return OnFailure("RETRY", retries, pattern)

    def artifact(
        self, node: CommentedMap, identifier: str | None, where: str, line: int | None
    ) -> ArtifactSpec:
        allowed = (
            ARTIFACT_KEYS
            if identifier is None
            else tuple(k for k in ARTIFACT_KEYS if k != "secondary-artifacts")
        )
        self.unknown_keys(node, allowed, where)
        if "files" not in node:
            self.add(line, f"{where}: missing required key 'files'")
        files = self.strings(node, "files", where)
        if "files" in node and not files and node.get("files") is None:
            self.add(self.key_line(node, "files"), f"{where}.files is empty")
        base = self.base_directory(node, where)
        return ArtifactSpec(
            identifier=identifier,
            files=files,
            name=self.string(node, "name", where),
            base_directory=base,
            discard_paths=self.boolean(node, "discard-paths", where),
            exclude_paths=self.strings(node, "exclude-paths", where),
            enable_symlinks=self.boolean(node, "enable-symlinks", where),
            s3_prefix=self.string(node, "s3-prefix", where),
            line=line,
        )

    def artifacts(self, doc: CommentedMap) -> Artifacts | None:
        line, node = self.section(doc, "artifacts")
        if node is None:
            return None
        primary = self.artifact(node, None, "artifacts", line)
        secondary: list[ArtifactSpec] = []
        if "secondary-artifacts" in node:
            sl = self.key_line(node, "secondary-artifacts")
            sec = self.mapping(node["secondary-artifacts"], sl, "artifacts.secondary-artifacts")
            for ident in sec or {}:
                il = self.key_line(sec, ident) if sec is not None else sl
                where = f"artifacts.secondary-artifacts.{ident}"
                entry = self.mapping(sec[ident] if sec is not None else None, il, where)
                if entry is None:
                    self.add(il, f"{where} is empty: give it `files`")
                    continue
                secondary.append(self.artifact(entry, str(ident), where, il))
        return Artifacts(primary=primary, secondary=tuple(secondary))

    def reports(self, doc: CommentedMap) -> tuple[ReportSpec, ...]:
        node = self.mapping(doc.get("reports"), self.key_line(doc, "reports"), "reports")
        if node is None:
            return ()
        out: list[ReportSpec] = []
        if len(node) > MAX_REPORT_GROUPS:
            self.add(
                self.key_line(doc, "reports"),
                f"reports: {len(node)} report groups, CodeBuild allows at most {MAX_REPORT_GROUPS}",
            )
        for group in node:
            gl = self.key_line(node, group)
            where = f"reports.{group}"
            entry = self.mapping(node[group], gl, where)
            if entry is None:
                self.add(gl, f"{where} is empty: give it `files`")
                continue
            self.unknown_keys(entry, REPORT_KEYS, where)
            if "files" not in entry:
                self.add(gl, f"{where}: missing required key 'files'")
            fmt = (self.string(entry, "file-format", where) or "JUNITXML").strip().upper()
            known = TEST_REPORT_FORMATS + COVERAGE_REPORT_FORMATS
            if fmt not in known:
                close = difflib.get_close_matches(fmt, known, n=1, cutoff=0.6)
                hint = (
                    f" (did you mean '{close[0]}'?)" if close else f" (known: {', '.join(known)})"
                )
                self.add(
                    self.key_line(entry, "file-format"),
                    f"{where}.file-format {fmt!r} is not a report format{hint}",
                )
            base = self.base_directory(entry, where)
            out.append(
                ReportSpec(
                    group=str(group),
                    files=self.strings(entry, "files", where),
                    base_directory=base,
                    discard_paths=self.boolean(entry, "discard-paths", where),
                    file_format=fmt,
                    line=gl,
                )
            )
        return tuple(out)

    def cache(self, doc: CommentedMap) -> CacheSpec | None:
        line, node = self.section(doc, "cache")
        if node is None:
            return None
        self.unknown_keys(node, CACHE_KEYS, "cache")
        if "paths" not in node:
            self.add(line, "cache: missing required key 'paths'")
        action = self.string(node, "action", "cache")
        if action is not None and action not in ("restore", "save"):
            self.add(
                self.key_line(node, "action"), f"cache.action {action!r} must be restore or save"
            )
        return CacheSpec(
            paths=self.strings(node, "paths", "cache"),
            key=self.string(node, "key", "cache"),
            fallback_keys=self.strings(node, "fallback-keys", "cache"),
            action=action,
        )

    def batch(self, doc: CommentedMap) -> Batch | None:
        line, node = self.section(doc, "batch")
        if node is None:
            return None
        self.unknown_keys(node, BATCH_KEYS, "batch")
        kinds = [
            k for k in ("build-list", "build-graph", "build-matrix", "build-fanout") if k in node
        ]
        if not kinds:
            self.add(
                line,
                "batch: give one of build-list, build-graph (build-matrix and build-fanout "
                "are not supported locally)",
            )
            return None
        if len(kinds) > 1:
            self.add(line, f"batch: give only one batch type, found {', '.join(kinds)}")
        kind = kinds[0]
        kl = self.key_line(node, kind)
        if kind in ("build-matrix", "build-fanout"):
            self.add(
                kl,
                f"batch.{kind} is not supported by Conveyor's local runner: list each "
                "combination as an entry of batch.build-list (identifier, env.variables)",
            )
            return None
        seq = node[kind]
        if not isinstance(seq, CommentedSeq) or not seq:
            self.add(kl, f"batch.{kind} must be a non-empty list of builds")
            return None
        builds: list[BatchBuild] = []
        seen: set[str] = set()
        for i, entry in enumerate(seq):
            il = self.item_line(seq, i)
            where = f"batch.{kind}[{i}]"
            if not isinstance(entry, CommentedMap):
                self.add(il, f"{where} must be a mapping, got {_kind(entry)}")
                continue
            self.unknown_keys(entry, BATCH_BUILD_KEYS, where)
            ident = self.string(entry, "identifier", where)
            if ident is None:
                if kind == "build-graph":
                    self.add(il, f"{where}: missing required key 'identifier'")
                ident = f"build{i + 1}"
            elif not re.fullmatch(r"[A-Za-z0-9_]+", ident):
                self.add(
                    self.key_line(entry, "identifier"),
                    f"{where}.identifier {ident!r}: use letters, digits and underscores only",
                )
            if ident in seen:
                self.add(
                    self.key_line(entry, "identifier"), f"{where}: duplicate identifier {ident!r}"
                )
            seen.add(ident)
            env = self.mapping(entry.get("env"), self.key_line(entry, "env"), f"{where}.env")
            variables: dict[str, str] = {}
            image = env_type = None
            if env is not None:
                self.unknown_keys(env, BATCH_ENV_KEYS, f"{where}.env")
                variables = self.str_map(env, "variables", f"{where}.env")
                image = self.string(env, "image", f"{where}.env")
                env_type = self.string(env, "type", f"{where}.env")
                if env_type and env_type.upper().startswith("WINDOWS"):
                    self.windows.append(
                        (self.key_line(env, "type"), f"{where}.env.type is {env_type}")
                    )
            depend = self.strings(entry, "depend-on", where)
            if depend and kind != "build-graph":
                self.add(
                    self.key_line(entry, "depend-on"),
                    f"{where}.depend-on is only allowed in build-graph",
                )
            builds.append(
                BatchBuild(
                    identifier=ident,
                    buildspec=self.string(entry, "buildspec", where),
                    variables=variables,
                    image=image,
                    env_type=env_type,
                    depend_on=depend,
                    ignore_failure=self.boolean(entry, "ignore-failure", where),
                    line=il,
                )
            )
        known = {b.identifier for b in builds}
        for b in builds:
            for d in b.depend_on:
                if d not in known:
                    close = difflib.get_close_matches(d, sorted(known), n=1, cutoff=0.6)
                    hint = f" (did you mean '{close[0]}'?)" if close else ""
                    self.add(
                        b.line, f"batch.{kind}: {b.identifier} depends on unknown build {d!r}{hint}"
                    )
        cycle = _find_cycle(builds)
        if cycle:
            self.add(kl, "batch.build-graph: depend-on forms a cycle: " + " -> ".join(cycle))
        return Batch(
            kind=kind, builds=tuple(builds), fast_fail=self.boolean(node, "fast-fail", "batch")
        )


def batch_order(batch: Batch) -> list[BatchBuild]:
    """The builds of a batch in an order that respects depend-on (stable otherwise)."""
    done: set[str] = set()
    out: list[BatchBuild] = []
    pending = list(batch.builds)
    while pending:
        for b in pending:
            if all(d in done for d in b.depend_on):
                out.append(b)
                done.add(b.identifier)
                pending.remove(b)
                break
        else:  # a cycle: validation reports it; keep the order
            out.extend(pending)
            break
    return out


def _find_cycle(builds: Sequence[BatchBuild]) -> list[str] | None:
    deps = {b.identifier: b.depend_on for b in builds}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for d in deps.get(n, ()):
            if state.get(d) == 1:
                return [*stack[stack.index(d) :], d]
            if d in deps and d not in state:
                found = visit(d)
                if found:
                    return found
        stack.pop()
        state[n] = 2
        return None

    for n in deps:
        if n not in state:
            found = visit(n)
            if found:
                return found
    return None


def _tagged(v: Any) -> str:
    """A tagged YAML value as written: `!Ref Bucket`, `!GetAtt A.B`."""
    tag = getattr(getattr(v, "tag", None), "value", None) or "!"
    if isinstance(v, TaggedScalar):
        return f"{tag} {v.value}"
    if isinstance(v, CommentedSeq):
        return f"{tag} [{', '.join(str(x) for x in v)}]"
    return str(tag)


def _kind(v: Any) -> str:
    if v is None:
        return "nothing"
    if isinstance(v, TaggedScalar) or getattr(getattr(v, "tag", None), "value", None):
        return f"a CloudFormation intrinsic (`{_tagged(v)}`)"
    if isinstance(v, CommentedMap | dict):
        return "a mapping"
    if isinstance(v, CommentedSeq | list):
        return "a list"
    if isinstance(v, bool):
        return f"a boolean ({v})"
    if isinstance(v, int | float):
        return f"a number ({v})"
    return f"a string ({v!r})"
