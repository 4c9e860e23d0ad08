"""`#{Namespace.Variable}` references, as in CodePipeline.

Reserved namespaces: `variables` (pipeline-level variables, `#{variables.NAME}`) and
`codepipeline` (`#{codepipeline.PipelineExecutionId}`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

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
