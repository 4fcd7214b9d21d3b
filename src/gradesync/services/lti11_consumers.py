"""LTI 1.1 consumers: registering an LMS that launches gradesync over LTI 1.1, and the host
rules that keep its outcome URLs pointed at that LMS (SSRF protection).

A consumer is a Destination of kind LTI11_OUTCOMES:
    config {"consumer_key", "allowed_hosts": [...], "comments": bool}, secret {"consumer_secret"}
The destination repository encrypts the secret at rest.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from gradesync.domain.errors import Conflict, FieldProblem, InvalidInput, NotFound
from gradesync.domain.model import Destination, DestinationKind
from gradesync.services.destination_admin import LIMITS
from gradesync.services.outbound import METADATA_NAMES, OutboundGuard, remedy_for
from gradesync.services.ports import UnitOfWork

_LABEL = r"[a-z0-9]([a-z0-9-]*[a-z0-9])?"
_HOST = re.compile(rf"^(\*\.)?{_LABEL}(\.{_LABEL})*(:\d{{1,5}})?$")
_ID = re.compile(r"^[A-Za-z0-9._~:@-]{1,255}$")
PROFILES = ("generic", "canvas", "moodle", "brightspace", "blackboard", "schoology")
MIN_SECRET_LENGTH = 16


def host_pattern_problem(pattern: object) -> str | None:
    """Why an allowed_hosts entry is unusable, or None. Entries are host names, optionally
    with a port (`lms.example.edu:8443`) or a leading `*.` for any subdomain."""
    if not isinstance(pattern, str) or not _HOST.match(pattern.lower()):
        return "not a host name, host:port or *.domain"
    return None


def host_allowed(url: str, allowed_hosts: Sequence[str]) -> bool:
    """True when `url` is http(s), carries no credentials, and its host (and port, where the
    entry names one) is one of `allowed_hosts`."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return False
    host = (parts.hostname or "").lower()
    if parts.scheme not in ("http", "https") or not host or parts.username or parts.password:
        return False
    effective_port = str(port or (443 if parts.scheme == "https" else 80))
    for pattern in allowed_hosts:
        pat_host, _, pat_port = pattern.lower().partition(":")
        if pat_port and effective_port != pat_port:
            continue
        if pat_host.startswith("*."):
            if host.endswith(pat_host[1:]):
                return True
        elif host == pat_host:
            return True
    return False


@dataclass(frozen=True, slots=True)
class ConsumerSpec:
    """A consumer as the caller gives it. `None` (name, secret, profile, comments) is left
    out: an update keeps the stored value, a new consumer gets the default (its id as the
    name; a secret it must be given)."""

    tenant_id: str
    destination_id: str
    name: str | None
    consumer_key: str
    consumer_secret: str | None  # None: an update keeps the stored secret
    allowed_hosts: tuple[str, ...]
    profile: str | None = None
    comments: bool | None = None


def _problems(
    spec: ConsumerSpec, name: str, profile: str, secret: str | None
) -> list[FieldProblem]:
    out: list[FieldProblem] = []
    if not _ID.match(spec.destination_id):
        out.append(
            FieldProblem("destination_id", "identifier", "1-255 letters, digits and . _ ~ : @ -")
        )
    if not name.strip():
        out.append(FieldProblem("name", "required", "A name people recognise, e.g. the LMS."))
    key = spec.consumer_key
    if not key.strip():
        out.append(FieldProblem("consumer_key", "required", "The consumer key is required."))
    elif len(key) > 255:
        out.append(
            FieldProblem("consumer_key", "too_long", f"At most 255 characters (not {len(key)}).")
        )
    elif key != key.strip():
        out.append(
            FieldProblem("consumer_key", "pattern", "No spaces before or after the consumer key.")
        )
    elif "\x00" in key:
        out.append(
            FieldProblem("consumer_key", "nul_character", "Must not contain a NUL character.")
        )
    if secret is None:
        out.append(
            FieldProblem(
                "consumer_secret",
                "required",
                "A new consumer needs the secret shared with the LMS "
                f"(at least {MIN_SECRET_LENGTH} characters).",
            )
        )
    elif not secret.strip():
        out.append(
            FieldProblem(
                "consumer_secret",
                "required",
                "The secret shared with the LMS cannot be blank (only spaces).",
            )
        )
    elif len(secret) < MIN_SECRET_LENGTH:
        out.append(
            FieldProblem(
                "consumer_secret",
                "min_length",
                f"At least {MIN_SECRET_LENGTH} characters: the secret is all that proves a "
                "launch came from the LMS.",
            )
        )
    if not spec.allowed_hosts:
        out.append(
            FieldProblem(
                "allowed_hosts",
                "required",
                "List the LMS host(s) its outcome URLs use, e.g. lms.example.edu.",
            )
        )
    for i, host in enumerate(spec.allowed_hosts):
        problem = host_pattern_problem(host)
        if problem:
            out.append(FieldProblem(f"allowed_hosts[{i}]", "host", f"{host!r}: {problem}."))
    if profile not in PROFILES:
        out.append(FieldProblem("profile", "one_of", f"One of {', '.join(PROFILES)}."))
    return out


