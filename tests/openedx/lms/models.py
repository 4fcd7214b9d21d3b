"""What edx-platform keeps about courses, learners and grades, reduced to what the LTI block
reads and writes: courses and enrollments, each learner's LTI external id, block fields (the
modulestore and the student state) and the grades the block publishes (the gradebook)."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models


class Course(models.Model):
    key = models.CharField(max_length=255, unique=True)
    display_name = models.CharField(max_length=255)
    org = models.CharField(max_length=255)


class Enrollment(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    course = models.ForeignKey(Course, on_delete=models.CASCADE)
    role = models.CharField(max_length=32, default="student")  # student | instructor | staff

    class Meta:
        unique_together = ("user", "course")


class ExternalId(models.Model):
    """edx-platform's external_user_ids: the id an LTI 1.3 tool knows a learner by."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    external_user_id = models.UUIDField(default=uuid.uuid4, unique=True)


class Block(models.Model):
    usage_key = models.CharField(max_length=255, unique=True)
    course = models.ForeignKey(Course, on_delete=models.CASCADE)


class FieldValue(models.Model):
    """One XBlock field value, keyed as the XBlock runtime keys it: content and settings
    fields (no user) and student state (per user)."""

    block_key = models.CharField(max_length=255)
    scope = models.CharField(max_length=32)
    user_id = models.IntegerField(default=0)
    name = models.CharField(max_length=255)
    value = models.JSONField(null=True)

    class Meta:
        unique_together = ("block_key", "scope", "user_id", "name")


class PublishedGrade(models.Model):
    """A grade the block published to the LMS grades app (every publish, in order)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE)
    block = models.ForeignKey(Block, on_delete=models.CASCADE)
    earned = models.FloatField(null=True)
    possible = models.FloatField(null=True)
    only_if_higher = models.BooleanField(default=False)
    score_deleted = models.BooleanField(null=True)
    comment = models.TextField(null=True)
    published_at = models.DateTimeField(auto_now_add=True)
