"""Provisioning: a course's link at the destination and its columns (line items), created
or updated on the remote when needed, and the caches that spare asking again.

Columns are created as soon as an activity and its course's link are both known
(`create_ahead`, from computing), so the first grade of a new column does not wait for it;
a column whose details changed (a new title, a moved due date) with no grade to send, so no
send to rewrite it, is rewritten the same way.

Every request goes through the destination's limits and pauses as a score's send does
(`Governor.request`): nothing is asked of a paused destination. A column known ahead while its
destination is paused waits for the pause to end (or be lifted) and is created then."""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from gradesync.domain.columns import column_written, marked_to_check
from gradesync.domain.held import provisioned
from gradesync.domain.ledger import reopened
from gradesync.domain.model import (
    WAITING_STATES,
    Activity,
    Course,
    CourseLink,
    DeliveryState,
    Destination,
    ItemLink,
    LedgerKey,
    Tenant,
)
from gradesync.domain.policy import Column, NoResult, activity_policy, column_for, column_hash
from gradesync.domain.reasons import Reason
from gradesync.services.column_marks import new_look_mark
from gradesync.services.delivery.background import BackgroundWrites
from gradesync.services.delivery.clients import Clients
from gradesync.services.delivery.failures import slowed_down
from gradesync.services.delivery.governor import DestinationPaused, Governor
from gradesync.services.delivery.recent import Recent
from gradesync.services.destination import DestinationClient, FailureClass, RemoteFailure
from gradesync.services.engine_config import EngineSettings
from gradesync.services.ports import UnitOfWorkFactory

log = logging.getLogger(__name__)

# (tenant, destination, course, activity)
ColumnKey = tuple[str, str, str, str]
# courses and columns kept in memory at once (see `Recent`): more than one pass has in hand
CACHED = 4096


@dataclass(frozen=True, slots=True)
class _Known:
    """What creating a course's columns ahead needs, read in one transaction."""

    destination: Destination
    tenant: Tenant
    course: Course
    link: CourseLink
    activities: dict[str, Activity]
    items: dict[str, ItemLink]


# failures a grade's check of a column a run marked does not pass over: the remote asked to
# slow down (the destination pauses), or does not take the column by design
_NOT_SPARED = frozenset({FailureClass.SLOW_DOWN, FailureClass.NOT_SYNCED})


