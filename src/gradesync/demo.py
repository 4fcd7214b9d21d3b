"""`gradesync serve --demo`: gradesync and the sandbox LMS/SIS on loopback, wired together, with
learners completing work so a newcomer sees grades arrive.

Everything goes through the real paths: the LMS admin registers gradesync as an LTI 1.3 tool
in the sandbox, gradesync registers the sandbox as a platform and as a OneRoster SIS, learners
launch over real HTTP (OIDC login, signed id_token), the courseware posts attempts to the JSON
API with an API key, and the in-process worker delivers them over AGS and OneRoster.
"""

from __future__ import annotations

import os
import random
import re
import shlex
import shutil
import signal
import sys
import threading
import time
from contextlib import ExitStack, closing
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from html import unescape
from typing import Any

import httpx
from rich.console import Console

from gradesync.adapters.db.single_server import DatabaseInUse, ServerLock
from gradesync.config import Settings
from gradesync.domain.model import UserRole
from gradesync.lti import registration
from gradesync.lti.claims import AGS_SCOPES, SCOPE_MEMBERSHIP
from gradesync.runtime import Runtime
from gradesync.sandbox.app import create_app as create_sandbox
from gradesync.sandbox.config import SandboxConfig
from gradesync.sandbox.testing import SandboxAdmin, bind, serve_in_thread
from gradesync.services import sis
from gradesync.services.accounts import create_user
from gradesync.services.auth import create_key
from gradesync.services.lti import platforms
from gradesync.services.outbound import LOOPBACK_NETWORKS
from gradesync.services.tenants import create_tenant
from gradesync.web.app import create_app

TENANT = "demo"
COURSE = "bio-101"
CLIENT_ID = "gradesync-demo"
DEPLOYMENT = "1"
CONSOLE_USER = ("admin", "gradesync-demo")
LEARNERS = {
    "u-ada": "Ada Lovelace",
    "u-alan": "Alan Turing",
    "u-grace": "Grace Hopper",
    "u-katherine": "Katherine Johnson",
    "u-edsger": "Edsger Dijkstra",
    "u-barbara": "Barbara Liskov",
    "u-margaret": "Margaret Hamilton",
}
# Never opens the course link: the LMS roster (NRPS) matches her by SIS id, so her grades
# reach the LMS all the same.
NEVER_LAUNCHES = "u-margaret"
ACTIVITIES = [  # id, title, points, group
    ("cells", "Cells quiz", 10.0, "Quizzes"),
    ("genes", "Genetics lab", 20.0, "Labs"),
    ("ecology", "Ecology essay", 50.0, "Essays"),
]
CATEGORIES = {"Quizzes": "cat-quiz", "Labs": "cat-lab", "Essays": "cat-essay"}

_INPUT = re.compile(r"""<input[^>]*name=["']([^"']+)["'][^>]*value=["']([^"']*)["']""")
_ACTION = re.compile(r"""<form[^>]*action=["']([^"']+)["']""")


@dataclass
class Landed:
    learner: str
    activity: str
    score: float
    seconds: float


class DemoError(Exception):
    """The demo cannot go on: said in one line."""


class DemoRunning(DemoError):
    """Another demo uses this data directory's demo database."""


def demo_settings(base: Settings, host: str, port: int) -> Settings:
    """A database of its own, fresh each run, so the demo never touches real data."""
    demo_dir = base.data_dir / "demo"
    shutil.rmtree(demo_dir, ignore_errors=True)
    demo_dir.mkdir(parents=True)
    return base.model_copy(
        update={
            "database_url": f"sqlite:///{demo_dir / 'gradesync.db'}",
            "secret_key": base.resolved_secret_key(),
            "base_url": f"http://{host}:{port}",
            # the demo's LMS and SIS are the sandbox on this machine
            "outbound_allowed_networks": [*base.outbound_allowed_networks, *LOOPBACK_NETWORKS],
        }
    )


