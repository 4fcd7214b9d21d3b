"""The tool's LTI signing keys as `GET /lti/tool-keys` and `gradesync keys list-tool-keys
--json` show them, and a rotation as `POST /lti/tool-keys` and `rotate-tool-key --json`
answer it (never a private half)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from gradesync.domain.tool_keys import KeyState
from gradesync.services.lti.key_admin import rotation_words
from gradesync.services.lti.keys import Rotation, ToolKeyInfo


class ToolKeyOut(BaseModel):
    kid: str = Field(description="The key's id (`kid` in the JWKS and in JWT headers).")
    state: KeyState = Field(
        description="`next`: published, signs from `signs_from`; `current`: signs now; "
        "`retiring`: signs no more, published until `published_until`; `expired`: no longer "
        "published (to prune); `revoked`: withdrawn from the key set by a rotation with `now`."
    )
    created_at: datetime = Field(description="When the key was made (and published).")
    signs_from: datetime | None = Field(
        description="When the key starts (or started) signing; null for a key that never "
        "signs (a newer rotation replaced it, or revoked it, before its time came)."
    )
    retired_at: datetime | None = Field(
        description="When the key stops (or stopped) signing; null while no newer key is due."
    )
    revoked_at: datetime | None = Field(
        description="When a rotation with `now` withdrew the key from the key set."
    )
    published: bool = Field(description="Whether the key is in `/lti/jwks.json` now.")
    published_until: datetime | None = Field(
        description="When the key leaves (or left) the key set: the end of its overlap, or "
        "when it was revoked; null while it signs or is due to."
    )


class RotationOut(BaseModel):
    kid: str = Field(description="The new key's id.")
    signs_from: datetime = Field(description="When the new key starts signing.")
    retired_kid: str | None = Field(
        description="The key that signed when the rotation was made: it signs until "
        "`signs_from` (with `now`: revoked)."
    )
    replaced_kids: list[str] = Field(
        description="Keys that were waiting to sign: the new key replaces them, they never sign."
    )
    revoked_kids: list[str] = Field(
        description="Keys withdrawn from the key set by this rotation (`now` only)."
    )
    message: str = Field(description="What the rotation did, in words.")


def tool_key_out(k: ToolKeyInfo) -> ToolKeyOut:
    return ToolKeyOut(
        kid=k.kid,
        state=k.state,
        created_at=k.created_at,
        signs_from=k.signs_from,
        retired_at=k.retired_at,
        revoked_at=k.revoked_at,
        published=k.published,
        published_until=k.published_until,
    )


def rotation_out(r: Rotation) -> RotationOut:
    assert r.key.signs_from is not None  # a rotation sets it
    return RotationOut(
        kid=r.key.kid,
        signs_from=r.key.signs_from,
        retired_kid=r.signing_until,
        replaced_kids=list(r.replaced),
        revoked_kids=list(r.revoked),
        message=rotation_words(r).text(),
    )
