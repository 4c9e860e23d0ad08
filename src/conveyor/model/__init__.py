"""The pure core of Conveyor: pipeline model, statuses, derivation, planning, validation.

This package does no I/O: no subprocess, SQL, HTTP or filesystem (tests/unit/test_purity.py).
"""
