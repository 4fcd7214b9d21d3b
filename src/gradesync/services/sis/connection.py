"""Connecting a SIS: add or update a connection (REST or files), find it, reach its API."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import replace
from typing import Any, ParamSpec
from urllib.parse import urlsplit

from gradesync.domain.canonical import digest
from gradesync.domain.errors import Conflict, FieldProblem, InvalidInput, NotFound
from gradesync.domain.model import (
    DESTINATION_ID_RE,
    DESTINATION_ID_RULE,
    DESTINATION_NAME_MAX,
    SIS_KINDS,
    Destination,
    DestinationKind,
)
from gradesync.domain.passback import (
    NAME_MAX_LENGTH_WORDS,
    name_max_length_problem,
    name_max_length_said,
    profile_from_config,
)
from gradesync.domain.remedies import Reader
from gradesync.services.clock import Clock
from gradesync.services.outbound import OutboundGuard, url_field_problem
from gradesync.services.ports import UnitOfWorkFactory
from gradesync.services.sis.common import (
    CLEARABLE,
    DEFAULT_SCOPES,
    PROFILE_KEYS,
    SCOPE_PREFIX,
    sis_destination,
    touch_items,
)

# how many times a client secret was given, kept with it (encrypted): a new secret makes a
# new version, so a change made from a form opened before it is refused rather than write
# its own secret over the new one unseen. The count tells nothing of the secret.
SECRET_CHANGES = "client_secret_changes"

# how each reader takes a SIS's name limit away: an API body lists it in `clear` (null, or
# leaving it out, keeps the limit set), the command line clears its option, the console's box
# is left empty
NO_NAME_LIMIT = {
    Reader.API: '`"clear": ["name_max_length"]` takes the limit away',
    Reader.CLI: "`--clear name-max-length` takes the limit away",
    Reader.CONSOLE: "leave it empty for no limit",
}


def name_limit_said(rule: str, given: object, reader: Reader) -> str:
    """A refused `name_max_length` (a rule of NAME_MAX_LENGTH_WORDS) in `reader`'s words."""
    return f"{name_max_length_said(rule, given)}; {NO_NAME_LIMIT[reader]}."


# How many times a change without a version is worked out again from the stored settings
# when they changed while it was worked out, before it is refused as changed.
_READS = 3
P = ParamSpec("P")


class _ReadAgain(Exception):
    """The stored settings changed between `add_connection`'s read and its write."""

    @staticmethod
    def conflict(destination_id: str) -> Conflict:
        return Conflict(
            f"The settings of {destination_id!r} kept changing while this change was saved; "
            "try it again.",
            field="version",
            rule="changed",
        )


def _read_again(save: Callable[P, Destination]) -> Callable[P, Destination]:
    """`save` again while it raises _ReadAgain (the stored settings changed between its
    read and its write, and no version was given), `_READS` times at most."""

    @functools.wraps(save)
    def again(*args: P.args, **kwargs: P.kwargs) -> Destination:
        for _ in range(_READS):
            try:
                return save(*args, **kwargs)
            except _ReadAgain:
                continue
        raise _ReadAgain.conflict(str(kwargs["destination_id"]))

    return again


def _in_words_of(
    reader: Reader, given: object, problems: Sequence[FieldProblem]
) -> list[FieldProblem]:
    """The problems with a refused `name_max_length` told in `reader`'s words."""
    return [
        FieldProblem(p.field, p.rule, name_limit_said(p.rule, given, reader))
        if p.field == "config.name_max_length" and p.rule in NAME_MAX_LENGTH_WORDS
        else p
        for p in problems
    ]


