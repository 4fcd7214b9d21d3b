"""The outbound-request guard: every address form an attacker would try, refused at
registration, at a destination's check and at send time; the connection goes to the checked
address. No test sends traffic anywhere but loopback: names resolve through a table here."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from gradesync.adapters.db.database import Database
from gradesync.adapters.destinations.oneroster import OneRosterClient
from gradesync.adapters.destinations.registry import DestinationContext
from gradesync.adapters.outbound_http import guarded_client
from gradesync.config import Settings
from gradesync.domain.model import Destination, DestinationKind
from gradesync.runtime import Runtime
from gradesync.services import auth
from gradesync.services.destination import FailureClass, RemoteFailure
from gradesync.services.outbound import (
    LOOPBACK_NETWORKS,
    FixedResolver,
    OutboundGuard,
    OutboundPolicy,
    OutboundRefused,
    literal_address,
    url_field_problem,
    url_without_credentials,
)
from gradesync.services.tenants import create_tenant
from gradesync.testing import TEST_SECRET
from gradesync.web.app import create_app

# Names the tests resolve: a public LMS, and names that lead inside.
NAMES = {
    "lms.example.edu": ["93.184.216.34"],
    "sis.example.edu": ["93.184.216.35"],
    "inside.example.edu": ["10.0.0.5"],
    "both.example.edu": ["93.184.216.36", "192.168.1.9"],
    "v6inside.example.edu": ["fd12:3456::1"],
    "loop.example.edu": ["127.0.0.1"],
}

# Every address form that leads somewhere gradesync must not send to.
REFUSED = [
    "https://169.254.169.254/latest/meta-data",
    "https://10.0.0.5/jwks",
    "https://172.16.0.1/",
    "https://192.168.0.1/",
    "https://127.0.0.1/",
    "https://127.1/",
    "https://0.0.0.0/",
    "https://100.64.0.1/",  # shared address space (carrier-grade NAT)
    "https://224.0.0.1/",
    "https://255.255.255.255/",
    "https://2852039166/",  # 169.254.169.254, decimal
    "https://0xa9fea9fe/",  # hexadecimal
    "https://0xA9.0xFE.0xA9.0xFE/",
    "https://0251.0376.0251.0376/",  # octal
    "https://017700000001/",  # 127.0.0.1, octal
    "https://[::ffff:a9fe:a9fe]/token",  # IPv4-mapped metadata
    "https://[::ffff:127.0.0.1]/",
    "https://[::ffff:8.8.8.8]/",  # mapped, even of a public address
    "https://[::a9fe:a9fe]/",  # IPv4-compatible
    "https://[64:ff9b::a9fe:a9fe]/",  # NAT64
    "https://[2002:a9fe:a9fe::]/",  # 6to4
    "https://[fd00:ec2::254]/",  # AWS metadata over IPv6
    "https://[::1]/",
    "https://[::]/",
    "https://[fe80::1]/",
    "https://[fc00::1]/",
    "https://[ff02::1]/",
    "https://metadata.google.internal/computeMetadata/v1/",
    "https://METADATA.GOOGLE.INTERNAL./",
    "https://inside.example.edu/jwks",  # a name that resolves to a private address
    "https://both.example.edu/",  # one of its addresses is private
    "https://v6inside.example.edu/",
    "http://lms.example.edu/token",  # plain http to a public address
]


def guard(*networks: str) -> OutboundGuard:
    return OutboundGuard(OutboundPolicy.allowing(networks), FixedResolver(NAMES))


@pytest.mark.parametrize("url", REFUSED)
def test_every_address_form_is_refused(url: str) -> None:
    assert guard().url_problem(url) is not None


@pytest.mark.parametrize(
    "url", ["https://lms.example.edu/jwks", "https://93.184.216.34/", "https://unknown.example/"]
)
def test_public_https_is_allowed(url: str) -> None:
    # a name that does not resolve now is checked again on every connection
    assert guard().url_problem(url) is None


def test_allowed_networks_open_an_address_and_plain_http_to_it() -> None:
    g = guard(*LOOPBACK_NETWORKS)
    assert g.url_problem("http://127.0.0.1:8080/") is None
    assert g.url_problem("http://loop.example.edu/") is None
    assert g.url_problem("https://[::1]/") is None
    assert g.url_problem("https://169.254.169.254/") is not None
    assert g.url_problem("http://lms.example.edu/") is not None  # public: https only
    assert guard("169.254.169.254/32").url_problem("https://metadata.google.internal/") is None


def test_literal_forms() -> None:
    assert str(literal_address("2852039166")) == "169.254.169.254"
    assert str(literal_address("0251.0376.0251.0376")) == "169.254.169.254"
    assert str(literal_address("0xa9fea9fe")) == "169.254.169.254"
    assert str(literal_address("10.1")) == "10.0.0.1"
    assert literal_address("lms.example.edu") is None
    assert literal_address("1.2.3.256") is None
    assert literal_address("deadbeef") is None


# --- registration (API) ---------------------------------------------------------------------


@pytest.fixture
def served(db: Database, tmp_path: Path) -> Iterator[tuple[Runtime, TestClient, str]]:
    settings = Settings(
        database_url=db.url,
        secret_key=TEST_SECRET,
        data_dir=tmp_path / "data",
        outbound_allowed_networks=[],
    )
    rt = Runtime(settings=settings, db=db, outbound=guard())
    create_tenant(rt.db.uow, rt.clock, "uni", "Uni")
    token = auth.create_key(rt.db.uow, rt.clock, "uni", "admin", ["admin"]).token
    with TestClient(create_app(rt)) as client:
        yield rt, client, token


def platform(**over: Any) -> dict[str, Any]:
    return {
        "id": "lms",
        "issuer": "https://lms.example.edu",
        "client_id": "c1",
        "deployment_ids": ["d1"],
        "auth_login_url": "https://lms.example.edu/auth",
        "auth_token_url": "https://lms.example.edu/token",
        "key_set_url": "https://lms.example.edu/jwks",
        **over,
    }


@pytest.mark.parametrize("field", ["auth_token_url", "key_set_url"])
def test_registration_refuses_the_address_naming_the_field(
    served: tuple[Runtime, TestClient, str], field: str
) -> None:
    rt, client, token = served
    for url in REFUSED:
        r = client.post(
            "/api/v1/platforms",
            json=platform(**{field: url}),
            headers={"Authorization": f"Bearer {token}"},
        )
        assert r.status_code == 422, (url, r.text)
        assert field in str(r.json()["detail"]), url
    with rt.db.uow() as uow:
        assert uow.destinations.get("uni", "lms") is None


@pytest.mark.parametrize(
    "host", ["http://169.254.169.254", "10.0.0.5", "inside.example.edu", "http://lms.example.edu"]
)
def test_allowed_hosts_are_checked_too(served: tuple[Runtime, TestClient, str], host: str) -> None:
    _, client, token = served
    headers = {"Authorization": f"Bearer {token}"}
    assert client.post("/api/v1/platforms", json=platform(), headers=headers).status_code == 201
    r = client.put("/api/v1/platforms/lms", json=platform(allowed_hosts=[host]), headers=headers)
    assert r.status_code == 422, r.text
    assert "allowed_hosts" in r.text


@pytest.mark.parametrize("field", ["base_url", "token_url"])
def test_sis_connection_refuses_the_address(
    served: tuple[Runtime, TestClient, str], field: str
) -> None:
    _, client, token = served
    body = {
        "name": "SIS",
        "base_url": "https://sis.example.edu/ims/oneroster/gradebook/v1p2",
        "client_id": "c",
        "client_secret": "s3cret-s3cret",
        field: "https://[::ffff:a9fe:a9fe]/x",
    }
    r = client.put(
        "/api/v1/sis/connections/sis", json=body, headers={"Authorization": f"Bearer {token}"}
    )
    assert r.status_code == 422, r.text
    assert field in r.text


# --- check and send: the connection-time guard ----------------------------------------------


def _sis(token_url: str) -> Destination:
    return Destination(
        tenant_id="uni",
        id="sis",
        kind=DestinationKind.ONEROSTER_REST,
        name="SIS",
        profile="oneroster",
        config={
            "base_url": "https://sis.example.edu/ims/oneroster/gradebook/v1p2",
            "token_url": token_url,
            "client_id": "c",
        },
        secret={"client_secret": "s3cret-s3cret"},
    )


def test_check_reports_a_name_that_now_resolves_inside(
    served: tuple[Runtime, TestClient, str],
) -> None:
    """Registered while the name was public; by the check it leads inside (rebinding)."""
    rt, client, token = served
    table = dict(NAMES)
    rt.outbound = OutboundGuard(OutboundPolicy(), FixedResolver(table))
    with rt.db.uow() as uow:
        uow.destinations.upsert(_sis("https://sis.example.edu/token"), rt.clock.now())
        uow.commit()
    rt.outbound.resolver.table["sis.example.edu"] = ["169.254.169.254"]  # type: ignore[attr-defined]
    r = client.post(
        "/api/v1/destinations/sis/check", json={}, headers={"Authorization": f"Bearer {token}"}
    )
    assert r.status_code == 200, r.text
    first = r.json()["steps"][0]
    assert not first["passed"]
    assert "169.254.169.254" in first["evidence"] and "refused" in first["evidence"]


@pytest.mark.parametrize("url", REFUSED)
async def test_send_refuses_without_connecting(url: str) -> None:
    """The adapters' requests go through the guard: a misconfiguration, never retried."""
    async with guarded_client(guard()) as http:
        client = OneRosterClient(_sis(url), DestinationContext(http=http))
        try:
            await client.categories(refresh=True)
        except httpx.InvalidURL:
            # httpx itself refuses some forms (octal quads) before any connection
            assert "0251" in url
            return
        except RemoteFailure as failure:
            assert failure.failure is FailureClass.MISCONFIGURED
            assert failure.code == "address_refused"
            return
    pytest.fail(f"{url} was not refused")


