"""A kit to test action types, built-in or third-party, without an engine or a platform.

    from conveyor.testing import FakeRegistry, fake_services, make_context

    def test_my_action(tmp_path):
        registry = FakeRegistry()
        image = registry.push("127.0.0.1:5001/web:1")
        ctx = make_context(
            tmp_path, Action("Notify", "acme.notify", config={"image": str(image)}),
            services=fake_services(tmp_path, registry=registry),
        )
        result = MyAction().run(ctx)
        assert result.succeeded and "sha256:" in ctx.log.text

The fakes stand in for what a unit test should not start: the local platform (podman
environments, registries) and an OCI registry. They are named as fakes and keep their
state in memory. What is real: the artifact store (a directory), the settings, the log.
See docs/plugins.md for a whole third-party action type written and tested with this kit.
"""

from __future__ import annotations

from conveyor.testing.context import RecordingLog, fake_services, make_context
from conveyor.testing.fakes import FakeEnvironment, FakePlatform, FakeRegistry

__all__ = [
    "FakeEnvironment",
    "FakePlatform",
    "FakeRegistry",
    "RecordingLog",
    "fake_services",
    "make_context",
]
