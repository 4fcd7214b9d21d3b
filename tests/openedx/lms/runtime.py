"""The XBlock runtime edx-platform gives the LTI block, reduced to what the block uses: field
data in the database, the user and rebind_user services, handler URLs, and `publish`, which
hands a 'grade' event to the grades app as the LMS runtime does (here through
`compat.publish_grade`)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from lti_consumer.lti_xblock import LtiConsumerXBlock
from lti_consumer.plugin import compat as lti_compat
from opaque_keys.edx.keys import UsageKey
from xblock.core import XBlockMixin
from xblock.fields import Date, Scope, ScopeIds, Timedelta
from xblock.reference.user_service import UserService, XBlockUser
from xblock.runtime import KeyValueStore, KvsFieldData, MemoryIdManager, Runtime

from tests.openedx.lms.models import Block, Enrollment, ExternalId, FieldValue


class InheritanceMixin(XBlockMixin):
    """The scheduling fields every block inherits from its course in edx-platform."""

    due = Date(scope=Scope.settings, default=None)
    graceperiod = Timedelta(scope=Scope.settings, default=None)


class DatabaseKeyValueStore(KeyValueStore):
    @staticmethod
    def _where(key: KeyValueStore.Key) -> dict[str, Any]:
        return {
            "block_key": str(key.block_scope_id) if key.block_scope_id is not None else "",
            "scope": str(key.scope),
            "user_id": int(key.user_id or 0),
            "name": key.field_name,
        }

    def get(self, key: KeyValueStore.Key) -> Any:
        try:
            return FieldValue.objects.get(**self._where(key)).value
        except FieldValue.DoesNotExist:
            raise KeyError(key.field_name) from None

    def set(self, key: KeyValueStore.Key, value: Any) -> None:
        FieldValue.objects.update_or_create(**self._where(key), defaults={"value": value})

    def delete(self, key: KeyValueStore.Key) -> None:
        FieldValue.objects.filter(**self._where(key)).delete()

    def has(self, key: KeyValueStore.Key) -> bool:
        return FieldValue.objects.filter(**self._where(key)).exists()


def _role(user: Any, course_key: str) -> str:
    if user.is_staff:
        return "staff"
    enrollment = Enrollment.objects.filter(user=user, course__key=course_key).first()
    return enrollment.role if enrollment else "student"


class LmsUserService(UserService):
    """edx-platform's user service: the request's user, with the attributes the LTI block
    reads, and the learner's LTI external id (created on first use, as the LMS does)."""

    def __init__(self, user: Any, course_key: str) -> None:
        super().__init__()
        self._user = user
        self._course_key = course_key

    def get_current_user(self) -> XBlockUser:
        user = self._user
        authenticated = bool(user is not None and user.is_authenticated)
        xuser = XBlockUser(
            is_current_user=True,
            emails=[user.email] if authenticated and user.email else [],
            full_name=user.get_full_name() if authenticated else None,
        )
        if authenticated:
            xuser.opt_attrs.update(
                {
                    "edx-platform.is_authenticated": True,
                    "edx-platform.user_id": user.id,
                    "edx-platform.username": user.username,
                    "edx-platform.user_is_staff": user.is_staff,
                    "edx-platform.user_role": _role(user, self._course_key),
                    "edx-platform.anonymous_user_id": f"anon-{user.id}",
                }
            )
        else:
            xuser.opt_attrs["edx-platform.is_authenticated"] = False
        return xuser

    def get_external_user_id(self, type_name: str) -> str | None:
        if self._user is None or not self._user.is_authenticated:
            return None
        external, _ = ExternalId.objects.get_or_create(user=self._user)
        return str(external.external_user_id)


class RebindUserService:
    def rebind_noauth_module_to_user(self, block: Any, user: Any) -> None:
        block.scope_ids = block.scope_ids._replace(user_id=user.id)


class LmsRuntime(Runtime):
    def __init__(self, user: Any, course_key: str) -> None:
        ids = MemoryIdManager()
        super().__init__(
            ids,
            ids,
            mixins=(InheritanceMixin,),
            services={
                "user": LmsUserService(user, course_key),
                "rebind_user": RebindUserService(),
                "field-data": KvsFieldData(DatabaseKeyValueStore()),
            },
        )

    def handler_url(
        self,
        block: Any,
        handler_name: str,
        suffix: str = "",
        query: str = "",
        thirdparty: bool = False,
    ) -> str:
        usage = block.scope_ids.usage_id
        url = f"{settings.BASE_URL}/courses/{usage.context_key}/xblock/{usage}/handler/"
        url += f"{handler_name}/{suffix}"
        return url + (f"?{query}" if query else "")

    def resource_url(self, resource: str) -> str:
        return f"{settings.BASE_URL}/static/{resource}"

    def local_resource_url(self, block: Any, uri: str) -> str:
        return f"{settings.BASE_URL}/xblock/resource/{block.scope_ids.block_type}/{uri}"

    def publish(self, block: Any, event_type: str, event_data: dict[str, Any]) -> None:
        if event_type != "grade":
            return
        user = get_user_model().objects.get(id=event_data["user_id"])
        lti_compat.publish_grade(block, user, event_data["value"], event_data["max_value"])


def load_block(location: UsageKey | str, user: Any = None) -> LtiConsumerXBlock:
    """The LTI block at `location`, bound to `user` (None: not bound to a learner)."""
    usage = UsageKey.from_string(str(location)) if isinstance(location, str) else location
    usage = usage.for_branch(None) if hasattr(usage, "for_branch") else usage
    if not Block.objects.filter(usage_key=str(usage)).exists():
        raise ValueError(f"no block at {usage}")
    runtime = LmsRuntime(user, str(usage.context_key))
    user_id = user.id if user is not None and user.is_authenticated else None
    return runtime.construct_xblock_from_class(
        LtiConsumerXBlock, ScopeIds(user_id, "lti_consumer", usage, usage)
    )