async def test_runtime_pool_is_guarded(db: Database, tmp_path: Path) -> None:
    settings = Settings(database_url=db.url, secret_key=TEST_SECRET, outbound_allowed_networks=[])
    rt = Runtime(settings=settings, db=db)
    http = rt.destination_context().http
    try:
        with pytest.raises(OutboundRefused):
            await http.get("http://127.0.0.1:9/")
    finally:
        await http.aclose()


# --- the connection goes to the checked address, with the URL's Host ------------------------


class _Server:
    def __init__(self) -> None:
        self.hosts: list[str] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        for line in head.decode().split("\r\n"):
            if line.lower().startswith("host:"):
                self.hosts.append(line.split(":", 1)[1].strip())
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
        await writer.drain()
        writer.close()


@pytest.fixture
async def server() -> AsyncIterator[tuple[_Server, int]]:
    s = _Server()
    srv = await asyncio.start_server(s.handle, "127.0.0.1", 0)
    async with srv:
        yield s, srv.sockets[0].getsockname()[1]


async def test_connects_to_the_resolved_address_keeping_the_host(
    server: tuple[_Server, int],
) -> None:
    s, port = server
    calls: list[str] = []

    class Once(FixedResolver):
        async def resolve(self, host: str, port: int) -> list[str]:
            calls.append(host)
            return await super().resolve(host, port)

    g = OutboundGuard(OutboundPolicy.allowing(["127.0.0.1/32"]), Once(NAMES))
    async with guarded_client(g) as http:
        r = await http.get(f"http://loop.example.edu:{port}/x")
    assert r.text == "ok"
    assert s.hosts == [f"loop.example.edu:{port}"]
    assert calls == ["loop.example.edu"]  # resolved once, by the guard