def _address_problems(spec: ConsumerSpec, guard: OutboundGuard) -> list[FieldProblem]:
    """Where the allowed hosts lead must be a place gradesync may send outcomes to: no private,
    loopback, link-local or metadata address (unless the operator allows that network), no
    metadata name under a `*.` entry. Plain http is checked on each launch's outcome URL."""
    out: list[FieldProblem] = []
    for i, pattern in enumerate(spec.allowed_hosts):
        if host_pattern_problem(pattern) is not None:
            continue  # not a host: refused as such (`host`), it leads nowhere
        host = pattern.lower()
        if host.startswith("*."):
            covered = [m for m in METADATA_NAMES if m.endswith(host[1:])]
            if covered and guard.policy.name_problem(covered[0]) is not None:
                out.append(
                    FieldProblem(
                        f"allowed_hosts[{i}]",
                        "address",
                        f"{pattern!r} is refused: it covers {covered[0]}, a cloud metadata "
                        "host. List the LMS's own host names instead.",
                    )
                )
                continue
            host = host[2:]
        why = guard.url_problem(f"https://{host}")
        if why is not None:
            out.append(
                FieldProblem(
                    f"allowed_hosts[{i}]",
                    "address",
                    f"{pattern!r} is refused: {why}. {remedy_for(why)}",
                )
            )
    return out


def add_consumer(
    uow: UnitOfWork,
    spec: ConsumerSpec,
    now: datetime,
    guard: OutboundGuard | None = None,
    *,
    new: bool = False,
) -> Destination:
    """Create or update an LTI 1.1 consumer (no commit: the caller commits). Every entrypoint
    passes the runtime's outbound `guard`. With `new` (the console's Add form) it only
    creates: a destination with the id already is a Conflict, not replaced.

    A consumer key identifies the consumer on every launch, so it may be registered once in
    the whole installation; updating the same destination (e.g. a new secret) is allowed.
    An update keeps what `spec` leaves out (None), so a new secret forgets neither the name,
    the profile nor the comments."""
    # held to the commit, first (before the destination's row, as a platform's issuer): a
    # registration racing this one reads the key after this one's write
    uow.lti_links.lock_consumer_key(spec.consumer_key)
    # held to the commit: what an update keeps (the pause, the limits) is written back, and
    # read unlocked a change committed meanwhile (PostgreSQL's read committed) was lost
    old = uow.destinations.get(spec.tenant_id, spec.destination_id, for_update=True)
    taken = f"A destination {spec.destination_id!r} already exists."
    if new and old is not None:
        raise Conflict(taken, field="destination_id", rule="unique")
    if old is not None and old.kind is not DestinationKind.LTI11_OUTCOMES:
        # named by its field and rule, as a SIS connection's id of another kind is
        raise Conflict(
            f"destination {spec.destination_id!r} exists and is a {old.kind.value} "
            "destination, not an LTI 1.1 consumer: give the consumer an id of its own",
            field="destination_id",
            rule="kind",
        )
    name = spec.name if spec.name is not None else old.name if old else spec.destination_id
    profile = spec.profile if spec.profile is not None else old.profile if old else "generic"
    comments = (
        spec.comments if spec.comments is not None else bool(old and old.config.get("comments"))
    )
    secret = spec.consumer_secret
    if secret is None and old is not None:
        secret = old.secret.get("consumer_secret")
    problems = _problems(spec, name, profile, secret)
    if guard is not None:  # listed with the others: every problem at once
        problems += _address_problems(spec, guard)
    if problems:
        raise InvalidInput(problems)
    if uow.tenants.get(spec.tenant_id) is None:
        raise NotFound("tenant", spec.tenant_id)
    for other_tenant, other_id in sorted(uow.lti_links.consumers_with_key(spec.consumer_key)):
        if (other_tenant, other_id) != (spec.tenant_id, spec.destination_id):
            # a conflict with what is stored (exit 4, HTTP 409), not a malformed key; another
            # tenant's consumer is not named: a caller learns nothing of it
            if other_tenant == spec.tenant_id:
                whose = f"is already the key of consumer {other_id!r} of this tenant"
            else:
                whose = "is already taken by another registration"
            raise Conflict(
                f"The consumer key {spec.consumer_key!r} {whose}; every consumer needs its "
                "own key.",
                field="consumer_key",
                rule="taken",
            )
    dest = Destination(
        tenant_id=spec.tenant_id,
        id=spec.destination_id,
        kind=DestinationKind.LTI11_OUTCOMES,
        name=name.strip(),
        profile=profile,
        config={
            # limits are set apart (`destination_admin.set_limits`): an update keeps them
            **{k: v for k, v in (old.config if old else {}).items() if k in LIMITS},
            "consumer_key": spec.consumer_key,
            # host names know no case: each is kept once, in the order given
            "allowed_hosts": list(dict.fromkeys(h.lower() for h in spec.allowed_hosts)),
            "comments": comments,
        },
        secret={"consumer_secret": secret},
        enabled=old.enabled if old else True,
        paused_until=old.paused_until if old else None,
        pause_reason=old.pause_reason if old else None,
        pause_cause=old.pause_cause if old else None,
    )
    if old is not None:
        uow.destinations.upsert(dest, now)
    elif not uow.destinations.add(dest, now):
        # made meanwhile by another process (PostgreSQL's read committed: the row read above
        # was not there and locked nothing): not written over with the defaults of what this
        # change leaves out, but refused, or changed as a stored consumer is
        if new:
            raise Conflict(taken, field="destination_id", rule="unique")
        return add_consumer(uow, spec, now, guard)
    return dest
