"""The LMS pages the tests use, and a small JSON admin API that plays Studio and the LMS's
administrators (courses, users, enrollments, blocks and their settings), plus the
gradebook: the grades Open edX published, read back over HTTP."""

from __future__ import annotations

import json
from typing import Any

from django.contrib.auth import get_user_model, login
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods
from lti_consumer.api import get_lti_1p3_launch_info
from lti_consumer.models import LtiAgsLineItem, LtiAgsScore, LtiConfiguration
from opaque_keys.edx.keys import CourseKey

from tests.openedx.lms.models import Block, Course, Enrollment, ExternalId, PublishedGrade
from tests.openedx.lms.runtime import load_block


def _body(request: HttpRequest) -> dict[str, Any]:
    return json.loads(request.body or b"{}")


def health(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"ok": True})


@csrf_exempt
@require_http_methods(["POST"])
def create_course(request: HttpRequest) -> JsonResponse:
    data = _body(request)
    key = CourseKey.from_string(data["key"])
    course, _ = Course.objects.update_or_create(
        key=str(key),
        defaults={"display_name": data.get("display_name", str(key)), "org": key.org},
    )
    return JsonResponse({"key": course.key})


@csrf_exempt
@require_http_methods(["POST"])
def create_user(request: HttpRequest) -> JsonResponse:
    data = _body(request)
    user, _ = get_user_model().objects.update_or_create(
        username=data["username"],
        defaults={
            "email": data.get("email", ""),
            "first_name": data.get("first_name", ""),
            "last_name": data.get("last_name", ""),
            "is_staff": bool(data.get("is_staff", False)),
        },
    )
    return JsonResponse({"id": user.id, "username": user.username})


@csrf_exempt
@require_http_methods(["DELETE"])
def retire_user(request: HttpRequest, username: str) -> JsonResponse:
    """Account retirement: the learner and their LTI external id are gone."""
    deleted, _ = get_user_model().objects.filter(username=username).delete()
    return JsonResponse({"deleted": deleted})


@csrf_exempt
@require_http_methods(["POST"])
def enroll(request: HttpRequest) -> JsonResponse:
    data = _body(request)
    user = get_user_model().objects.get(username=data["username"])
    course = Course.objects.get(key=data["course"])
    Enrollment.objects.update_or_create(
        user=user, course=course, defaults={"role": data.get("role", "student")}
    )
    return JsonResponse({"ok": True})


@csrf_exempt
@require_http_methods(["POST"])
def login_as(request: HttpRequest) -> JsonResponse:
    """The LMS's sign-in, without a password: this LMS only ever runs on loopback in tests."""
    user = get_user_model().objects.get(username=_body(request)["username"])
    login(request, user)
    return JsonResponse({"id": user.id})


@csrf_exempt
@require_http_methods(["POST", "PATCH"])
def block_settings(request: HttpRequest, usage_key: str | None = None) -> JsonResponse:
    """Studio: add an LTI component to a course (POST) or edit its settings (PATCH)."""
    data = _body(request)
    with transaction.atomic():
        if request.method == "POST":
            course = Course.objects.get(key=data["course"])
            key = CourseKey.from_string(course.key).make_usage_key("lti_consumer", data["id"])
            Block.objects.get_or_create(usage_key=str(key), course=course)
            usage_key = str(key)
        assert usage_key is not None
        block = load_block(usage_key)
        for name, value in data.get("fields", {}).items():
            if name not in block.fields:
                return JsonResponse({"error": f"fields.{name}: not a field"}, status=400)
            setattr(block, name, block.fields[name].from_json(value))
        block.save()
    return JsonResponse({"usage_key": usage_key})


@csrf_exempt
@require_http_methods(["POST"])
def rotate_keys(request: HttpRequest, usage_key: str) -> JsonResponse:
    """The component's platform keys are regenerated (as an admin clearing them in Django
    admin does): tokens it issued before no longer verify."""
    passport = LtiConfiguration.objects.get(location=usage_key).lti_1p3_passport
    passport.lti_1p3_internal_private_key = ""
    passport.save()
    return JsonResponse({"kid": passport.lti_1p3_private_key_id})


def lti_info(request: HttpRequest, usage_key: str) -> JsonResponse:
    """What Studio's author view shows a course author about an LTI 1.3 block: the values
    to give the tool (client id, deployment id, keyset, token and login URLs)."""
    if not request.user.is_authenticated:
        return JsonResponse({"error": "sign in first"}, status=403)
    block = load_block(usage_key, request.user)
    info = get_lti_1p3_launch_info(block.get_lti_1p3_launch_data())
    return JsonResponse({k: v for k, v in info.items() if isinstance(v, str) or v is None})


def student_view(request: HttpRequest, course_key: str, usage_key: str) -> HttpResponse:
    """The courseware page of one LTI unit, as a signed-in learner sees it."""
    if not request.user.is_authenticated:
        return HttpResponse("sign in first", status=403)
    block = load_block(usage_key, request.user)
    fragment = block.render("student_view", {})
    return HttpResponse(f"<html><body>{fragment.body_html()}</body></html>")


def gradebook(request: HttpRequest, course_key: str) -> JsonResponse:
    """Published grades of a course: every publish in order, and the current grade of each
    (learner, block), as the progress page would show it."""
    rows = PublishedGrade.objects.filter(block__course__key=course_key).order_by("id")
    history = [
        {
            "username": g.user.username,
            "block": g.block.usage_key,
            "earned": g.earned,
            "possible": g.possible,
        }
        for g in rows.select_related("user", "block")
    ]
    current = {(h["username"], h["block"]): h for h in history}
    return JsonResponse({"history": history, "grades": list(current.values())})


def ags_store(request: HttpRequest, course_key: str) -> JsonResponse:
    """What the package stored through its AGS views: line items and their scores."""
    items = LtiAgsLineItem.objects.filter(
        lti_configuration__location__startswith=f"block-v1:{course_key.removeprefix('course-v1:')}"
    ).order_by("id")
    external = {str(e.external_user_id): e.user.username for e in ExternalId.objects.all()}
    out = []
    for item in items:
        scores = LtiAgsScore.objects.filter(line_item=item).order_by("id")
        out.append(
            {
                "id": item.id,
                "label": item.label,
                "score_maximum": item.score_maximum,
                "resource_id": item.resource_id,
                "resource_link_id": str(item.resource_link_id or "") or None,
                "tag": item.tag,
                "start_date_time": item.start_date_time and item.start_date_time.isoformat(),
                "end_date_time": item.end_date_time and item.end_date_time.isoformat(),
                "config_location": str(item.lti_configuration.location),
                "scores": [
                    {
                        "user_id": s.user_id,
                        "username": external.get(s.user_id),
                        "score_given": s.score_given,
                        "score_maximum": s.score_maximum,
                        "grading_progress": s.grading_progress,
                        "timestamp": s.timestamp.isoformat(),
                    }
                    for s in scores
                ],
            }
        )
    return JsonResponse({"line_items": out})
