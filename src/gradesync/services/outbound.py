"""Where gradesync may send a request: the outbound-request guard's rules.

Every URL gradesync calls comes from someone else: an admin's registration, a launch's claims,
a platform's answers. Without a rule, any of them could point the server at its own cloud
metadata service or an internal network (SSRF). The rule: a request goes only to a public
address over https. Loopback, private, link-local (cloud metadata), shared, multicast,
unspecified, reserved and IPv4-mapped addresses, and the metadata host names, are refused
unless the operator lists their network in `outbound_allowed_networks`; plain http is allowed
only to an address in such a network.

This module holds the rules and the `Resolver` port; the HTTP side (resolve once, check,
connect to that very address) is `gradesync.adapters.outbound_http`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

from gradesync.domain.errors import FieldProblem
from gradesync.services.destination import FailureClass, RemoteFailure

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Names that reach a cloud's instance metadata service from inside that cloud.
METADATA_NAMES = frozenset(
    {
        "metadata.google.internal",
        "metadata.goog",
        "metadata",
        "instance-data",
        "instance-data.ec2.internal",
        "metadata.azure.com",
    }
)
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "fd00:ec2::254", "169.254.170.2", "100.100.100.200")
)
LOOPBACK_NETWORKS = ("127.0.0.0/8", "::1/128")

REMEDY = (
    "gradesync sends requests only to public addresses over https. If this address is "
    "genuinely where the service runs (an on-premises LMS or SIS), an operator can allow its "
    "network with GRADESYNC_OUTBOUND_ALLOWED_NETWORKS (docs/security.md)."
)
# No LMS or SIS runs at a metadata service: allowing it is never the fix (docs/security.md).
METADATA_REMEDY = (
    "That is a cloud's instance metadata service, where no LMS or SIS runs: correct the URL "
    "or host. Do not allow its network: every tenant's registration could then reach it "
    "(docs/security.md)."
)


def remedy_for(why: str) -> str:
    """What to do about a refusal whose reason is `why`."""
    return METADATA_REMEDY if "metadata" in why else REMEDY


class OutboundRefused(RemoteFailure):
    """A request gradesync will not send: a misconfiguration, never retried as such."""

    def __init__(self, target: str, why: str, *, field: str | None = None) -> None:
        where = f"{field}: " if field else ""
        super().__init__(
            FailureClass.MISCONFIGURED,
            "address_refused",
            f"{where}{target!r} is refused: {why}",
            remedy=remedy_for(why),
            final=True,
        )
        self.field = field
        self.why = why


class Resolver(Protocol):
    """Name resolution (the system's in production; a fixed table in tests)."""

    async def resolve(self, host: str, port: int) -> list[str]: ...

    def resolve_now(self, host: str, port: int) -> list[str]:
        """The same, blocking (registration runs in a worker thread)."""
        ...


_PART = re.compile(r"^(0[xX][0-9a-fA-F]*|0[0-7]*|[1-9][0-9]*)$")


def literal_address(host: str) -> IPAddress | None:
    """The address a host names literally, in every form a resolver accepts for one:
    dotted quad, IPv6 (bracketed or not, with a zone), and the old inet_aton forms
    (`2852039166`, `0xa9fea9fe`, `0251.0376.0251.0376`, `127.1`)."""
    h = host.strip().rstrip(".").strip("[]")
    if "%" in h:
        h = h.split("%", 1)[0]
    try:
        return ipaddress.ip_address(h)
    except ValueError:
        pass
    parts = h.split(".")
    if not 1 <= len(parts) <= 4 or not all(_PART.match(p) for p in parts):
        return None
    nums = []
    for p in parts:
        base = 16 if p[:2].lower() == "0x" else 8 if len(p) > 1 and p[0] == "0" else 10
        digits = p[2:] if base == 16 else p
        nums.append(int(digits or "0", base))
    last_bits = 8 * (5 - len(nums))
    if any(n > 255 for n in nums[:-1]) or nums[-1] >= 1 << last_bits:
        return None
    value = 0
    for n in nums[:-1]:
        value = (value << 8) | n
    value = (value << last_bits) | nums[-1]
    return ipaddress.IPv4Address(value)


def _embedded_v4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address carries (mapped, compatible, 6to4, Teredo, NAT64)."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    packed = int(ip)
    if packed >> 32 == 0x0064FF9B << 64 or (packed >> 32 == 0 and packed > 1):
        return ipaddress.IPv4Address(packed & 0xFFFFFFFF)  # NAT64 / IPv4-compatible
    return None


def _kind(ip: IPAddress) -> str | None:
    """Why an address is not a public one (None when it is)."""
    if ip in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if ip.is_unspecified:
        return "the unspecified address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_multicast:
        return "a multicast address"
    if ip.is_private:
        return "a private address"
    if ip.is_reserved or not ip.is_global:
        return "not a public address"
    return None


@dataclass(frozen=True, slots=True)
class OutboundPolicy:
    """The operator's exceptions: networks gradesync may reach although they are not
    public (and reach over plain http)."""

    allowed_networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def allowing(cls, networks: Iterable[str]) -> OutboundPolicy:
        return cls(tuple(ipaddress.ip_network(n.strip(), strict=False) for n in networks))

    def warnings(self) -> list[str]:
        """What an operator should hear at start about networks allowed too widely."""
        out: list[str] = []
        for n in self.allowed_networks:
            if n.prefixlen == 0:
                out.append(
                    f"GRADESYNC_OUTBOUND_ALLOWED_NETWORKS allows {n}: every address, internal "
                    "networks and cloud metadata services included, over plain http too. List "
                    "only the networks where an LMS or SIS runs (docs/security.md)."
                )
            elif any(a.version == n.version and a in n for a in METADATA_ADDRESSES):
                out.append(
                    f"GRADESYNC_OUTBOUND_ALLOWED_NETWORKS allows {n}, which holds a cloud "
                    "metadata address: every tenant's registration can reach it "
                    "(docs/security.md)."
                )
        return out

    def allows(self, ip: IPAddress) -> bool:
        return any(ip.version == n.version and ip in n for n in self.allowed_networks)

    def address_problem(self, ip: IPAddress) -> str | None:
        """Why `ip` may not be reached (None when it may)."""
        if self.allows(ip):
            return None
        inner = _embedded_v4(ip)
        if inner is not None:
            if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
                return f"{ip} is an IPv4-mapped address (of {inner})"
            if self.allows(inner):
                return None
            why = _kind(inner)
            if why is not None:
                return f"{ip} carries {inner}, {why}"
        why = _kind(ip)
        return f"{ip} is {why}" if why is not None else None

    def name_problem(self, host: str) -> str | None:
        name = host.strip().rstrip(".").lower()
        if name in METADATA_NAMES and not any(self.allows(a) for a in METADATA_ADDRESSES):
            return f"{name} is a cloud metadata host"
        return None


def url_parts(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an absolute http(s) URL; None when it is not one."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        return None
    return scheme, parts.hostname, port or (443 if scheme == "https" else 80)


@dataclass(frozen=True, slots=True)
class OutboundGuard:
    """The rules and the resolver they are checked with."""

    policy: OutboundPolicy
    resolver: Resolver

    def check(
        self, host: str, addresses: Sequence[str], *, plain_http: bool, target: str
    ) -> list[str]:
        """The addresses of `host` that may be reached; OutboundRefused when none may."""
        problems: list[str] = []
        allowed: list[str] = []
        for raw in addresses:
            ip = literal_address(raw)
            if ip is None:
                problems.append(f"{raw} is not an address")
                continue
            why = self.policy.address_problem(ip)
            if why is None and plain_http and not self.policy.allows(ip):
                why = f"plain http to {ip}, which is not in an allowed network: use https"
            if why is None:
                allowed.append(str(ip))
            else:
                problems.append(why)
        if problems or not allowed:
            raise OutboundRefused(target, "; ".join(problems) or f"{host} has no address")
        return allowed

    async def addresses(self, host: str, port: int, *, plain_http: bool) -> list[str]:
        """Resolve `host` once and check every address it resolves to (connect-time)."""
        why = self.policy.name_problem(host)
        if why is not None:
            raise OutboundRefused(host, why)
        literal = literal_address(host)
        found = [str(literal)] if literal is not None else await self.resolver.resolve(host, port)
        return self.check(host, found, plain_http=plain_http, target=host)

    def static_problem(self, url: str) -> str | None:
        """What can be told of a URL without resolving its name (a launch's claims): its
        scheme, a literal address, a metadata name. The name is checked on connection."""
        parts = url_parts(url)
        if parts is None:
            return "not an absolute http(s) URL"
        scheme, host, _ = parts
        why = self.policy.name_problem(host)
        if why is not None:
            return why
        literal = literal_address(host)
        if literal is not None:
            try:
                self.check(host, [str(literal)], plain_http=scheme == "http", target=url)
            except OutboundRefused as exc:
                return exc.why
        elif scheme == "http" and not self.policy.allowed_networks:
            return "plain http is allowed only to an allowed network's address: use https"
        return None

    def url_problem(self, url: str) -> str | None:
        """Why a configured URL is refused (registration-time), or None. A name that does
        not resolve now is accepted: it is checked again on every connection."""
        parts = url_parts(url)
        if parts is None:
            return "not an absolute http(s) URL"
        scheme, host, port = parts
        why = self.policy.name_problem(host)
        if why is not None:
            return why
        literal = literal_address(host)
        if literal is not None:
            found = [str(literal)]
        else:
            try:
                found = self.resolver.resolve_now(host, port)
            except OSError:
                found = []
            if not found:
                return (
                    "plain http is allowed only to an allowed network's address: use https"
                    if scheme == "http"
                    else None
                )
        try:
            self.check(host, found, plain_http=scheme == "http", target=url)
        except OutboundRefused as exc:
            return exc.why
        return None


def url_without_credentials(url: str) -> str | None:
    """`url` with its `user:password@` shown as `***@`, or None when it holds none (or is
    not a URL urllib can split). The host is what follows the last `@`, as urllib reads it."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    _, at, host = parts.netloc.rpartition("@")
    if not at:
        return None
    return urlunsplit(parts._replace(netloc="***@" + host))


def url_field_problem(field: str, value: str, guard: OutboundGuard | None) -> FieldProblem | None:
    """The one check of a URL an admin configures for a destination (a SIS's base and token
    URLs, an LMS registration's URLs), from every entrypoint: no NUL character, an absolute
    http(s) URL without credentials, and, with `guard`, a place gradesync may send requests
    to. Credentials (`user:password@`) are refused because such a URL is stored and shown in
    plain text to every reader; the message never repeats the value when it may hold them."""
    if "\x00" in value:
        return FieldProblem(
            field, "nul_character", f"{field} must not contain a NUL character (\\u0000)."
        )
    try:
        parts = urlsplit(value.strip())
        _ = parts.port
    except ValueError:
        parts = None
    credentials = parts is not None and url_without_credentials(value.strip()) is not None
    if (
        parts is None
        or parts.scheme.lower() not in ("http", "https")
        or not parts.hostname
        or credentials
    ):
        shown = "" if "@" in value else f" (not {value!r})"
        why = (
            " A URL is stored and shown in plain text: credentials go in their own fields."
            if credentials
            else ""
        )
        return FieldProblem(
            field,
            "url",
            f"{field} must be an absolute http(s) URL without credentials{shown}.{why}",
        )
    why_refused = guard.url_problem(value) if guard is not None else None
    if why_refused is not None:
        # the field is named beside the message wherever it is shown (field: message)
        return FieldProblem(
            field, "address", f"{value!r} is refused: {why_refused}. {remedy_for(why_refused)}"
        )
    return None


class FixedResolver:
    """A resolver that answers from a table (tests, and hosts pinned by an operator)."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = {k.lower(): list(v) for k, v in table.items()}

    async def resolve(self, host: str, port: int) -> list[str]:
        return self.resolve_now(host, port)

    def resolve_now(self, host: str, port: int) -> list[str]:
        try:
            return list(self.table[host.strip().rstrip(".").lower()])
        except KeyError:
            raise OSError(f"{host}: name not known") from None
