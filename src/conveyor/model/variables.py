"""`#{Namespace.Variable}` references, as in CodePipeline.

Reserved namespaces: `variables` (pipeline-level variables, `#{variables.NAME}`) and
`codepipeline` (`#{codepipeline.PipelineExecutionId}`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import regex

REF = re.compile(r"#\{([A-Za-z0-9_@\-]+)\.([A-Za-z0-9_@\-]+)\}")
PIPELINE_NS = "variables"
SYSTEM_NS = "codepipeline"
SYSTEM_VARS = frozenset({"PipelineExecutionId", "PipelineName"})


def find_refs(
    value: Any, path: tuple[str | int, ...] = ()
) -> Iterator[tuple[tuple[str | int, ...], str, str]]:
    """Every (path, namespace, variable) referenced anywhere inside a config value."""
    if isinstance(value, str):
        for m in REF.finditer(value):
            yield path, m.group(1), m.group(2)
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield from find_refs(v, (*path, str(k)))
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            yield from find_refs(v, (*path, i))


class UnresolvedVariable(KeyError):
    pass


def resolve(value: Any, scope: Mapping[str, Mapping[str, str]]) -> Any:
    """Replace every reference with its value; raise UnresolvedVariable naming the first unknown."""

    def sub(m: re.Match[str]) -> str:
        ns, var = m.group(1), m.group(2)
        try:
            return str(scope[ns][var])
        except KeyError:
            raise UnresolvedVariable(f"#{{{ns}.{var}}}") from None

    if isinstance(value, str):
        return REF.sub(sub, value)
    if isinstance(value, Mapping):
        return {k: resolve(v, scope) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [resolve(v, scope) for v in value]
    return value


ENV_PREFIX = "CONVEYOR_VAR_"


def env_name(ns: str, var: str) -> str:
    """The environment variable a `#{ns.var}` reference in a command is passed in."""
    return ENV_PREFIX + re.sub(r"[^A-Za-z0-9]", "_", f"{ns}_{var}").upper()


def command_as_data(
    command: str, scope: Mapping[str, Mapping[str, str]]
) -> tuple[str, dict[str, str]]:
    """Rewrite every `#{ns.var}` in a shell command into a quoted `$CONVEYOR_VAR_NS_VAR`.

    Returns the new command and the variables to put in its environment, so a value reaches
    the shell as data, never as code: `echo "#{variables.NOTE}"` with NOTE=`$(id)` prints
    `$(id)`. The rewrite follows the shell's quoting: outside quotes the reference becomes
    `"${V}"`, inside double quotes `${V}`, inside single quotes `'"${V}"'` (the quote is
    closed and reopened). Raises UnresolvedVariable for an unknown reference.
    """
    out: list[str] = []
    env: dict[str, str] = {}
    quote = ""  # "", "'", '"', "$'"
    i, n = 0, len(command)
    while i < n:
        c = command[i]
        if c == "#":
            m = REF.match(command, i)
            if m:
                ns, var = m.group(1), m.group(2)
                try:
                    env[env_name(ns, var)] = str(scope[ns][var])
                except KeyError:
                    raise UnresolvedVariable(f"#{{{ns}.{var}}}") from None
                ref = "${" + env_name(ns, var) + "}"
                out.append(
                    {"": f'"{ref}"', '"': ref, "'": f"'\"{ref}\"'", "$'": f"'\"{ref}\"$'"}[quote]
                )
                i = m.end()
                continue
        out.append(c)
        i += 1
        if c == "\\" and quote != "'" and i < n:
            out.append(command[i])
            i += 1
        elif quote == "":
            if c == "$" and i < n and command[i] == "'":
                out.append("'")
                i += 1
                quote = "$'"
            elif c in "'\"":
                quote = c
        elif (quote == "$'" and c == "'") or c == quote:
            quote = ""
    return "".join(out), env


def safe_form(command: str) -> str:
    """The explicit safe form of a command, for `validate`'s warning."""
    return command_as_data(command, _AnyScope())[0]


class _AnyScope(dict[str, Mapping[str, str]]):
    def __missing__(self, ns: str) -> Mapping[str, str]:
        return _AnyVar()


class _AnyVar(dict[str, str]):
    def __missing__(self, var: str) -> str:
        return ""


# A value given at start (by whoever may start a run, e.g. through the API) is matched against a
# pattern the pipeline's author wrote. Python's `re` backtracks without bound, so `(a+)+$` and a
# 30-character value hold a worker for minutes. The `regex` module (already installed with
# cfn-lint) takes a timeout; the value's length is bounded too. A check that runs out of time
# refuses the value: it is never let through unchecked.
MATCH_TIMEOUT_S = 0.1
MAX_VALUE_CHARS = 4096


def pattern_problem(pattern: str) -> str | None:
    """Why `allowedPattern` is not a usable regular expression, or None."""
    try:
        regex.compile(pattern, regex.VERSION0)
    except regex.error as e:
        return f"allowedPattern {pattern!r} is not a regular expression: {e}"
    return None


def full_match(pattern: str, value: str) -> bool:
    """Whether `value` matches `pattern` whole; TimeoutError when the check runs out of time."""
    if len(value) > MAX_VALUE_CHARS:
        return False
    return (
        regex.fullmatch(pattern, value, flags=regex.VERSION0, timeout=MATCH_TIMEOUT_S) is not None
    )


def value_problem(name: str, value: str, pattern: str | None) -> str | None:
    """Why a value given at start for variable `name` is refused by its allowedPattern, or None."""
    if pattern is None or pattern_problem(pattern):
        return None
    shown = value if len(value) <= 60 else value[:57] + "..."
    try:
        ok = full_match(pattern, value)
    except TimeoutError:
        return (
            f"variable {name}={shown!r}: checking it against allowedPattern {pattern!r} took "
            f"over {MATCH_TIMEOUT_S:g} s (the pattern backtracks catastrophically, e.g. nested "
            "quantifiers like (a+)+); simplify the pattern in the pipeline file"
        )
    if not ok:
        return (
            f"variable {name}={shown!r} does not match its allowedPattern {pattern!r}; "
            "give a value that matches it"
        )
    return None


def start_values(
    pipeline: str, declared: Sequence[Any], given: Mapping[str, str]
) -> tuple[dict[str, str], str | None]:
    """The pipeline variables of a new execution: each `declared` variable (name, default,
    allowed_pattern) takes its `given` value, else its default. Returns (values, None), or
    ({}, why) when a given name is not declared, a value breaks its allowedPattern, or a
    variable has neither a value nor a default."""
    known = {v.name for v in declared}
    unknown = sorted(set(given) - known)
    if unknown:
        return {}, (
            f"pipeline '{pipeline}' has no variable(s) {', '.join(unknown)}"
            f" (declared: {', '.join(sorted(known)) or 'none'})"
        )
    resolved: dict[str, str] = {}
    for v in declared:
        if v.name in given:
            resolved[v.name] = str(given[v.name])
            refused = value_problem(v.name, resolved[v.name], v.allowed_pattern)
            if refused:
                return {}, refused
        elif v.default is not None:
            resolved[v.name] = v.default
        else:
            return {}, f"pipeline variable '{v.name}' has no default: pass --var {v.name}=VALUE"
    return resolved, None
