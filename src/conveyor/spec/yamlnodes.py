"""A fast reading of YAML with its line map, built in one walk (issue 18.3).

PyYAML's composer (libyaml's C parser when PyYAML has it, its own Python one otherwise)
gives the node tree with positions; one walk turns it into plain data and the line index
`Lines` keeps, with the values ruamel's round-trip loader gives (YAML 1.2: `yes`/`on` are
strings; scalars other than strings, nulls and booleans are built by ruamel's constructor).

Anything this path does not reproduce exactly — a `%YAML` directive, a local tag (`!Ref`),
a merge key (`<<`), a duplicate or complex key, a syntax error — makes it answer None: the
caller then reads the text with ruamel, which gives the same data or words the error.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import yaml
from ruamel.yaml.nodes import ScalarNode as RuamelScalar
from ruamel.yaml.resolver import VersionedResolver

_Composer: Any = getattr(yaml, "CSafeLoader", None) or yaml.SafeLoader
_STR = "tag:yaml.org,2002:str"
_NULL = "tag:yaml.org,2002:null"
_BOOL = "tag:yaml.org,2002:bool"
_MERGE = "tag:yaml.org,2002:merge"
_DIRECTIVE = re.compile(r"^%YAML", re.MULTILINE)
_CORE = "tag:yaml.org,2002:"
_resolver = VersionedResolver()
_pyyaml_resolver = yaml.resolver.Resolver()
_constructor: Any = None


class _NotHere(Exception):
    """This document needs the full round-trip loader."""


def load_with_lines(text: str) -> tuple[Any, dict[tuple[str | int, ...], int]] | None:
    """(plain data, line index) or None when ruamel must read this text."""
    if _DIRECTIVE.search(text):
        return None
    try:
        root = yaml.compose(text, Loader=_Composer)
    except (yaml.YAMLError, ValueError, RecursionError):
        return None
    index: dict[tuple[str | int, ...], int] = {}
    if root is None:
        return None  # an empty document: ruamel says what it is
    try:
        return _walk(root, (), index), index
    except (_NotHere, RecursionError):
        return None


def _walk(node: Any, path: tuple[str | int, ...], index: dict[tuple[str | int, ...], int]) -> Any:
    if isinstance(node, yaml.MappingNode):
        if node.tag not in ("tag:yaml.org,2002:map",):
            raise _NotHere
        index.setdefault(path, node.start_mark.line + 1)
        out: dict[str, Any] = {}
        seen: set[Any] = set()
        for k, v in node.value:
            if not isinstance(k, yaml.ScalarNode):
                raise _NotHere
            raw = _scalar(k)
            key = str(raw)
            if raw in seen or key in out:
                raise _NotHere  # a duplicate key (True and 1 are one for ruamel): it reports it
            seen.add(raw)
            index[(*path, key)] = k.start_mark.line + 1
            out[key] = _walk(v, (*path, key), index)
        return out
    if isinstance(node, yaml.SequenceNode):
        if node.tag != "tag:yaml.org,2002:seq":
            raise _NotHere
        index.setdefault(path, node.start_mark.line + 1)
        items = []
        for i, v in enumerate(node.value):
            index[(*path, i)] = v.start_mark.line + 1
            items.append(_walk(v, (*path, i), index))
        return items
    return _scalar(node)


def _scalar(node: Any) -> Any:
    value: str = node.value
    if (
        node.style
    ):  # quoted or block (plain is None, or "" from libyaml): a string, unless tagged otherwise
        if node.tag != _STR:
            raise _NotHere
        return value
    implicit, tag = _tags(value)
    if node.tag != implicit:
        raise _NotHere  # an explicit tag (`!!str 123`): ruamel keeps it as a tagged scalar
    if tag == _STR:
        return value
    if tag == _NULL:
        return None
    if tag == _BOOL:
        return value.lower() == "true"
    if tag == _MERGE or not tag.startswith(_CORE):
        raise _NotHere  # a merge key (`<<`): ruamel merges
    return _construct(tag, value)


@functools.lru_cache(maxsize=4096)
def _tags(value: str) -> tuple[str, str]:
    """The tag PyYAML gives a plain scalar without an explicit tag, and the one ruamel's
    YAML 1.2 resolver gives it (names repeat a lot in a pipeline: asked once each)."""
    pyyaml_tag: str = _pyyaml_resolver.resolve(yaml.ScalarNode, value, (True, False))  # type: ignore[no-untyped-call] # PyYAML is untyped here
    ruamel_tag: str = _resolver.resolve(RuamelScalar, value, (True, False))
    return pyyaml_tag, ruamel_tag


def _construct(tag: str, value: str) -> Any:
    """An int, float or timestamp exactly as ruamel's round-trip loader builds it."""
    global _constructor
    if _constructor is None:
        from ruamel.yaml import YAML

        _constructor = YAML(typ="rt").constructor
    return _constructor.construct_object(RuamelScalar(tag, value), deep=True)