def _launch(admin: SandboxAdmin, user: str) -> None:
    """What an LMS iframe does when a learner opens the link: OIDC login, then the launch."""
    started = admin.start_launch(
        client_id=CLIENT_ID, user=user, course=COURSE, resource_link_id="link-1"
    )
    with httpx.Client(timeout=10.0, follow_redirects=False) as http:
        login = http.get(started["url"])
        auth = http.get(login.headers["location"])
        action = _ACTION.search(auth.text)
        if login.status_code != 302 or action is None:
            raise DemoError(f"launch for {user} failed: {auth.status_code} {auth.text[:200]}")
        fields = {unescape(k): unescape(v) for k, v in _INPUT.findall(auth.text)}
        done = http.post(unescape(action.group(1)), data=fields)
        if done.status_code >= 400:
            raise DemoError(f"launch for {user} refused: {done.status_code} {done.text[:200]}")


def _set_up_lms(admin: SandboxAdmin, tool_url: str) -> None:
    admin.register_tool(
        client_id=CLIENT_ID,
        deployment_id=DEPLOYMENT,
        jwks_url=f"{tool_url}/lti/jwks.json",
        oidc_login_url=f"{tool_url}/lti/login",
        redirect_uris=[f"{tool_url}/lti/launch"],
        target_link_uri=f"{tool_url}/lti/launch",
        deep_link_url=f"{tool_url}/lti/launch",
        scopes=[*AGS_SCOPES, SCOPE_MEMBERSHIP],
    )
    for sub, name in LEARNERS.items():
        admin.add_user(sub=sub, name=name, sis_id=f"stu-{sub[2:]}")
    admin.add_course(id=COURSE, title="Biology 101", learners=list(LEARNERS), instructors=[])
    admin.add_resource_link(COURSE, id="link-1", title="Biology courseware")
    # The SIS: a term, a class with the same learners, grading categories, an API client.
    today = date.today()
    admin.add_sis(
        "terms",
        sourcedId="term-1",
        title="This term",
        start=(today - timedelta(days=60)).isoformat(),
        end=(today + timedelta(days=120)).isoformat(),
    )
    for sub, name in LEARNERS.items():
        admin.add_sis("students", sourcedId=f"stu-{sub[2:]}", name=name)
    admin.add_sis(
        "classes",
        sourcedId="class-bio-101",
        title="Biology 101",
        school="school-1",
        term="term-1",
        students=[f"stu-{s[2:]}" for s in LEARNERS],
    )
    for title, cid in CATEGORIES.items():
        admin.add_sis("categories", sourcedId=cid, title=title, classes=["class-bio-101"])
    admin.add_sis("clients", client_id="gradesync-sis", client_secret="demo-sis-secret-123")


def _set_up_gradesync(rt: Runtime, admin: SandboxAdmin, sandbox_url: str) -> str:
    """Tenant, API key, console account, LMS platform and SIS connection. Returns the key."""
    uow, clock = rt.uow, rt.clock
    create_tenant(uow, clock, TENANT, "Demo school")
    key = create_key(uow, clock, TENANT, "demo courseware", ["ingest", "sync"])
    create_user(
        uow,
        clock,
        tenant_id=TENANT,
        username=CONSOLE_USER[0],
        password=CONSOLE_USER[1],
        role=UserRole.ADMIN,
        display_name="Demo admin",
    )
    cfg = admin.config()
    with uow() as u:
        platforms.save_platform(
            u,
            registration.platform_of(
                TENANT,
                {
                    "id": "lms",
                    "name": "Sandbox LMS",
                    "issuer": cfg["issuer"],
                    "client_id": CLIENT_ID,
                    "deployment_ids": [DEPLOYMENT],
                    "auth_login_url": cfg["authorization_url"],
                    "auth_token_url": cfg["token_url"],
                    "key_set_url": cfg["jwks_url"],
                },
                rt.outbound,
            ),
            clock.now(),
        )
        u.commit()
    sis.add_connection(
        uow,
        clock,
        tenant_id=TENANT,
        destination_id="sis",
        name="Sandbox SIS",
        base_url=f"{sandbox_url}/ims/oneroster/gradebook/v1p2",
        token_url=f"{sandbox_url}/ims/oneroster/oauth2/token",
        client_id="gradesync-sis",
        client_secret="demo-sis-secret-123",
        profile={"category_match": "id"},
        guard=rt.outbound,
    )
    return key.token