async def test_refused_when_any_address_is_outside(server: tuple[_Server, int]) -> None:
    s, port = server
    g = OutboundGuard(
        OutboundPolicy.allowing(["127.0.0.1/32"]),
        FixedResolver({"mixed.example.edu": ["127.0.0.1", "10.0.0.5"]}),
    )
    async with guarded_client(g) as http:
        with pytest.raises(OutboundRefused):
            await http.get(f"http://mixed.example.edu:{port}/")
    assert s.hosts == []


async def test_a_name_that_does_not_resolve_is_a_connection_failure() -> None:
    async with guarded_client(guard()) as http:
        with pytest.raises(httpx.ConnectError):
            await http.get("https://nowhere.example.edu/")


# --- one TLS context for every one-off client -------------------------------------------------


def _self_signed(directory: Path, host: str) -> tuple[Path, Path]:
    """A certificate for `host` signed by its own key: (certificate, key) PEM files."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


@pytest.fixture
async def tls_server(tmp_path: Path) -> AsyncIterator[tuple[_Server, int, Path]]:
    """An HTTPS server on loopback, its certificate trusted by no one yet."""
    import ssl

    cert_file, key_file = _self_signed(tmp_path, "loop.example.edu")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert_file, key_file)
    s = _Server()
    srv = await asyncio.start_server(s.handle, "127.0.0.1", 0, ssl=ctx)
    async with srv:
        yield s, srv.sockets[0].getsockname()[1], cert_file


@pytest.fixture
def fresh_tls_context() -> Iterator[None]:
    """The process's TLS context made again for the test, and after it."""
    from gradesync.adapters.outbound_http import tls_context

    tls_context.cache_clear()
    yield
    tls_context.cache_clear()


def _tls_of(http: httpx.AsyncClient) -> Any:
    """The TLS context httpx's pool under a guarded client makes its connections with."""
    return http._transport._inner._pool._ssl_context  # type: ignore[attr-defined]


