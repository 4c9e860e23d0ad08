"""The model does no I/O: importing it loads no subprocess, SQL, HTTP, AWS or Kubernetes module."""

from __future__ import annotations

import subprocess
import sys


def test_model_imports_no_io_modules() -> None:
    """Importing every conveyor.model module pulls in none of the I/O libraries."""
    code = (
        "import sys, pkgutil, importlib, conveyor.model as m\n"
        "for info in pkgutil.iter_modules(m.__path__): importlib.import_module('conveyor.model.' + info.name)\n"
        "bad = ['subprocess', 'sqlalchemy', 'httpx', 'boto3', 'botocore', 'kubernetes', 'socket', 'sqlite3']\n"
        "print(','.join(b for b in bad if b in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