def _put(http: httpx.Client, path: str, body: dict[str, Any]) -> None:
    r = http.put(path, json=body)
    if r.status_code >= 400:
        raise DemoError(f"PUT {path}: {r.status_code} {r.text[:300]}")


def _courseware_sends_roster(http: httpx.Client) -> None:
    """What a courseware platform sends first: the course, its activities, its learners."""
    now = datetime.now(UTC)
    _put(http, f"/api/v1/courses/{COURSE}", {"title": "Biology 101", "time_zone": "UTC"})
    for i, (aid, title, points, group) in enumerate(ACTIVITIES):
        _put(
            http,
            f"/api/v1/activities/{aid}",
            {
                "course_id": COURSE,
                "title": title,
                "points_possible": points,
                "category": group,
                "due_at": (now + timedelta(days=7 * (i + 1))).isoformat(),
            },
        )
    for pid, name in LEARNERS.items():
        _put(http, f"/api/v1/people/{pid}", {"name": name, "sis_id": f"stu-{pid[2:]}"})
        _put(http, f"/api/v1/courses/{COURSE}/enrollments/{pid}", {"role": "learner"})


def _set_up_passback(rt: Runtime) -> None:
    """The admin maps the course to its SIS class, aligns groups and picks what to pass back."""
    uow, clock = rt.uow, rt.clock
    today = date.today()
    sis.map_class(
        uow,
        tenant_id=TENANT,
        destination_id="sis",
        course_id=COURSE,
        class_id="class-bio-101",
        school_id="school-1",
        term_start=today - timedelta(days=60),
        term_end=today + timedelta(days=120),
    )
    sis.map_course_students(uow, tenant_id=TENANT, destination_id="sis", course_id=COURSE)
    for group, cid in CATEGORIES.items():
        sis.align_category(
            uow, clock, tenant_id=TENANT, destination_id="sis", group=group, category_id=cid
        )
    sis.select_activities(
        uow, tenant_id=TENANT, destination_id="sis", activity_ids=[a[0] for a in ACTIVITIES]
    )


def _lms_score(admin: SandboxAdmin, activity_id: str, learner: str) -> float | None:
    for course in admin.inspect(COURSE)["lms"]["courses"]:
        for item in course["line_items"]:
            if item["resourceId"] == activity_id and learner in item["scores"]:
                value = item["scores"][learner]["scoreGiven"]
                return float(value) if value is not None else None
    return None


# How long the demo follows one grade before it says the grade is late and goes on.
PATIENCE_SECONDS = 15.0


def _wait_landed(
    admin: SandboxAdmin, activity: str, learner: str, score: float, started: float
) -> float | None:
    """Seconds from the API's 202 until the LMS gradebook holds the score; None when it does
    not within PATIENCE_SECONDS (the LMS slow or failing: gradesync goes on trying)."""
    deadline = started + PATIENCE_SECONDS
    while time.monotonic() < deadline:
        if _lms_score(admin, activity, learner) == score:
            return time.monotonic() - started
        time.sleep(0.02)  # polling the LMS's gradebook, as a person refreshing it would
    return None


