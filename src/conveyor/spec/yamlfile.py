"""Reading YAML with line numbers (ruamel.yaml), shared by every file parser.

`load(path_or_text)` returns plain Python data plus a `Lines` index that maps a path in
the document (('stages', 2, 'actions', 0, 'runOrder')) to its 1-based line. Most files are
read by `yamlnodes` (PyYAML's nodes, one walk); ruamel reads the rest and words the errors.
"""

from __future__ import annotations

import contextlib
import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from conveyor.errors import ConfigError, Problem, ValidationFailed
from conveyor.spec import limits
from conveyor.spec.yamlnodes import load_with_lines

Key = tuple[str | int, ...]

try:  # ruamel's C parser (package ruamel.yaml.clibz): about 7x faster on large files
    from ruamel.yaml.cyaml import CParser  # type: ignore[attr-defined] # from the C module
except ImportError:  # pragma: no cover - the pure-Python parser does the same, slower
    CParser = None

_CLoader: Any = None
if CParser is not None:
    from ruamel.yaml.constructor import RoundTripConstructor
    from ruamel.yaml.resolver import VersionedResolver

    class _RoundTripCLoader(CParser, RoundTripConstructor, VersionedResolver):  # type: ignore[misc] # CParser is untyped C
        """libyaml's scanner and parser with the round-trip constructor and YAML 1.2
        resolver `YAML(typ="rt")` uses: the same values, with line numbers."""

        comment_handling = None

        def __init__(self, text: str) -> None:
            CParser.__init__(self, text)
            self._parser = self._composer = self
            RoundTripConstructor.__init__(self, loader=self)
            VersionedResolver.__init__(self, loadumper=self)
            self.allow_duplicate_keys = False

    _CLoader = _RoundTripCLoader


def _load_fast(text: str) -> Any:
    """The document through the C parser, or None when it is missing or the text has any
    problem (the pure-Python parser then reads it again and words the error)."""
    if _CLoader is None:
        return None
    loader = _CLoader(text)
    try:
        return loader.get_single_data()
    except Exception:  # noqa: BLE001 - any problem: the pure-Python parser reports it
        return None
    finally:
        loader.dispose()


@dataclass
class Lines:
    file: str
    index: dict[Key, int] = field(default_factory=dict)

    def line(self, path: Sequence[str | int]) -> int | None:
        p = tuple(path)
        while p:
            if p in self.index:
                return self.index[p]
            p = p[:-1]
        return self.index.get((), None)

    def problem(self, path: Sequence[str | int], message: str) -> Problem:
        return Problem(self.file, self.line(path), message)


def _plain(node: Any, path: Key, lines: Lines) -> Any:
    if isinstance(node, CommentedMap):
        lines.index.setdefault(path, node.lc.line + 1)
        out: dict[str, Any] = {}
        for k in node:
            try:
                ln = node.lc.key(k)[0] + 1
            except (KeyError, TypeError):
                ln = node.lc.line + 1
            lines.index[(*path, str(k))] = ln
            out[str(k)] = _plain(node[k], (*path, str(k)), lines)
        return out
    if isinstance(node, CommentedSeq):
        lines.index.setdefault(path, node.lc.line + 1)
        items = []
        for i, v in enumerate(node):
            with contextlib.suppress(KeyError, TypeError, IndexError):
                lines.index[(*path, i)] = node.lc.item(i)[0] + 1
            items.append(_plain(v, (*path, i), lines))
        return items
    if isinstance(node, str):
        return str(node)
    return node


def read_text(source: str | Path, label: str, expected: str) -> str:
    """A file's UTF-8 text, within the size limit; a ConfigError says what is wrong."""
    p = Path(source)
    if not p.exists():
        raise ConfigError(f"{label}: no such file")
    if p.is_dir():
        raise ConfigError(f"{label}: is a directory, expected {expected}")
    limits.check_file(p, label)
    try:
        return p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{label}: not UTF-8 text ({e.reason} at byte {e.start})") from None


def load(
    source: str | Path, *, text: str | None = None, name: str | None = None
) -> tuple[Any, Lines]:
    """Parse YAML from a file (or `text`), naming it `name` in messages."""
    label = name or str(source)
    if text is None:
        text = read_text(source, label, "a YAML file")
    limits.check_yaml(text, label)
    fast = load_with_lines(text)  # one walk over PyYAML's nodes; None: ruamel reads it
    if fast is not None:
        return fast[0], Lines(label, fast[1])
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    lines = Lines(label)
    try:
        doc = _load_fast(text)
        if doc is None:
            doc = yaml.load(text)
    except DuplicateKeyError as e:
        mark = e.problem_mark
        line = mark.line + 1 if mark else None
        raise ValidationFailed(
            [Problem(label, line, f"duplicate key: {e.problem}".strip())]
        ) from None
    except MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark else None
        col = f", column {mark.column + 1}" if mark else ""
        what = (e.problem or e.context or "invalid YAML").strip()
        raise ValidationFailed([Problem(label, line, f"invalid YAML{col}: {what}")]) from None
    except (YAMLError, ValueError, RecursionError) as e:
        raise limits.parse_failure(label, e) from None
    try:
        return _plain(doc, (), lines), lines
    except RecursionError as e:
        raise limits.parse_failure(label, e) from None


def pydantic_problems(
    err: ValidationError, lines: Lines, model: type[BaseModel], prefix: Key = ()
) -> list[Problem]:
    """Turn pydantic's errors into located, readable problems (with did-you-mean for keys)."""
    out: list[Problem] = []
    for e in err.errors():
        loc = (*prefix, *e["loc"])
        where = ".".join(str(x) for x in e["loc"]) or "(top level)"
        if e["type"] == "extra_forbidden":
            key = str(e["loc"][-1])
            allowed = _allowed_keys(model, e["loc"][:-1])
            hint = ""
            close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
            if close:
                hint = f" (did you mean '{close[0]}'?)"
            elif allowed:
                hint = f" (allowed: {', '.join(allowed)})"
            out.append(lines.problem(loc, f"unknown key '{key}'{hint}"))
        elif e["type"] == "missing":
            out.append(
                lines.problem(loc[:-1] or loc, f"missing required key '{e['loc'][-1]}' at {where}")
            )
        else:
            out.append(lines.problem(loc, f"{where}: {e['msg']}"))
    return out


def _allowed_keys(model: type[BaseModel], loc: Iterable[str | int]) -> list[str]:
    """Best effort: the field names (aliases) allowed at `loc` inside `model`."""
    current: Any = model
    for part in loc:
        if isinstance(part, int) or current is None:
            continue
        fields = getattr(current, "model_fields", {})
        found = None
        for fname, f in fields.items():
            if part in (fname, f.alias):
                found = f
                break
        if found is None:
            return []
        current = _inner_model(found.annotation)
    if current is None or not hasattr(current, "model_fields"):
        return []
    return sorted(f.alias or n for n, f in current.model_fields.items())


def _inner_model(tp: Any) -> Any:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return tp
    for arg in getattr(tp, "__args__", ()) or ():
        m = _inner_model(arg)
        if m is not None:
            return m
    return None
