"""The buildspec package and the adapters stand below the actions: they never import them."""

from __future__ import annotations

import subprocess
import sys


def test_buildspec_and_adapters_load_no_action_module() -> None:
    """Importing every conveyor.buildspec module and adapters.reports loads no conveyor.actions."""
    code = (
        "import sys, pkgutil, importlib, conveyor.buildspec as b\n"
        "for info in pkgutil.iter_modules(b.__path__):\n"
        "    importlib.import_module('conveyor.buildspec.' + info.name)\n"
        "import conveyor.adapters.reports\n"
        "print(','.join(m for m in sys.modules if m.startswith('conveyor.actions')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
