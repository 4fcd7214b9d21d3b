"""The harness app: on start it puts the LMS glue into `lti_consumer.plugin.compat`."""

from __future__ import annotations

from django.apps import AppConfig


class HarnessConfig(AppConfig):
    name = "tests.openedx.lms"
    label = "harness"

    def ready(self) -> None:
        from tests.openedx.lms import compat

        compat.install()