async def test_one_off_clients_share_one_verifying_tls_context(
    tls_server: tuple[_Server, int, Path],
    fresh_tls_context: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each context loads the whole CA bundle (about 830 kB of OpenSSL's memory, and
    milliseconds of CPU): the one-off clients (a console check, a SIS directory read, a
    registration) share the process's one, which still verifies certificates."""
    s, port, cert_file = tls_server
    g = OutboundGuard(OutboundPolicy.allowing(["127.0.0.1/32"]), FixedResolver(NAMES))
    url = f"https://loop.example.edu:{port}/x"
    # certifi's bundle does not know the server's certificate: refused
    async with guarded_client(g) as http:
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await http.get(url)
    # trusted through SSL_CERT_FILE (read when the process's context is made): two clients,
    # one context, each with a real TLS exchange
    from gradesync.adapters.outbound_http import tls_context

    tls_context.cache_clear()
    monkeypatch.setenv("SSL_CERT_FILE", str(cert_file))
    async with guarded_client(g) as first, guarded_client(g) as second:
        assert (await first.get(url)).text == "ok"
        assert (await second.get(url)).text == "ok"
        assert _tls_of(first) is _tls_of(second) is tls_context()
    assert s.hosts == [f"loop.example.edu:{port}"] * 2


# --- LTI 1.1 consumers: allowed hosts at registration, outcome URLs at launch ---------------


@pytest.mark.parametrize(
    ("host", "networks", "refused"),
    [
        ("lms.example.edu", (), False),
        ("*.instructure.com", (), False),
        ("unknown.example", (), False),  # checked again on every connection
        ("169.254.169.254", (), True),
        ("2852039166", (), True),  # the same, decimal
        ("10.0.0.5", (), True),
        ("127.0.0.1:8080", (), True),
        ("inside.example.edu", (), True),  # resolves to a private address
        ("both.example.edu", (), True),
        ("metadata.google.internal", (), True),
        ("*.google.internal", (), True),  # covers the metadata name
        ("*.internal", (), True),
        ("127.0.0.1:8080", ("127.0.0.0/8",), False),  # the operator allows loopback
        ("loop.example.edu", ("127.0.0.0/8",), False),
        ("169.254.169.254", ("127.0.0.0/8",), True),
    ],
)
def test_lti11_allowed_hosts_are_checked_at_registration(
    db: Database, host: str, networks: tuple[str, ...], refused: bool
) -> None:
    from gradesync.domain.errors import InvalidInput
    from gradesync.services.lti11_consumers import ConsumerSpec, add_consumer
    from gradesync.testing import add_tenant

    add_tenant(db.uow, "uni")
    spec = ConsumerSpec("uni", "moodle11", "Moodle", "key-1", "s" * 20, ("lms.example.edu", host))
    with db.uow() as uow:
        if not refused:
            add_consumer(uow, spec, _now(), guard(*networks))
            return
        with pytest.raises(InvalidInput) as caught:
            add_consumer(uow, spec, _now(), guard(*networks))
    [problem] = caught.value.problems
    assert (problem.field, problem.rule) == ("allowed_hosts[1]", "address")
    assert host in problem.message


@pytest.mark.parametrize(
    ("url", "networks", "refused"),
    [
        ("https://lms.example.edu/outcomes", (), False),
        ("http://lms.example.edu/outcomes", (), True),  # plain http
        ("https://169.254.169.254/outcomes", (), True),
        ("http://127.0.0.1:8080/outcomes", ("127.0.0.0/8",), False),
        ("http://169.254.169.254/outcomes", ("127.0.0.0/8",), True),
    ],
)
def test_lti11_outcome_url_is_checked_at_launch(
    url: str, networks: tuple[str, ...], refused: bool
) -> None:
    from gradesync.lti.lti11_launch import read_launch
    from gradesync.lti.lti11_verify import LaunchRefused
    from gradesync.services.lti.lti11 import Consumer

    hosts = ("lms.example.edu", "169.254.169.254", "127.0.0.1:8080")
    consumer = Consumer("uni", "moodle11", "key-1", "s" * 20, hosts)
    params = {
        "lti_message_type": "basic-lti-launch-request",
        "lti_version": "LTI-1p0",
        "user_id": "u1",
        "context_id": "c1",
        "resource_link_id": "r1",
        "lis_result_sourcedid": "s1",
        "lis_outcome_service_url": url,
        "roles": "Learner",
    }
    if not refused:
        assert read_launch(params, consumer, guard(*networks)).outcome_url == url
        return
    with pytest.raises(LaunchRefused) as caught:
        read_launch(params, consumer, guard(*networks))
    assert "lis_outcome_service_url" in str(caught.value)
    assert "address_refused" in str(caught.value)


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime(2026, 1, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://u:p@sis.example.edu/token", "https://***@sis.example.edu/token"),
        ("https://u:p@a@sis.example.edu:8443/x?q=1", "https://***@sis.example.edu:8443/x?q=1"),
        ("https://sis.example.edu/token?mail=a@b", None),  # an @ after the host is no login
        ("https://sis.example.edu/token", None),
        ("mailto:a@b", None),
        ("https://[::1@x/", None),  # not a URL urllib splits
    ],
)
def test_credentials_in_a_url_are_found_and_hidden_by_one_rule(url: str, shown: str | None) -> None:
    assert url_without_credentials(url) == shown
    problem = url_field_problem("token_url", url, None)
    refused_for_credentials = problem is not None and "credentials go in" in problem.message
    assert refused_for_credentials is (shown is not None)
