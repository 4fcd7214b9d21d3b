from __future__ import annotations

from django.urls import include, path, re_path

from tests.openedx.lms import views

urlpatterns = [
    # The package's own URLs, mounted where edx-platform's LMS mounts them.
    re_path(
        r"^api/", include(("lti_consumer.plugin.urls", "lti_consumer"), namespace="lti_consumer")
    ),
    path("health", views.health),
    path("harness/courses", views.create_course),
    path("harness/users", views.create_user),
    path("harness/users/<str:username>", views.retire_user),
    path("harness/enrollments", views.enroll),
    path("harness/login", views.login_as),
    path("harness/blocks", views.block_settings),
    path("harness/blocks/<str:usage_key>", views.block_settings),
    path("harness/blocks/<str:usage_key>/lti-info", views.lti_info),
    path("harness/blocks/<str:usage_key>/rotate-keys", views.rotate_keys),
    path("harness/courses/<str:course_key>/gradebook", views.gradebook),
    path("harness/courses/<str:course_key>/ags", views.ags_store),
    path("courses/<str:course_key>/xblock/<str:usage_key>/", views.student_view),
]