@_read_again
def add_connection(
    uow_factory: UnitOfWorkFactory,
    clock: Clock,
    *,
    tenant_id: str,
    destination_id: str,
    name: str | None,
    base_url: str | None,
    client_id: str | None = None,
    client_secret: str | None = None,
    token_url: str | None = None,
    scopes: Sequence[str] | None = None,
    profile: dict[str, Any] | None = None,
    file_based: bool | None = None,
    guard: OutboundGuard | None = None,
    clear: Collection[str] = (),
    spelled: Callable[[str], str] = str,
    version: str | Collection[str] | None = None,
    reader: Reader = Reader.API,
    new: bool = False,
) -> Destination:
    """Create or update a SIS connection. On update, a value left out (None) keeps what was
    set (so rotating the secret does not forget the profile, the name or the kind), and
    nothing changes on bad input. An empty `token_url` goes back to the default (next to
    the API). `clear` names optional settings (CLEARABLE) that go back to their default; one
    also given a value is refused, and a problem of `clear` names settings as `spelled` (as
    the caller spells them: the CLI with dashes). A new connection is named after its id and
    uses REST unless told otherwise. Every entrypoint passes the runtime's outbound `guard`:
    the URLs must lead where gradesync may send requests. `version`, when given, is the
    `settings_version` the change was made from (a form's, an API client's `If-Match`, the
    CLI's `--expect-version`), or several of which any will do (ANY_VERSION: any, as long as
    the connection exists): settings changed since are refused (Conflict, rule `changed`),
    not silently written over. Without a version, settings changed while the change was
    worked out (limits set, a category aligned) are kept: it is worked out again from them.
    A refused `name_max_length` says how `reader` takes the limit away (the API's way by
    default, as `spelled` spells the API's names). With `new` (the console's Add form) it
    only creates: a destination with the id already is a Conflict, not replaced."""
    with uow_factory() as uow:
        if uow.tenants.get(tenant_id) is None:
            raise NotFound("tenant", tenant_id)
        old = uow.destinations.get(tenant_id, destination_id)
    if new and old is not None:
        raise _taken(destination_id)
    if old is not None and old.kind not in SIS_KINDS:
        # before the version: no version of a SIS's settings is this destination's
        raise InvalidInput.one(
            "destination_id",
            "kind",
            f"{destination_id!r} is a {old.kind.value} destination, not a SIS.",
        )
    if version is not None:
        _check_version(old, version, destination_id)  # stale first: its problems may be too
    if file_based is None:
        file_based = old is not None and old.kind is DestinationKind.ONEROSTER_CSV
    kind = DestinationKind.ONEROSTER_CSV if file_based else DestinationKind.ONEROSTER_REST
    if name is None:
        name = old.name if old is not None else destination_id
    config: dict[str, Any] = dict(old.config) if old else {}
    secret: dict[str, Any] = dict(old.secret) if old else {}
    for key, value in (("base_url", base_url), ("token_url", token_url), ("client_id", client_id)):
        if key == "token_url" and value is not None and not value.strip():
            # empty: back to the default next to the API (None keeps, as for every value)
            config.pop(key, None)
        elif value is not None:
            config[key] = value
    if scopes is not None:
        config["scopes"] = list(scopes)
    config.setdefault("scopes", list(DEFAULT_SCOPES))
    for key, value in (profile or {}).items():
        if key not in PROFILE_KEYS:
            raise InvalidInput.one(
                f"profile.{key}",
                "unknown_field",
                f"Known profile settings: {', '.join(PROFILE_KEYS)}.",
            )
        config[key] = value
    for key in set(clear) & set(CLEARABLE):  # another name is refused below
        config.pop(key, None)
    config.setdefault("scopes", list(DEFAULT_SCOPES))
    if client_secret is not None:
        secret["client_secret"] = client_secret
        # counted each time one is given, the same or not: a version that stayed for the
        # same secret would let whoever may save the settings test a guess of it
        secret[SECRET_CHANGES] = int(secret.get(SECRET_CHANGES) or 0) + 1
    problems = _clear_problems(clear, token_url, scopes, profile or {}, spelled)
    if old is None and not DESTINATION_ID_RE.match(destination_id):
        # a new one only: one saved before this rule can still be changed or deleted
        problems.append(FieldProblem("destination_id", "pattern", DESTINATION_ID_RULE))
    if not name.strip():
        problems.append(FieldProblem("name", "required", "A SIS connection needs a name."))
    elif len(name) > DESTINATION_NAME_MAX:
        problems.append(
            FieldProblem(
                "name", "too_long", f"A name is at most {DESTINATION_NAME_MAX} characters."
            )
        )
    texts = {
        "name": name,
        "base_url": base_url,
        "token_url": token_url,
        "client_id": client_id,
        "client_secret": client_secret,
        **{f"scopes[{i}]": s for i, s in enumerate(scopes or ())},
        **{f"profile.{k}": v for k, v in (profile or {}).items() if isinstance(v, str)},
    }
    for key, value in texts.items():
        if isinstance(value, str) and "\x00" in value:
            # no database stores one alike, and a secret cut at it would silently break
            problems.append(
                FieldProblem(key, "nul_character", f"{key} must not contain a NUL character.")
            )
    for key in ("base_url", "token_url"):
        value = config.get(key)
        if value is None or any(p.field == key for p in problems):
            continue
        if key == "base_url" and not str(value).strip():
            continue  # blank: `required` below says it once (a file-based SIS needs none)
        found = url_field_problem(key, str(value), None if file_based else guard)
        if found and (base_url if key == "base_url" else token_url) is None:
            # the stored value, saved before this rule: say so, and what mends it
            found = FieldProblem(
                key,
                found.rule,
                f"The {key} stored for this connection is refused now: {found.message} Give "
                f"{key} again in this change.",
            )
        if found:
            problems.append(found)
    urls_refused = any(p.field in ("base_url", "token_url") for p in problems)
    if (
        old is not None
        and not client_secret
        and old.secret.get("client_secret")
        and not urls_refused
    ):
        problems.extend(_moved_secret_problems(old.config, config))
    if not file_based:
        if not str(config.get("base_url") or "").strip():
            problems.append(
                FieldProblem("base_url", "required", "The SIS's OneRoster base URL is required.")
            )
        if not config.get("client_id"):
            problems.append(
                FieldProblem("client_id", "required", "The OAuth 2 client id is required.")
            )
        if not secret.get("client_secret"):
            problems.append(
                FieldProblem("client_secret", "required", "The OAuth 2 client secret is required.")
            )
    unknown = [s for s in config["scopes"] if not str(s).startswith(SCOPE_PREFIX)]
    if unknown:
        problems.append(
            FieldProblem(
                "scopes", "one_of", f"Not OneRoster scopes: {unknown} (they start {SCOPE_PREFIX})."
            )
        )
    try:
        profile_from_config(config)
    except InvalidInput as exc:
        problems.extend(_in_words_of(reader, config.get("name_max_length"), exc.problems))
    given_length = (profile or {}).get("name_max_length")
    if (too_long := name_max_length_problem(given_length)) is not None:
        problems.extend(_in_words_of(reader, given_length, [too_long]))
    if problems:
        raise InvalidInput(problems)
    dest = Destination(
        tenant_id=tenant_id,
        id=destination_id,
        kind=kind,
        name=name,
        profile="oneroster",
        config=config,
        secret=secret,
        # an update keeps the engine's and the admin's pause, as a platform's does
        enabled=old.enabled if old else True,
        paused_until=old.paused_until if old else None,
        pause_reason=old.pause_reason if old else None,
        pause_cause=old.pause_cause if old else None,
    )
    with uow_factory() as uow:
        # checked where it is written, the row locked: two forms saved at once, the later
        # one sees the earlier's change
        current = uow.destinations.get(tenant_id, destination_id, for_update=True)
        if version is not None:
            _check_version(current, version, destination_id)
        elif (old is None) != (current is None) or (
            old is not None
            and current is not None
            and settings_version(old) != settings_version(current)
        ):
            # the settings were read in a transaction of their own: a change saved since
            # (a connection made, limits set, a category aligned) is not written over; with
            # no version to hold to, the change is worked out again from what is stored now
            raise _ReadAgain
        if current is not None:  # the pause as it is now: a pause or resume since is kept
            dest = replace(
                dest,
                enabled=current.enabled,
                paused_until=current.paused_until,
                pause_reason=current.pause_reason,
                pause_cause=current.pause_cause,
            )
            uow.destinations.upsert(dest, clock.now())
        elif not uow.destinations.add(dest, clock.now()):
            # made since the locked read above (PostgreSQL's read committed: a row not there
            # locks nothing), by another process: not written over with what this change
            # worked out from none, but refused, or worked out again from it
            if new:
                raise _taken(destination_id)
            raise _ReadAgain
        if old is not None and old.kind is not kind:
            # switched between REST and files: each line item is provisioned again the new
            # way (a file-based SIS keeps its rows on the link); results already sent stay
            touch_items(uow, tenant_id, destination_id)
        uow.commit()
    return dest


