"""Provisioning: a course's link at the destination and its columns (line items), created
or updated on the remote when needed, and the caches that spare asking again."""

from __future__ import annotations

import asyncio
import time

from gradesync.domain.model import Course, CourseLink, Destination, ItemLink
from gradesync.domain.policy import Column, column_hash
from gradesync.services.delivery.background import BackgroundWrites
from gradesync.services.destination import DestinationClient
from gradesync.services.engine_config import EngineSettings
from gradesync.services.ports import UnitOfWorkFactory


class Provisioner:
    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        settings: EngineSettings,
        background: BackgroundWrites,
    ) -> None:
        self.uow_factory = uow_factory
        self.settings = settings
        self._background = background
        self._course_links: dict[tuple[str, str, str], tuple[CourseLink, float]] = {}
        self._column_locks: dict[tuple[str, str, str], asyncio.Lock] = {}
        # columns this process created or updated, until the claim's own read has them
        self._item_links: dict[tuple[str, str, str], ItemLink] = {}

    async def course_link(
        self, client: DestinationClient, d: Destination, course: Course, link: CourseLink | None
    ) -> CourseLink:
        key = (d.tenant_id, d.id, course.id)
        cached = self._course_links.get(key)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        ensured = await client.ensure_course(course, link)
        if ensured != link:
            await asyncio.to_thread(self._save_course_link, ensured)
        self._course_links[key] = (
            ensured,
            time.monotonic() + self.settings.course_link_ttl.total_seconds(),
        )
        return ensured

    def _save_course_link(self, link: CourseLink) -> None:
        with self.uow_factory() as uow:
            uow.links.save_course(link)
            uow.commit()

    async def ensure_column(
        self,
        client: DestinationClient,
        d: Destination,
        course_link: CourseLink,
        column: Column,
        link: ItemLink | None,
        *,
        force: bool = False,
    ) -> tuple[ItemLink, bool]:
        """The activity's column, created or updated when needed. (link, whether written).
        One at a time per column in this process: a pass that waited finds the link the
        other wrote in `_item_links`, so two passes never create the same column twice
        (another process that races is stopped by the remote lookup by resourceId). The
        link is saved in the background: the scores need only the remote's answer."""
        wanted = column_hash(column)
        if not force and link is not None and link.details_hash == wanted:
            return link, False
        key = (d.tenant_id, d.id, column.activity_id)
        lock = self._column_locks.setdefault(key, asyncio.Lock())
        async with lock:
            current = self._item_links.get(key) or link
            if not force and current is not None and current.details_hash == wanted:
                return current, False
            ensured = await client.ensure_column(course_link, column, current, force=force)
            self._item_links[key] = ensured

            def save() -> None:
                with self.uow_factory() as uow:
                    uow.links.save_item(ensured)
                    uow.commit()

            self._background.start(save, f"saving the line item link of {column.activity_id}")
            return ensured, True
