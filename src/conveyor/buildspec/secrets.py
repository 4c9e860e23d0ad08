"""Secrets of a buildspec (`env.parameter-store`, `env.secrets-manager`), resolved locally.

They are read from a secrets file of `NAME=VALUE` lines (`#` comments, blank lines ignored,
the value is the rest of the line, surrounding quotes removed), looked up by the parameter
name / secret id, then by the variable name, then in the process environment under the same
two names. A secrets-manager reference `secret-id:json-key` whose value is a JSON object
yields that key.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

from conveyor.buildspec.spec import Buildspec
from conveyor.errors import ConfigError


def read_secrets_file(path: Path | None) -> dict[str, str]:
    """`NAME=VALUE` lines; `#` comments and blank lines ignored; quotes around VALUE removed."""
    out: dict[str, str] = {}
    if path is None or not path.is_file():
        return out
    for n, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if "=" not in line:
            raise ConfigError(f"{path}:{n}: expected NAME=VALUE, got {line[:40]!r}")
        k, v = line.split("=", 1)
        v = v.strip()
        if len(v) >= 2 and v[0] == v[-1] and v[0] in "'\"":
            v = v[1:-1]
        out[k.strip()] = v
    return out


def resolve_secrets(
    spec: Buildspec,
    secrets_file: Path | None,
    store: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The values of env.parameter-store and env.secrets-manager; ConfigError lists the missing."""
    table = dict(read_secrets_file(secrets_file))
    table.update(store or {})
    environ = os.environ if environ is None else environ
    out: dict[str, str] = {}
    missing: list[str] = []

    def lookup(ref: str, var: str) -> str | None:
        for k in (ref, var):
            if k in table:
                return table[k]
        for k in (ref, var):
            if k in environ:
                return environ[k]
        return None

    for var, ref in spec.env.parameter_store.items():
        v = lookup(ref, var)
        if v is None:
            missing.append(f"env.parameter-store.{var} (parameter {ref!r})")
        else:
            out[var] = v
    for var, ref in spec.env.secrets_manager.items():
        secret_id, json_key = _split_secret_ref(ref)
        v = lookup(secret_id, var)
        if v is None and ref != secret_id:
            v = lookup(ref, var)
        if v is None:
            missing.append(f"env.secrets-manager.{var} (secret {secret_id!r})")
            continue
        if json_key:
            try:
                data = json.loads(v)
                v = str(data[json_key])
            except (ValueError, KeyError, TypeError):
                missing.append(
                    f"env.secrets-manager.{var} (key {json_key!r} of secret {secret_id!r}: "
                    "the value is not a JSON object with that key)"
                )
                continue
        out[var] = v
    if missing:
        where = secrets_file or "the secrets file"
        raise ConfigError(
            "secrets not found: " + "; ".join(missing) + f". Add `NAME=VALUE` lines to "
            f"{where} (NAME = the parameter name or secret id, or the variable name), "
            "or set them in the environment"
        )
    return out


def _split_secret_ref(ref: str) -> tuple[str, str | None]:
    parts = ref.split(":")
    if ref.startswith("arn:") and len(parts) >= 7:
        sid, rest = ":".join(parts[:7]), parts[7:]
    else:
        sid, rest = parts[0], parts[1:]
    return sid, (rest[0] or None) if rest else None