def get_connection(
    uow_factory: UnitOfWorkFactory, tenant_id: str, destination_id: str
) -> Destination:
    """A SIS connection as stored (its `settings_version` is what a change is made from)."""
    with uow_factory() as uow:
        return sis_destination(uow, tenant_id, destination_id)


def rest_connection(
    uow_factory: UnitOfWorkFactory, tenant_id: str, destination_id: str
) -> Destination:
    """A SIS connection that has a OneRoster REST API to ask (a file-based one has none)."""
    with uow_factory() as uow:
        dest = sis_destination(uow, tenant_id, destination_id)
    if dest.kind is not DestinationKind.ONEROSTER_REST:
        raise InvalidInput.one("destination_id", "kind", "A file-based SIS has no REST API to ask.")
    return dest


def has_rest_api(uow_factory: UnitOfWorkFactory, tenant_id: str, destination_id: str) -> bool:
    """Whether the SIS connection can be asked (REST), or only receives files."""
    with uow_factory() as uow:
        return (
            sis_destination(uow, tenant_id, destination_id).kind is DestinationKind.ONEROSTER_REST
        )


def settings_version(dest: Destination) -> str:
    """What a form of the connection's settings was made from (its name, kind and config, and
    how many times a secret was given; never the secret): another version means another
    change came between."""
    made = {"name": dest.name, "kind": dest.kind.value, "config": dest.config}
    if changes := dest.secret.get(SECRET_CHANGES):  # none before secrets were counted
        made["secret_changes"] = changes
    return digest(made)


