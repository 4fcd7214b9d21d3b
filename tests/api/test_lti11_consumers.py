"""LTI 1.1 consumers over the API (`PUT /api/v1/lti11/consumers/{id}`): added and changed as
`gradesync lti11 add-consumer` does, and named by a misconfigured consumer's remedy."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from gradesync.adapters.destinations.lti11 import ConsumerConfig
from gradesync.domain.ledger import stored
from gradesync.domain.model import DeliveryState, DestinationKind, LedgerKey, LedgerRow
from gradesync.domain.remedies import names_command
from gradesync.services.delivery.failures import reason_of
from gradesync.services.destination import RemoteFailure
from tests.support.api import ROSTER, ApiEnv, Caller

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
SECRET = "a-secret-of-24-characters"
CONSUMER = {"consumer_key": "k-lms", "allowed_hosts": ["lms.example.edu"], "name": "LMS 1.1"}


def test_an_admin_adds_and_fixes_a_consumer_over_the_api(api: ApiEnv) -> None:
    """No API route added or changed an LTI 1.1 consumer: only the command line did. The
    route does, through the same service; a wrong value is refused naming the field and its
    rule, and changes nothing."""
    admin = Caller(api.client, api.tenant("t1", "admin"))
    route = "/lti11/consumers/lms11"
    # a new consumer needs its secret, long enough, and host names
    r = admin.put(route, json={**CONSUMER, "allowed_hosts": ["not a host"]})
    assert r.status_code == 422, r.text
    found = {(d["field"], d["rule"]) for d in r.json()["detail"]}
    assert found == {("consumer_secret", "required"), ("allowed_hosts[0]", "host")}, found
    r = admin.put(route, json={**CONSUMER, "consumer_secret": "short"})
    assert [(d["field"], d["rule"]) for d in r.json()["detail"]] == [
        ("consumer_secret", "min_length")
    ]
    assert admin.get("/destinations/lms11").status_code == 404
    # other keys than admin ones may not
    sync = Caller(api.client, api.tenant("t1", "sync"))
    assert sync.put(route, json={**CONSUMER, "consumer_secret": SECRET}).status_code == 403

    r = admin.put(route, json={**CONSUMER, "consumer_secret": SECRET})
    assert r.status_code == 200, r.text
    assert r.json()["kind"] == "lti11_outcomes" and r.json()["name"] == "LMS 1.1"
    assert SECRET not in r.text  # never shown back
    # a change keeps what it leaves out: the secret and the name
    r = admin.put(route, json={"consumer_key": "k-lms", "allowed_hosts": ["*.example.edu"]})
    assert r.status_code == 200, r.text
    with api.db.uow() as uow:
        stored = uow.destinations.get("t1", "lms11")
    assert stored is not None and stored.name == "LMS 1.1"
    assert stored.secret == {"consumer_secret": SECRET}
    assert stored.config["allowed_hosts"] == ["*.example.edu"]
    # a refused change changes nothing; a key with spaces around it (which the LMS never
    # sends) is refused, as the console strips them
    r = admin.put(route, json={"consumer_key": " k-lms", "allowed_hosts": ["*.example.edu"]})
    assert r.status_code == 422, r.text
    assert [(d["field"], d["rule"]) for d in r.json()["detail"]] == [("consumer_key", "pattern")]
    with api.db.uow() as uow:
        assert uow.destinations.get("t1", "lms11") == stored
    # a key another consumer holds is a conflict
    other = {**CONSUMER, "consumer_secret": SECRET}
    r = Caller(api.client, api.tenant("t2", "admin")).put("/lti11/consumers/x", json=other)
    assert r.status_code == 409, r.text


def test_a_misconfigured_consumers_remedy_names_the_apis_route(api: ApiEnv) -> None:
    """A consumer gradesync could not send with read `gradesync lti11 add-consumer` in a
    learner's grades over the API: it names the consumer route, which fixes it, and the
    resume route."""
    admin = Caller(api.client, api.tenant("t1", "admin"))
    admin.post("/ingest", json=ROSTER)
    r = admin.put("/lti11/consumers/lms11", json={**CONSUMER, "consumer_secret": SECRET})
    assert r.status_code == 200, r.text
    with api.db.uow() as uow:
        good = uow.destinations.get("t1", "lms11")
        assert good is not None and good.kind is DestinationKind.LTI11_OUTCOMES
        # hosts lost (a hand-edited row, an older release): the adapter refuses to send
        broken = replace(good, config={**good.config, "allowed_hosts": []})
        uow.destinations.upsert(broken, T0)
        uow.commit()
    try:
        ConsumerConfig.from_destination(broken)
        raise AssertionError("a consumer without hosts is refused")
    except RemoteFailure as failure:
        reason = reason_of(failure)
    # the adapter's words state the problem and name no command (a pause reason repeats them
    # to every reader); the remedy is held as a code, which each reader reads in its words
    assert not names_command(reason.text) and reason.fix is not None
    row = LedgerRow(
        LedgerKey("t1", "lms11", "a1", "p1"),
        DeliveryState.REJECTED,
        reason_code=reason.code,
        reason_text=stored(reason),
        updated_at=T0,
    )
    with api.db.uow() as uow:
        uow.ledger.save(row, "c1")
        uow.commit()
    g = admin.get("/people/p1/grades", params={"destination_id": "lms11"}).json()
    [said] = [x["reason_text"] for x in g["destinations"]["lms11"] if x["activity_id"] == "a1"]
    assert said == reason.text + (
        " — Fix the LTI 1.1 consumer's settings (`PUT /api/v1/lti11/consumers/lms11` with its "
        "`consumer_key` and `allowed_hosts`, and `consumer_secret` to change the secret; "
        "docs/lti11.md), then resume it (`POST /api/v1/destinations/lms11/resume`)."
    )
    assert not names_command(said)
    # the route named fixes it
    r = admin.put("/lti11/consumers/lms11", json=CONSUMER)
    assert r.status_code == 200, r.text
    with api.db.uow() as uow:
        fixed = uow.destinations.get("t1", "lms11")
    assert fixed is not None
    assert ConsumerConfig.from_destination(fixed).allowed_hosts == ("lms.example.edu",)


def test_a_bad_consumer_id_is_named_as_the_urls_path_parameter(api: ApiEnv) -> None:
    """The id is the URL's `consumer_id` (as /openapi.json names it): a bad one is located in
    the path under that name, not in the body as the service's `destination_id`."""
    admin = Caller(api.client, api.tenant("t1", "admin"))
    for bad in ("bad%20id", "x" * 300):
        r = admin.put(f"/lti11/consumers/{bad}", json={**CONSUMER, "consumer_secret": SECRET})
        assert r.status_code == 422, r.text
        assert [(d["loc"], d["field"], d["rule"]) for d in r.json()["detail"]] == [
            (["path", "consumer_id"], "consumer_id", "identifier")
        ]
    with api.db.uow() as uow:
        assert uow.destinations.all("t1") == []


