"""Limits every input file is held to before a parser builds anything from it.

A hostile or broken file (a pipeline, a buildspec, CodePipeline JSON) gets one located line,
never a traceback, a hang or gigabytes of memory:

- size: at most MAX_BYTES;
- control characters (other than tab, LF, CR): refused with their line and column;
- YAML, scanned as events by libyaml (C, fast) before ruamel.yaml builds the document:
  at most MAX_NODES nodes, nesting at most MAX_DEPTH deep, and anchors/aliases that would
  expand to more than MAX_EXPANDED nodes in total are refused ("billion laughs");
- JSON: the same nesting and node limits, counted outside strings;
- numbers: at most MAX_DIGITS digits (Python's own int limit is 4,300).
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from conveyor.errors import Problem, ValidationFailed

MAX_BYTES = 5 * 1024 * 1024
MAX_DEPTH = 100
MAX_NODES = 50_000
MAX_EXPANDED = 100_000
MAX_DIGITS = 4_300

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffe\uffff]")
_LONG_NUMBER = re.compile(r"[-+]?[0-9][0-9_]*")  # a decimal integer, as YAML resolves one
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_JSON_TOKEN = re.compile(r"[\[\]{},:]")
_JSON_LONG_NUMBER = re.compile(r"[0-9]{" + str(MAX_DIGITS + 1) + ",}")


def _fail(label: str, line: int | None, message: str) -> ValidationFailed:
    return ValidationFailed([Problem(label, line, message)])


def _line_col(text: str, pos: int) -> tuple[int, int]:
    line = text.count("\n", 0, pos) + 1
    return line, pos - (text.rfind("\n", 0, pos) + 1) + 1


def _check_size(size: int, label: str) -> None:
    if size > MAX_BYTES:
        raise _fail(
            label,
            None,
            f"file is {size:,} bytes, more than the limit of {MAX_BYTES:,}: "
            "split it or remove what is not configuration",
        )


def check_text(text: str, label: str, offset: int = 0) -> None:
    """Size and control characters, common to every text format."""
    size = len(text.encode("utf-8", errors="surrogatepass"))
    _check_size(size, label)
    m = _CONTROL.search(text)
    if m:
        line, col = _line_col(text, m.start())
        raise _fail(
            label,
            line + offset,
            f"control character U+{ord(m.group()):04X} at column {col}: remove it "
            "(only tab, newline and carriage return are allowed)",
        )


def check_yaml(text: str, label: str, offset: int = 0) -> None:
    """Refuse YAML that is too big, too deep, or whose aliases expand too far (libyaml events)."""
    check_text(text, label, offset)
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    sizes: dict[str, int] = {}  # anchor -> nodes it stands for (aliases inside expanded)
    anchors: list[str | None] = []  # the open collections' anchors
    counts: list[int] = []  # and the nodes each holds so far
    nodes = expanded = 0

    def where(ev: yaml.Event) -> int | None:
        mark = ev.start_mark
        return mark.line + 1 + offset if mark is not None else None

    def close(anchor: str | None, count: int) -> None:
        if anchor is not None:
            sizes[anchor] = count
        if counts:
            counts[-1] += count

    try:
        for ev in yaml.parse(text, Loader=loader):
            anchor = getattr(ev, "anchor", None)
            if (
                anchor is not None
                and not isinstance(ev, yaml.AliasEvent)
                and (anchor in sizes or anchor in anchors)
            ):
                raise _fail(
                    label,
                    where(ev),
                    f"anchor &{anchor} is defined twice: give each anchor its own name",
                )
            if isinstance(ev, yaml.AliasEvent):
                n = sizes.get(str(ev.anchor), 1)
                expanded += n
                if expanded > MAX_EXPANDED:
                    raise _fail(
                        label,
                        where(ev),
                        f"aliases expand to more than {MAX_EXPANDED:,} nodes (alias "
                        f"*{ev.anchor} stands for {n:,}): write the values out or use fewer "
                        "nested anchors",
                    )
                close(None, n)
            elif isinstance(ev, yaml.ScalarEvent):
                nodes += 1
                if not ev.style and len(ev.value) > MAX_DIGITS and _LONG_NUMBER.fullmatch(ev.value):
                    raise _fail(
                        label,
                        where(ev),
                        f"a number with more than {MAX_DIGITS:,} digits: quote it if it is text",
                    )
                close(ev.anchor, 1)
            elif isinstance(ev, yaml.MappingStartEvent | yaml.SequenceStartEvent):
                nodes += 1
                anchors.append(ev.anchor)
                counts.append(1)
                if len(counts) > MAX_DEPTH:
                    raise _fail(
                        label,
                        where(ev),
                        f"nesting deeper than {MAX_DEPTH} levels: flatten the document",
                    )
            elif isinstance(ev, yaml.MappingEndEvent | yaml.SequenceEndEvent) and counts:
                close(anchors.pop(), counts.pop())
            if nodes > MAX_NODES:
                raise _fail(
                    label,
                    where(ev),
                    f"more than {MAX_NODES:,} values: this is not a configuration file "
                    "Conveyor reads (split it)",
                )
    except yaml.YAMLError as e:
        if "depth" in str(e):  # libyaml's own nesting limit, met while scanning ahead
            mark = getattr(e, "problem_mark", None)
            raise _fail(
                label,
                mark.line + 1 + offset if mark is not None else None,
                f"nesting deeper than {MAX_DEPTH} levels: flatten the document",
            ) from None
        # any other syntax error: the parser that builds the document reports it with its line


def check_json(text: str, label: str) -> None:
    """Refuse JSON that is too big, too deep or has too many values (counted outside strings)."""
    check_text(text, label)
    bare = _JSON_STRING.sub('""', text)
    m = _JSON_LONG_NUMBER.search(bare)
    if m:
        raise _fail(
            label,
            bare.count("\n", 0, m.start()) + 1,
            f"a number with more than {MAX_DIGITS:,} digits",
        )
    depth = count = 0
    for tok in _JSON_TOKEN.finditer(bare):
        c = tok.group()
        if c in "[{":
            depth += 1
            count += 1
            if depth > MAX_DEPTH:
                raise _fail(
                    label,
                    bare.count("\n", 0, tok.start()) + 1,
                    f"nesting deeper than {MAX_DEPTH} levels",
                )
        elif c in "]}":
            depth -= 1
        else:
            count += 1
            if count > 2 * MAX_NODES:
                raise _fail(
                    label,
                    bare.count("\n", 0, tok.start()) + 1,
                    f"more than {MAX_NODES:,} values: this is not a pipeline Conveyor imports",
                )


def check_file(path: Path, label: str) -> None:
    """Refuse a file over MAX_BYTES before reading it."""
    size = path.stat().st_size
    _check_size(size, label)


def parse_failure(label: str, e: BaseException, offset: int = 0) -> ValidationFailed:
    """One located line for what a parser raised beyond its syntax errors."""
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    line = mark.line + 1 + offset if mark is not None else None
    if isinstance(e, RecursionError):
        what = f"nesting too deep (the limit is {MAX_DEPTH} levels)"
    elif isinstance(e, ValueError) and "digits" in str(e):
        what = f"a number with more than {MAX_DIGITS:,} digits: quote it if it is text"
    else:
        what = " ".join(str(getattr(e, "problem", None) or e).split()) or type(e).__name__
        what = f"cannot be read: {what}"
    return _fail(label, line, what)