# what `settings_version` makes (a SHA-256 digest in hex): anything else, given as the
# version a change is made from, is a typo or a cut copy, not another change come between
_VERSION_SHAPE = re.compile(r"[0-9a-f]{64}")


def well_formed_version(text: str) -> bool:
    """Whether `text` can be a `settings_version` (not whether any connection is at it)."""
    return _VERSION_SHAPE.fullmatch(text) is not None


# where each reader has the version a change is made from, said when one given holds none
_VERSION_FROM = {
    Reader.API: "give the ETag a GET answered (64 lowercase hexadecimal characters, in double "
    'quotes), or "*"',
    Reader.CLI: "give the 64 hexadecimal characters `sis show` printed, or the ETag the API "
    'answered (the same in double quotes, "..."); a weak tag (W/"...") never matches',
    Reader.CONSOLE: "the form holds the 64 lowercase hexadecimal characters of the settings it "
    "was opened with. Open the settings again",
}


def version_problem(version: str, reader: Reader, typed: str | None = None) -> FieldProblem | None:
    """The one check of the version a change of a connection's settings is made from (an API
    client's If-Match tag, the command line's --expect-version, the console form's): one that
    can be no `settings_version` (a typo, a cut copy, an edited page) is bad input (`etag`),
    in `reader`'s words, never read as a version changed since (`changed`), which it is not.
    `typed`: the version as the reader gave it, when read first (the command line takes the
    ETag's quotes, and either case). Located at `version`: each reader names it its own way."""
    if well_formed_version(version):
        return None
    given = version if typed is None else typed
    said = f"{given!r} is" if given else "None was given, and that is"
    return FieldProblem("version", "etag", f"{said} no settings version: {_VERSION_FROM[reader]}.")


# a version that any stored version matches (HTTP's `If-Match: *`): the connection exists
ANY_VERSION = "*"


def _taken(destination_id: str) -> Conflict:
    return Conflict(
        f"A destination {destination_id!r} already exists.", field="destination_id", rule="unique"
    )


def _check_version(
    current: Destination | None, version: str | Collection[str], destination_id: str
) -> None:
    wanted = {version} if isinstance(version, str) else set(version)
    if current is not None and (ANY_VERSION in wanted or settings_version(current) in wanted):
        return
    raise Conflict(
        "These settings were changed since you opened them"
        + (
            f": they are at version {settings_version(current)} now."
            if current is not None
            else f": no SIS connection {destination_id!r} is stored now."
        ),
        field="version",
        rule="changed",
    )


def token_origin(config: dict[str, Any]) -> tuple[str, str, int | None] | None:
    """Where a connection's client secret goes: the scheme, host and port of its token URL,
    or of its base URL when the token URL is the default (next to the API, on its server).
    None when it has neither."""
    url = str(config.get("token_url") or config.get("base_url") or "").strip()
    if not url:
        return None
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or {"http": 80, "https": 443}.get(scheme)
    except ValueError:  # not a port: unlike every other URL (the URL rule refuses it too)
        return (scheme, url, None)
    return (scheme, (parts.hostname or "").lower(), port)


def _moved_secret_problems(before: dict[str, Any], after: dict[str, Any]) -> list[FieldProblem]:
    """The stored secret is sent only to the server it was given for: a change that sends
    the token request elsewhere must give the secret again, or whoever may edit the settings
    could have it posted to a server of their choosing."""
    moved = token_origin(after)
    if moved is None or moved == token_origin(before):
        return []
    how = (
        "The token URL now leads to another server"
        if after.get("token_url")
        else "With the default token URL (next to the API), the new base URL leads the token "
        "request to another server"
    )
    return [
        FieldProblem(
            "client_secret",
            "required",
            f"A new token URL needs the client secret again. {how}; the stored secret goes "
            "only to the server it was given for.",
        )
    ]


def _clear_problems(
    clear: Collection[str],
    token_url: str | None,
    scopes: Sequence[str] | None,
    profile: dict[str, Any],
    spelled: Callable[[str], str],
) -> list[FieldProblem]:
    """Each name in `clear` must be an optional setting, not also given a value here."""
    given = {"token_url": token_url, "scopes": scopes, **profile}
    problems: list[FieldProblem] = []
    for i, key in enumerate(clear):
        if key not in CLEARABLE:
            problems.append(
                FieldProblem(
                    f"clear[{i}]",
                    "one_of",
                    f"{spelled(key)!r} is no optional setting; settings that can be cleared: "
                    f"{', '.join(spelled(k) for k in CLEARABLE)}.",
                )
            )
        elif given.get(key) not in (None, ""):  # "" is the token URL's own clear
            problems.append(
                FieldProblem(
                    f"clear[{i}]",
                    "exclusive",
                    f"{spelled(key)} is given a value and cleared: give one or the other.",
                )
            )
    return problems