class Provisioner:
    def __init__(
        self,
        uow_factory: UnitOfWorkFactory,
        settings: EngineSettings,
        background: BackgroundWrites,
        governor: Governor,
    ) -> None:
        self.uow_factory = uow_factory
        self.settings = settings
        self.governor = governor
        self._background = background
        # (the link as stored, the link ensured from it, until when): ensured once a while,
        # and again as soon as what is stored changes (an alignment, a class, a term)
        self._course_links: Recent[
            tuple[str, str, str], tuple[CourseLink | None, CourseLink, float]
        ] = Recent(CACHED)
        # a column's lock lives while a pass holds or waits for it
        self._column_locks: weakref.WeakValueDictionary[tuple[str, str, str], asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )
        # columns this process created or updated, until the claim's own read has them:
        # every link this process read or wrote for the column, the last written last
        self._item_links: Recent[tuple[str, str, str], tuple[ItemLink | None, ...]] = Recent(CACHED)
        # columns tried ahead of their first grade (True), or rewritten with changed
        # details (the details' hash): once each while remembered (a failure is left to the
        # send, which classifies it and retries)
        self._tried_ahead: Recent[ColumnKey, bool | str] = Recent(CACHED)
        # a run's mark on a column whose check by a grade failed here (`ensure_column`):
        # the column's grades go to it as it is, and only the run tries it again
        self._check_failed: Recent[tuple[str, str, str], str] = Recent(CACHED)
        # columns marked here as gone at their destination (`column_gone`), with the details
        # hash of the link the refused send went through
        self._gone_marked: Recent[tuple[str, str, str], str | None] = Recent(CACHED)

    def forget(self, destinations: set[tuple[str, str]]) -> None:
        """Deleted destinations' courses and columns: one made again under the same id links
        courses and makes columns of its own (its LMS may be another), never the old ones'."""
        caches: tuple[Recent[Any, Any], ...] = (
            self._course_links,
            self._item_links,
            self._tried_ahead,
            self._check_failed,
            self._gone_marked,
        )
        for cache in caches:
            for key in [k for k in cache if (k[0], k[1]) in destinations]:
                del cache[key]

    async def course_link(
        self, client: DestinationClient, d: Destination, course: Course, link: CourseLink | None
    ) -> CourseLink:
        key = (d.tenant_id, d.id, course.id)
        cached = self._course_links.get(key)
        if cached is not None and cached[0] == link and cached[2] > time.monotonic():
            return cached[1]
        # no adapter asks the destination anything here (unlike `ensure_column`, not within
        # its limits): a link not usable is refused from what is stored
        ensured = await client.ensure_course(course, link)
        if ensured != link:
            await asyncio.to_thread(self._save_course_link, ensured)
        self._course_links[key] = (
            link,
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
        priority: int = 0,
        then: Callable[[ItemLink], None] | None = None,
        for_grades: bool = False,
    ) -> tuple[ItemLink, bool]:
        """The activity's column, created or updated when needed, and written whatever its
        details while a run's mark waits on it (`domain.columns.check_mark`: whoever writes it
        first, a grade's send or the run, writes it once for the run). (link, whether written).
        `for_grades`: asked by grades about to be sent. When the write a mark asks for fails
        on a column the destination holds, they go to the column as it is (as they would
        with no run), and this process's sends do not try that mark again: the run's own
        write tries it, and sends those grades again once it is written (else says the column
        failed and carries it, with its grades, to the next run). One broken column then
        holds none of its grades, and its failures are not repeated by every pass into the
        breaker that would hold every course's grades.
        Within the destination's limits, at `priority` (`Governor.request`: raises
        `DestinationPaused` while it is paused, before its first request, having asked
        nothing, or at a later page of its listing, after the pages before it were asked);
        `then` is called with a link written here while its request still holds its slot.
        One at a time per column in this process: a pass that waited finds the link the
        other wrote in `_item_links`, so two passes never create the same column twice
        (another process that races is found by the destination client's listing after it
        creates one, and the newer of the two deleted: see `AgsClient.ensure_column`). The
        link is saved in the background (the scores need only the remote's answer): what
        the write changed from the link it read, over the link as stored then (a person's
        change saved meanwhile stays), and not its details hash when the column was marked
        since this write read it (`LinkRepo.save_written_item`): a write begun before a
        run's mark is no check for that run."""
        wanted = column_hash(column)
        if link is not None and link.details_hash == wanted:
            return link, False
        key = (d.tenant_id, d.id, column.activity_id)
        lock = self._column_locks.get(key)
        if lock is None:
            lock = self._column_locks[key] = asyncio.Lock()
        async with lock:
            known = self._item_links.get(key)
            if known is not None and link is not None and link not in known:
                # the link changed since this process read or wrote it, by a person (an
                # activity unticked for a SIS, or held for Post grades): ask the destination
                del self._item_links[key]
                known = None
            current = known[-1] if known is not None else link
            if current is not None and current.details_hash == wanted:
                return current, False
            force = marked_to_check(current)
            spare = for_grades and force and column_written(d.kind, current)
            if (
                spare
                and current is not None
                and self._check_failed.get(key) == current.details_hash
            ):
                return current, False  # its check failed here: the run tries it again
            try:
                async with self.governor.call(d, priority) as gate:
                    # each of its requests after the first takes a token under the slot held here
                    made = await client.ensure_column(
                        course_link, column, current, force=force, each_request=gate
                    )
                    # a SIS's scores read on the line item's maximum as written now (`domain.held`)
                    ensured = provisioned(made, d.kind, column.score_maximum)
                    seen = (*(known or (link,)), ensured)[-8:]
                    self._item_links[key] = seen
                    self._check_failed.pop(key, None)
                    # written again: a later loss of it is a new one (`column_gone`)
                    self._gone_marked.pop(key, None)
                    # what is stored may still be any link seen here (the saves run apart);
                    # anything else was put there since this write read the column
                    began = [s for s in seen if s is not None]

                    def save() -> None:
                        with self.uow_factory() as uow:
                            if not uow.links.save_written_item(ensured, began, read=current):
                                log.info(
                                    "column %s at %s changed since it was written here"
                                    " (a run's mark, a person's change): its mark kept,"
                                    " what the write found saved",
                                    column.activity_id,
                                    d.id,
                                )
                            uow.commit()

                    self._background.start(
                        save, f"saving the line item link of {column.activity_id}"
                    )
                    if then is not None:
                        # the sends it starts queue for this request's slot before it is freed:
                        # the first grades of a new column go next, not behind rows waiting already
                        then(ensured)
                        await asyncio.sleep(0)
            except RemoteFailure as f:
                # the failure went through the governor as it is (a probe's is classified
                # there); spared, it is not counted on the breaker again by the caller
                if not spare or current is None or f.failure in _NOT_SPARED:
                    raise
                log.warning(
                    "column %s at %s not checked for its run (its grades go to it as it is;"
                    " the run writes it and sends them again): %s",
                    column.activity_id,
                    d.id,
                    f,
                )
                self._check_failed[key] = current.details_hash or ""
                return current, False
            return ensured, True

    def column_gone(self, d: Destination, item: ItemLink) -> bool:
        """The destination said it no longer holds the column `item` links to
        (`LINE_ITEM_GONE`): whether its link is to be marked (`mark_gone`). Once per loss in
        this process: the column's other grades refused alike mark nothing more, and its
        next write (`ensure_column`) forgets the loss, so a later one is marked again. On the
        loop's thread, as are this process's memories of its columns."""
        key = (d.tenant_id, d.id, item.activity_id)
        if self._gone_marked.get(key) == item.details_hash:
            return False
        self._gone_marked[key] = item.details_hash
        self._item_links.pop(key, None)  # not the column as this process wrote it
        return True

    def gone_unmarked(self, d: Destination, item: ItemLink) -> None:
        """Its mark (`mark_gone`) failed: the column's next refusal asks for it again."""
        self._gone_marked.pop((d.tenant_id, d.id, item.activity_id), None)

    def mark_gone(
        self,
        d: Destination,
        course_id: str,
        item: ItemLink,
        now: datetime,
        refused: LedgerKey | None = None,
    ) -> int:
        """The column `item` links to is gone at `d`: its link is marked to be looked at
        (`look_mark`), so the next send of its grades writes it again, as a person's change
        would have it (a SIS's PUT makes the line item again under its sourcedId; an LMS's
        column is looked up, then made), and, in the same transaction, its grades delivered
        to the column that is gone are due again, as a remaster of it makes them (a resync
        never sends a delivered row). Only while the stored link is the one the send went
        through: one marked or written since asks for its own look. The claims of its other
        grades being sent end (their sends may have reached the column before it went, and
        would settle them delivered): each waits for a send of its own. `refused`: the grade
        whose refusal found the column gone, which settles as refused (it waits for the
        column). How many were reopened. Database only: run apart from the loop."""
        with self.uow_factory() as uow:
            stored = uow.links.item(d.tenant_id, d.id, item.activity_id)
            if stored is None or stored.details_hash != item.details_hash:
                return 0
            marked = replace(stored, details_hash=new_look_mark())
            if not uow.links.save_written_item(marked, [stored], read=stored):
                return 0
            # reopened as read under lock (in key order), in one read: a grade computed
            # meanwhile is read as computed (no longer delivered, so left out), not written
            # over with the one it replaced
            rows = uow.ledger.get_many(d.tenant_id, d.id, course_id, [item.activity_id], lock=True)
            again = [
                (reopened(r, now), course_id)
                for r in rows.values()
                if r.state is DeliveryState.DELIVERED
            ]
            if again:
                uow.ledger.save_many(again)
            flying = uow.ledger.take_leases(
                [r.key for r in rows.values() if r.state in WAITING_STATES and r.key != refused],
                now,
            )
            uow.commit()
        log.info(
            "column %s at %s is gone there: it is written again before its next grade, and"
            " its %d delivered grade(s) sent again, and %d whose sends were under way",
            item.activity_id,
            d.id,
            len(again),
            len(flying),
        )
        return len(again)

    async def create_ahead(
        self,
        clients: Clients,
        columns: Iterable[ColumnKey],
        stale: Mapping[ColumnKey, str] | None = None,
    ) -> int:
        """Create the columns of activities known before their first grade, and rewrite
        those whose details changed (`stale`: the details' hash wanted, from computing) with
        no grade to send; how many were written. A column that could not be created is
        created (and its failure classified) by the first send that needs it: nothing here
        records a failure, and only the remote's asking to slow down pauses the destination.
        A paused destination's columns wait for its pause to end (or be lifted): this returns
        once they are written then, or the destination is deleted."""
        todo = {c for c in set(columns) if self._tried_ahead.get(c) is None}
        for c in todo:
            self._tried_ahead[c] = True
        for c, wanted in (stale or {}).items():
            if self._tried_ahead.get(c) != wanted:  # each change once
                self._tried_ahead[c] = wanted
                todo.add(c)
        by_course: dict[tuple[str, str, str], list[str]] = {}
        for tenant_id, dest_id, course_id, activity_id in sorted(todo):
            by_course.setdefault((tenant_id, dest_id, course_id), []).append(activity_id)
        if not by_course:
            return 0
        known = await asyncio.to_thread(self._load_known, by_course)
        written = await asyncio.gather(*(self._course_ahead(clients, k) for k in known))
        return sum(written)

    def _load_known(self, by_course: dict[tuple[str, str, str], list[str]]) -> list[_Known]:
        out: list[_Known] = []
        with self.uow_factory() as uow:
            for (tenant_id, dest_id, course_id), activity_ids in by_course.items():
                d = uow.destinations.get(tenant_id, dest_id)
                tenant = uow.tenants.get(tenant_id)
                course = uow.courses.get(tenant_id, course_id)
                link = uow.links.course(tenant_id, dest_id, course_id)
                if d is None or tenant is None or course is None or link is None:
                    continue
                activities = uow.activities.get_many(tenant_id, activity_ids)
                items = uow.links.items(tenant_id, dest_id, activity_ids)
                out.append(_Known(d, tenant, course, link, activities, items))
        return out

    async def _course_ahead(self, clients: Clients, k: _Known) -> int:
        d = k.destination
        todo = list(k.activities.values())
        written = 0
        while True:
            try:
                client = clients.get(d)
                course_link = await self.course_link(client, d, k.course, k.link)
            except Exception as exc:
                log.info("course %s at %s not prepared ahead: %s", k.course.id, d.id, exc)
                return written
            done = await asyncio.gather(
                *(self._column_ahead(client, k, course_link, a) for a in todo)
            )
            written += sum(n for n in done if isinstance(n, int))
            held = [(a, n) for a, n in zip(todo, done, strict=True) if not isinstance(n, int)]
            if not held:
                return written
            todo, paused = [a for a, _ in held], held[0][1]
            log.info(
                "%d column(s) of course %s at %s wait for the pause to end: %s",
                *(len(todo), k.course.id, d.id, paused),
            )
            if not await self.governor.wait_open(d):
                return written  # deleted
            # a first grade's send may have created some meanwhile
            k = replace(k, items=await asyncio.to_thread(self._items, k, todo))

    def _items(self, k: _Known, activities: list[Activity]) -> dict[str, ItemLink]:
        with self.uow_factory() as uow:
            d = k.destination
            return uow.links.items(d.tenant_id, d.id, [a.id for a in activities])

    async def _column_ahead(
        self, client: DestinationClient, k: _Known, course_link: CourseLink, activity: Activity
    ) -> int | DestinationPaused:
        """1: the column written, 0: not (in place already, or failed), or the pause that
        held it."""
        d = k.destination
        policy = activity_policy((k.tenant.policy, k.course.policy), activity)
        if isinstance(policy, Reason):  # settings that contradict each other: as a failure
            log.info("column %s at %s not created ahead: %s", activity.id, d.id, policy.text)
            self._try_again(d, k, activity)
            return 0
        try:
            column = column_for(activity, policy, client.capabilities)
            if isinstance(column, NoResult):
                return 0
            _, written = await self.ensure_column(
                client, d, course_link, column, k.items.get(activity.id)
            )
        except DestinationPaused as paused:
            return paused
        except RemoteFailure as f:
            if not slowed_down(self.governor, f, d):
                log.info("column %s at %s not created ahead: %s", activity.id, d.id, f)
                if f.failure is FailureClass.RETRY_LATER:
                    self._try_again(d, k, activity)
                return 0
            # the remote asked to wait: the column waits for the pause that put on `d`
            return DestinationPaused(d, str(f))
        except Exception as exc:
            log.info("column %s at %s not created ahead: %s", activity.id, d.id, exc)
            self._try_again(d, k, activity)
            return 0
        return int(written)

    def _try_again(self, d: Destination, k: _Known, activity: Activity) -> None:
        """A column that failed for a while (a 5xx, a timeout) is tried again by the next
        computing of its activity (any grade of the course, a sync run): a changed title or
        due date has no send of its own that would write it. One the destination refused
        is not asked again until its details change."""
        self._tried_ahead.pop((d.tenant_id, d.id, k.course.id, activity.id), None)
