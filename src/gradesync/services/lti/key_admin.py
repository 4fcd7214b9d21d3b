"""Rotating the tool's keys for an admin (the API, the console) or the operator (the command
line): who may, and what a rotation did, in words. The keys sign for every tenant of the
installation: any admin may list them, only the admins of a tenant the operator named
(`GRADESYNC_TOOL_KEY_TENANTS`) rotate them, within `ToolKeyStore.rotation`'s limits."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from gradesync.services.lti.keys import Rotation

__all__ = ["RotationWords", "may_rotate", "rotation_words"]


def may_rotate(tool_key_tenants: Collection[str], tenant_id: str) -> bool:
    """Whether an admin of `tenant_id` may rotate the tool keys."""
    return tenant_id in tool_key_tenants


@dataclass(frozen=True, slots=True)
class RotationWords:
    said: str  # what the rotation did
    warning: str | None = None  # what it costs meanwhile (with `now`)

    def text(self) -> str:
        return self.said + (f"\nwarning: {self.warning}" if self.warning else "")


def rotation_words(r: Rotation) -> RotationWords:
    """What a rotation did, as the command line, the console and the API's `message` say."""
    new = r.key
    if r.revoked:
        return RotationWords(
            f"new tool key {new.kid} signs now; {', '.join(r.revoked)} revoked: no longer "
            "published, platforms refuse them as soon as they read the key set again.",
            "platforms that cached the key set before now refuse gradesync's signatures "
            "until they read it again (up to 5 minutes)",
        )
    starts = f"{new.signs_from:%Y-%m-%d %H:%M:%S} UTC" if new.signs_from else "now"
    text = f"new tool key {new.kid} published now, signs from {starts}"
    if r.signing_until and r.signing_until != new.kid:
        text += f"; {r.signing_until} signs until then and stays published for the overlap after"
    if r.replaced:
        text += f"; {', '.join(r.replaced)} (waiting to sign) replaced: it never signs"
    return RotationWords(text)
