"""Writing a destination's columns without one: a provisioner as a worker process makes it,
and a fake destination that answers a column's write as the test says (`FakeColumns.write`)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, NamedTuple

from gradesync.domain.model import CourseLink, ItemLink
from gradesync.domain.policy import Column
from gradesync.services.clock import SystemClock
from gradesync.services.delivery.background import BackgroundWrites
from gradesync.services.delivery.governor import Governor
from gradesync.services.delivery.provisioning import Provisioner
from gradesync.services.destination import RequestGate
from gradesync.services.engine_config import EngineSettings


class Provisioning(NamedTuple):
    """One worker process's provisioner, with the background writes and the governor it
    works with (its caches are its own)."""

    provisioner: Provisioner
    background: BackgroundWrites
    governor: Governor


def worker_provisioning(uow: Any, settings: EngineSettings) -> Provisioning:
    """A worker's provisioner over the unit of work factory `uow` (a database's `uow`, or a
    test's own)."""
    background = BackgroundWrites()
    governor = Governor(uow, SystemClock(), settings, background)
    return Provisioning(Provisioner(uow, settings, background, governor), background, governor)


class FakeColumns(ABC):
    """A destination's `ensure_column`, as the provisioner calls it; what a write does (and
    answers) is the subclass's `write`."""

    async def ensure_column(
        self,
        course: CourseLink,
        column: Column,
        link: ItemLink | None,
        *,
        force: bool = False,
        each_request: RequestGate | None = None,
    ) -> ItemLink:
        return await self.write(column, link, force=force)

    @abstractmethod
    async def write(self, column: Column, link: ItemLink | None, *, force: bool) -> ItemLink:
        """What the destination stores for the column's write, and answers."""
