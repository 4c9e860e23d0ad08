"""Benchmark: the cost of secret masking in an action log (FileLog), per line written.

100,000 lines of 80 characters written line by line, with no secret registered, with one
short secret, and with a PEM key plus a JSON secret (about 40 forms in all: lines, base64,
JSON, URL encodings). Writes bench/results/masking.json. Run: .venv/bin/python bench/masking.py
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from pathlib import Path

from conveyor.engine.logs import FileLog

HERE = Path(__file__).resolve().parent
LINES = 100_000
PEM = (
    "-----BEGIN PRIVATE KEY-----\n"
    + "\n".join(["MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj"] * 25)
    + "\n-----END PRIVATE KEY-----"
)
CREDS = json.dumps({"user": "svc", "password": "p@ss w/rd&more"}, indent=2)


def run(secrets: list[str], tmp: Path) -> float:
    log = FileLog(tmp / f"{len(secrets)}.log")
    for s in secrets:
        log.mask(s)
    line = ("x" * 79) + "\n"
    t0 = time.perf_counter()
    for _ in range(LINES):
        log.write(line)
    log.close()
    return (time.perf_counter() - t0) / LINES * 1e6


def main() -> None:
    out: dict[str, object] = {
        "machine": f"{platform.node()} {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}"
    }
    with tempfile.TemporaryDirectory() as d:
        for name, secrets in (
            ("no secret", []),
            ("one short secret", ["s3cr3t-Db-Pass!"]),
            ("PEM key + JSON secret", [PEM, CREDS]),
        ):
            us = run(secrets, Path(d))
            out[name] = {"us_per_line": round(us, 2)}
            print(f"{name:24} {us:8.2f} us/line")
    (HERE / "results").mkdir(exist_ok=True)
    (HERE / "results" / "masking.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
