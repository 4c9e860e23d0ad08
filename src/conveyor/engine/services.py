"""`Services` lives in `conveyor.ports` with the seams it bundles; this name stays for imports."""

from conveyor.ports import Services

__all__ = ["Services"]
