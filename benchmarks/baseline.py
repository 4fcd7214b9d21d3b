"""The baseline: what a developer writes today with pylti1p3 (benchmark-only dependency,
`pip install -e .[bench]`): one ServiceConnector (its token cached, as pylti1p3 does), one
AssignmentsGradesService per course from the launch's endpoint claim, and a loop calling
`put_grade` for each result. Two variants, both sequential:

- `readme`: `put_grade(grade, LineItem(tag=...))` as pylti1p3's README shows: the line item
  is looked up (GET the container filtered by tag) or created before each score;
- `cached`: the line item is found or created once per activity and reused.

The baseline is a separate tool registered in the same sandbox (its own RSA key), sending
to its own courses with the same shape, during the same run.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from benchmarks.world import World, make_courses

AGS_SCOPES = [
    "https://purl.imsglobal.org/spec/lti-ags/scope/lineitem",
    "https://purl.imsglobal.org/spec/lti-ags/scope/lineitem.readonly",
    "https://purl.imsglobal.org/spec/lti-ags/scope/result.readonly",
    "https://purl.imsglobal.org/spec/lti-ags/scope/score",
]


def available() -> bool:
    try:
        import pylti1p3  # noqa: F401
    except ImportError:
        return False
    return True


def _session_class() -> Any:
    import requests

    class TimeoutSession(requests.Session):
        """pylti1p3 sets no timeout; a benchmark must never wait forever."""

        def request(self, *args: Any, **kwargs: Any) -> Any:
            kwargs.setdefault("timeout", 30)
            return super().request(*args, **kwargs)

    return TimeoutSession


def _TimeoutSession() -> Any:
    return _session_class()()


def _key_pair() -> tuple[str, str]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


def ags_services(
    world: World, client_id: str, private: str, courses: list[Any], session: Any
) -> Any:
    """One pylti1p3 ServiceConnector (it caches its token) over `session`, and one
    AssignmentsGradesService per course, as a tool gets them from a launch's endpoint claim."""
    from pylti1p3.assignments_grades import AssignmentsGradesService
    from pylti1p3.registration import Registration
    from pylti1p3.service_connector import ServiceConnector

    cfg = world.admin.config()
    reg = (
        Registration()
        .set_issuer(cfg["issuer"])
        .set_client_id(client_id)
        .set_auth_token_url(cfg["token_url"])
        .set_tool_private_key(private)
    )
    connector = ServiceConnector(reg, requests_session=session)
    return {
        c.id: AssignmentsGradesService(
            connector,
            {
                "scope": AGS_SCOPES,
                "lineitems": f"{world.sandbox.base_url}/api/lti/courses/{c.id}/line_items",
            },
        )
        for c in courses
    }


def grade(score: float, person: str) -> Any:
    from pylti1p3.grade import Grade

    return (
        Grade()
        .set_score_given(score)
        .set_score_maximum(10.0)
        .set_timestamp(datetime.now(UTC).isoformat())
        .set_activity_progress("Completed")
        .set_grading_progress("FullyGraded")
        .set_user_id(person)
    )


def line_item(activity: str, points: float = 10.0) -> Any:
    from pylti1p3.lineitem import LineItem

    item = LineItem().set_tag(activity).set_label(f"Activity {activity}")
    return item.set_score_maximum(points).set_resource_id(activity)


def run(
    world: World, variant: str, max_results: int, max_seconds: float, prefix: str
) -> dict[str, Any]:
    client_id = f"baseline-{prefix}"
    private, public = _key_pair()
    world.admin.register_tool(client_id=client_id, deployment_id="b1", public_key=public)
    courses = make_courses(prefix, 2, max(1, max_results // 4), 2)
    for c in courses:
        world.admin.add_course(id=c.id, title=c.id, learners=c.learners)
    services = ags_services(world, client_id, private, courses, _TimeoutSession())
    work = [(c.id, a, p) for c in courses for p in c.learners for a, _ in c.activities][
        :max_results
    ]
    cache: dict[tuple[str, str], Any] = {}
    sends0 = world.score_requests()
    cpu0, t0 = time.process_time(), time.perf_counter()
    done = 0
    errors = 0
    for i, (course, activity, person) in enumerate(work):
        if time.perf_counter() - t0 > max_seconds:
            break
        ags = services[course]
        item = line_item(activity)
        try:
            if variant == "cached":
                key = (course, activity)
                if key not in cache:
                    cache[key] = ags.find_or_create_lineitem(item)
                item = cache[key]
            ags.put_grade(grade(float(i % 11), person), item)
            done += 1
        except Exception:  # a loop like this one logs and carries on
            errors += 1
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    return {
        "variant": variant,
        "results_sent": done,
        "errors": errors,
        "score_requests": world.score_requests() - sends0,
        "seconds": round(elapsed, 2),
        "rate_per_s": round(done / elapsed, 1) if elapsed else 0.0,
        "client_cpu_s_per_1000": round(cpu / max(done, 1) * 1000, 2),
    }