def _simulate(
    http: httpx.Client,
    admin: SandboxAdmin,
    console: Console,
    count: int,
    stop: threading.Event,
    rng: random.Random,
) -> tuple[list[Landed], int]:
    """The grades that reached the LMS gradebook, and how many did not in time."""
    landed: list[Landed] = []
    late = 0
    best: dict[tuple[str, str], float] = {}  # the default policy counts the highest attempt
    for n in range(count):
        if stop.is_set():
            break
        # the first grade is the learner's who never launched: the roster brings it home
        learner = NEVER_LAUNCHES if n == 0 else rng.choice(list(LEARNERS))
        aid, title, points, _ = rng.choice(ACTIVITIES)
        score = float(round(rng.uniform(0.4, 1.0) * points))
        started = time.monotonic()
        r = http.post(
            "/api/v1/attempts",
            json={
                "source_event_id": f"demo-{int(time.time() * 1000)}-{n}",
                "activity_id": aid,
                "person_id": learner,
                "score_given": score,
                "score_maximum": points,
                "completed_at": datetime.now(UTC).isoformat(),
            },
        )
        if r.status_code != 202:
            raise DemoError(f"attempt refused: {r.status_code} {r.text[:300]}")
        previous = best.get((learner, aid))
        expected = best[(learner, aid)] = max(score, previous or 0.0)
        if previous is not None and expected == previous:
            # nothing changes in the LMS: the earlier, higher attempt still counts
            console.print(
                f"  {LEARNERS[learner]:<18} {title:<14} {score:>4.0f}/{points:<3.0f}"
                f" [dim]lower than the earlier {previous:.0f}: the highest attempt counts[/dim]"
            )
            stop.wait(rng.uniform(0.3, 1.2))
            continue
        seconds = _wait_landed(admin, aid, learner, expected, started)
        if seconds is None:
            # a slow or failing LMS is no reason to stop: gradesync retries the grade, and
            # the doctor says where it is and why
            late += 1
            console.print(
                f"  {LEARNERS[learner]:<18} {title:<14} {score:>4.0f}/{points:<3.0f}"
                f" [yellow]not in the LMS gradebook after {PATIENCE_SECONDS:.0f} s;"
                f" gradesync keeps trying. Why: gradesync doctor -l {learner} -a {aid}[/yellow]"
            )
            continue
        landed.append(Landed(LEARNERS[learner], title, score, seconds))
        console.print(
            f"  {LEARNERS[learner]:<18} {title:<14} {score:>4.0f}/{points:<3.0f}"
            f" [green]in the LMS gradebook after {seconds * 1000:.0f} ms[/green]"
        )
        stop.wait(rng.uniform(0.3, 1.2))  # learners do not all finish at once
    return landed, late


def run_demo(
    base: Settings,
    host: str,
    port: int,
    sandbox_port: int,
    *,
    attempts: int = 12,
    exit_after: bool = False,
) -> int:
    console = Console(soft_wrap=True)  # long lines stay whole, to be copied (also in a log)
    # held while this demo runs: a second one would wipe the database the first is serving
    lock = ServerLock(base.data_dir / "demo")
    base.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        lock.acquire()
    except DatabaseInUse as exc:
        raise DemoRunning(
            f"another gradesync serve --demo (pid {exc.holder}) is running on "
            f"{base.data_dir / 'demo'}. Stop it, or give this one its own data directory "
            "(GRADESYNC_DATA_DIR)."
        ) from None
    try:
        return _run(base, host, port, sandbox_port, console, attempts, exit_after)
    finally:
        lock.release()


def _command() -> str:
    """How this gradesync was started (`.venv/bin/gradesync` from `make demo`), for the CLI
    line to copy."""
    started = sys.argv[0] if sys.argv else ""
    return started if os.path.basename(started) == "gradesync" else "gradesync"