def test_a_blank_secret_is_refused(api: ApiEnv) -> None:
    """A secret of spaces, however long, proves nothing: refused as blank (`required`), as a
    new consumer and as a change, and nothing is saved."""
    admin = Caller(api.client, api.tenant("t1", "admin"))
    blank = {**CONSUMER, "consumer_secret": " " * 20}
    r = admin.put("/lti11/consumers/c10", json=blank)
    assert r.status_code == 422, r.text
    assert [(d["field"], d["rule"]) for d in r.json()["detail"]] == [
        ("consumer_secret", "required")
    ]
    assert admin.get("/destinations/c10").status_code == 404
    assert admin.put(
        "/lti11/consumers/c10", json={**CONSUMER, "consumer_secret": SECRET}
    ).is_success
    r = admin.put("/lti11/consumers/c10", json=blank)
    assert r.status_code == 422, r.text
    with api.db.uow() as uow:
        stored = uow.destinations.get("t1", "c10")
    assert stored is not None and stored.secret == {"consumer_secret": SECRET}


def test_every_problem_is_listed_at_once(api: ApiEnv) -> None:
    """A host refused for where it leads (`address`) is listed with the body's other problems,
    not only once they are fixed."""
    admin = Caller(api.client, api.tenant("t1", "admin"))
    body = {
        "consumer_key": "",
        "allowed_hosts": ["http://x/y", "10.0.0.1", "", "localhost"],
        "consumer_secret": "x",
        "profile": "nope",
    }
    r = admin.put("/lti11/consumers/c1", json=body)
    assert r.status_code == 422, r.text
    found = {(d["field"], d["rule"]) for d in r.json()["detail"]}
    assert found == {
        ("consumer_key", "required"),
        ("consumer_secret", "min_length"),
        ("allowed_hosts[0]", "host"),
        ("allowed_hosts[1]", "address"),
        ("allowed_hosts[2]", "host"),
        ("profile", "one_of"),
    }, found
    assert admin.get("/destinations/c1").status_code == 404


def test_a_host_given_twice_is_stored_once(api: ApiEnv) -> None:
    """Host names know no case: `LMS2.example.edu` after `lms2.example.edu` is the same host,
    kept once, in the order given (as the command line and the console store it: the same
    service)."""
    admin = Caller(api.client, api.tenant("t1", "admin"))
    hosts = ["lms2.example.edu", "*.example.edu", "LMS2.example.edu", "*.EXAMPLE.edu"]
    body = {**CONSUMER, "allowed_hosts": hosts, "consumer_secret": SECRET}
    r = admin.put("/lti11/consumers/c1", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["config"]["allowed_hosts"] == ["lms2.example.edu", "*.example.edu"]
    with api.db.uow() as uow:
        stored = uow.destinations.get("t1", "c1")
    assert stored is not None
    assert stored.config["allowed_hosts"] == ["lms2.example.edu", "*.example.edu"]
