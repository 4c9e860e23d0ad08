"""Rendering a CloudFormation template to text: YAML (default) or JSON, deterministic bytes.

The synthesizer already orders Parameters, Resources and Outputs by name; here dicts keep
their order, multi-line strings (inline buildspecs) become YAML literal blocks, and a header
comment says where the file came from. No timestamps: same template, same bytes.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from typing import Any


def _literals(v: Any) -> Any:
    from ruamel.yaml.scalarstring import LiteralScalarString

    if isinstance(v, dict):
        return {k: _literals(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_literals(x) for x in v]
    if isinstance(v, str) and "\n" in v:
        return LiteralScalarString(v)
    return v


def render(template: dict[str, Any], fmt: str = "yaml", header: Sequence[str] = ()) -> str:
    """The template as YAML or JSON text, ending with a newline."""
    if fmt == "json":
        return json.dumps(template, indent=2, ensure_ascii=False) + "\n"
    if fmt != "yaml":
        raise ValueError(f"unknown format '{fmt}' (yaml or json)")
    from ruamel.yaml import YAML

    y = YAML()
    y.default_flow_style = False
    y.width = 4096
    y.indent(mapping=2, sequence=4, offset=2)
    buf = io.StringIO()
    for line in header:
        buf.write(f"# {line}\n" if line else "#\n")
    y.dump(_literals(template), buf)
    return buf.getvalue()
