"""The engine's harness (a strict destination double behind the real engine)."""

from tests.engine.conftest import harness  # noqa: F401
