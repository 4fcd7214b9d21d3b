"""A class opening a link at once: launches that arrive together all get in (SQLite and
PostgreSQL).

The platform's keys are fetched before any database transaction opens, so launches waiting
for the key set hold no write lock: a launch holding SQLite's write lock across the fetch
would make the launches behind it end in HTTP 500 "database is locked".
"""

from __future__ import annotations

import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx

from gradesync.sandbox.testing import RunningSandbox
from tests.lti.conftest import Browser, Gradesync, KeysProxy, add_course, connect, unique

CLASS_SIZE = 6


def test_a_class_launching_at_once_all_get_in(lms: RunningSandbox, gradesync: Gradesync) -> None:
    keys = KeysProxy(lms.admin.config()["jwks_url"])
    keys.hold = True  # the platform serves its keys only once every launch is on its way
    try:
        s = connect(lms, gradesync, key_set_url=keys.url)
        add_course(gradesync.db, s.tenant_id, "bio", ("lab", "Lab", 10.0))
        learners = [unique("learner-") for _ in range(CLASS_SIZE)]
        ctx = unique("ctx-")
        lms.admin.add_course(id=ctx, title="LMS bio", learners=learners, instructors=[])
        lms.admin.add_resource_link(
            ctx,
            id="rl-lab",
            title="Lab",
            client_id=s.client_id,
            custom={"gradesync_course_id": "bio", "gradesync_activity_id": "lab"},
        )
        ready = threading.Barrier(CLASS_SIZE)
        sent = threading.Semaphore(0)

        def launch(learner: str) -> httpx.Response:
            browser = Browser()
            browser.http.event_hooks["request"].append(lambda request: sent.release())
            try:
                started = lms.admin.start_launch(
                    client_id=s.client_id, user=learner, course=ctx, resource_link_id="rl-lab"
                )
                action, fields = browser.login(started["url"])
                ready.wait(timeout=30)
                return browser.post(action, fields)
            finally:
                browser.close()

        with ThreadPoolExecutor(CLASS_SIZE) as pool:
            futures = [pool.submit(launch, learner) for learner in learners]
            # every launch is on its way before the platform hands out its keys
            for _ in range(CLASS_SIZE * 3):  # login, the platform's auth page, the launch
                assert sent.acquire(timeout=30)
            keys.release.set()
            answers = [f.result(timeout=60) for f in futures]

        assert [a.status_code for a in answers] == [200] * CLASS_SIZE, [a.text for a in answers]
        assert {a.json()["person_id"] for a in answers} == set(learners)
        assert all(a.json()["activity_id"] == "lab" for a in answers)
        assert keys.requests == 1  # one fetch served the whole class
        with gradesync.db.uow() as uow:
            enrolled = {e.person_id for e in uow.enrollments.for_course(s.tenant_id, "bio")}
        assert enrolled == set(learners)
    finally:
        keys.close()


def test_a_login_writes_nothing_and_the_launch_uses_its_nonce_once(
    lms: RunningSandbox, gradesync_lite: Gradesync, browser: Browser
) -> None:
    """The login initiation needs no write, so a class's logins do not queue behind SQLite's
    one writer (a held write lock does not hold one up); the nonce sealed in its state is
    used up by the launch, once."""
    gs = gradesync_lite
    s = connect(lms, gs)
    student, ctx = unique("learner-"), unique("ctx-")
    lms.admin.add_course(id=ctx, title="LMS bio", learners=[student], instructors=[])
    lms.admin.add_resource_link(ctx, id="rl-lab", title="Lab", client_id=s.client_id)
    started = lms.admin.start_launch(
        client_id=s.client_id, user=student, course=ctx, resource_link_id="rl-lab"
    )
    path = gs.db.sqlite_file
    assert path is not None
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another writer holds the write lock meanwhile
        action, fields = browser.login(started["url"])  # answered all the same
        other.rollback()
        count = "SELECT count(*) FROM nonces"
        assert other.execute(count).fetchone() == (0,)  # nothing stored at login
        first = browser.post(action, fields)
        assert first.status_code == 200, first.text
        assert other.execute(count).fetchone() == (1,)  # the launch used the nonce up
    finally:
        other.close()
    again = browser.post(action, fields)
    assert again.status_code == 401 and again.json()["error"] == "nonce_replayed"


def test_the_key_set_is_served_while_another_writer_holds_the_write_lock(
    gradesync_lite: Gradesync,
) -> None:
    """A platform fetching the tool's JWKS (each one, when many platforms start at once)
    never queues behind grades being written: the key set is read without a write lock."""
    gs = gradesync_lite
    url = f"{gs.base_url}/lti/jwks.json"
    first = httpx.get(url, timeout=10)  # the first fetch makes the tool's key
    assert first.status_code == 200 and len(first.json()["keys"]) == 1
    path = gs.db.sqlite_file
    assert path is not None
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another writer holds the write lock meanwhile
        again = httpx.get(url, timeout=10)
        assert again.status_code == 200
        assert again.json() == first.json()
    finally:
        other.rollback()
        other.close()