def _run(
    base: Settings,
    host: str,
    port: int,
    sandbox_port: int,
    console: Console,
    attempts: int,
    exit_after: bool,
) -> int:
    settings = demo_settings(base, host, port)
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with ExitStack() as stack:
        sandbox_sock = bind(host, sandbox_port)
        sandbox_url = f"http://{host}:{sandbox_sock.getsockname()[1]}"
        lms = stack.enter_context(
            serve_in_thread(
                create_sandbox(SandboxConfig(mode="canvas", base_url=sandbox_url)),
                sock=sandbox_sock,
            )
        )
        gs_sock = bind(host, port)
        settings = settings.model_copy(
            update={"base_url": f"http://{host}:{gs_sock.getsockname()[1]}"}
        )
        runtime = Runtime.create(settings)
        stack.callback(runtime.close)
        app = create_app(runtime)
        app.state.run_worker = True
        gs = stack.enter_context(serve_in_thread(app, sock=gs_sock))
        admin = stack.enter_context(closing(SandboxAdmin(lms.base_url)))

        console.rule("[bold]gradesync demo")
        console.print(
            f"gradesync    {gs.base_url}   (console: {gs.base_url}/console/, "
            f"sign in as [bold]{CONSOLE_USER[0]}[/bold] / [bold]{CONSOLE_USER[1]}[/bold])"
        )
        console.print(f"sandbox LMS  {lms.base_url}/_sandbox/   (the LMS and SIS gradebooks)")
        console.print(f"API docs     {gs.base_url}/docs          database {settings.database_url}")
        _set_up_lms(admin, gs.base_url)
        token = _set_up_gradesync(runtime, admin, lms.base_url)
        console.print(
            f"tenant       [bold]{TENANT}[/bold]   API key (scopes ingest, sync): {token}",
            highlight=False,
        )
        # the loopback networks only for the command that calls the sandbox: exported, they
        # would relax the outbound guard of whatever the shell runs next
        # the data directory holds the key the LMS's secrets are stored with; the base URL
        # is what the commands print as the tool's URLs
        console.print(
            # quoted: a data directory may hold a space ("Application Support")
            f"CLI          export GRADESYNC_DATA_DIR={shlex.quote(str(settings.data_dir))} "
            f"GRADESYNC_DATABASE_URL={shlex.quote(str(settings.database_url))}\n"
            f"             export GRADESYNC_TENANT={TENANT} GRADESYNC_BASE_URL={gs.base_url}\n"
            f"             {_command()} destinations list\n"
            f"             GRADESYNC_OUTBOUND_ALLOWED_NETWORKS={','.join(LOOPBACK_NETWORKS)} "
            f"{_command()} destinations check lms",
            highlight=False,
        )
        http = stack.enter_context(
            httpx.Client(
                base_url=gs.base_url, timeout=15.0, headers={"Authorization": f"Bearer {token}"}
            )
        )
        _courseware_sends_roster(http)
        _set_up_passback(runtime)
        console.print("Registered gradesync in the LMS (LTI 1.3) and the LMS and SIS in gradesync.")
        for learner in LEARNERS:
            if learner != NEVER_LAUNCHES:
                _launch(admin, learner)
        console.print(
            f"{len(LEARNERS) - 1} learners opened the course link in the LMS; "
            f"{LEARNERS[NEVER_LAUNCHES]} never did: the course roster (NRPS) the LMS offered "
            "matches her by SIS id.\n"
        )
        console.print("[bold]Learners complete work; each grade is followed into the LMS:[/bold]")
        landed, late = _simulate(http, admin, console, attempts, stop, random.Random(7))
        if late:
            console.print(
                f"\n{late} grade(s) not in the LMS gradebook within {PATIENCE_SECONDS:.0f} s: "
                "gradesync keeps trying them (the console's Diagnose page, or the doctor "
                "line above, says why)."
            )
        if landed:
            times = sorted(x.seconds for x in landed)
            console.print(
                f"\n{len(landed)} grades delivered; median {times[len(times) // 2] * 1000:.0f} ms,"
                f" slowest {times[-1] * 1000:.0f} ms (the first includes creating the column)."
            )
            sis_results = len(admin.inspect()["sis"]["results"])
            console.print(
                f"The SIS gradebook holds {sis_results} results passed back over OneRoster."
            )
        if exit_after:
            return 0 if landed and not late and not stop.is_set() else 1
        console.print("\nStill running: open the URLs above. Press Ctrl-C to stop.")
        stop.wait()
    return 0
