"""What the services need from storage, as protocols the services own: one module per
aggregate, and the unit of work that exposes them all.

The SQL adapter (`gradesync.adapters.db`) implements them, each repository class naming the
protocol it implements; services never import it.
"""

from gradesync.services.ports.accounts import ApiKeyRepo, UserRepo
from gradesync.services.ports.destinations import DestinationRepo
from gradesync.services.ports.dirty import DirtyKeyRepo
from gradesync.services.ports.facts import (
    ActivityRepo,
    AttemptRepo,
    CourseRepo,
    DueDateOverrideRepo,
    EnrollmentRepo,
    PersonRepo,
    TenantRepo,
)
from gradesync.services.ports.ledger import DeliveryLogRepo, LedgerRepo
from gradesync.services.ports.links import LinkRepo
from gradesync.services.ports.lti import LaunchRepo, LtiLinkRepo, NonceRepo, ToolKeyRepo
from gradesync.services.ports.runs import RunRepo
from gradesync.services.ports.schedules import ScheduleRepo
from gradesync.services.ports.uow import UnitOfWork, UnitOfWorkFactory
from gradesync.services.ports.workers import WorkerRepo

__all__ = [
    "ActivityRepo",
    "ApiKeyRepo",
    "AttemptRepo",
    "CourseRepo",
    "DeliveryLogRepo",
    "DestinationRepo",
    "DirtyKeyRepo",
    "DueDateOverrideRepo",
    "EnrollmentRepo",
    "LaunchRepo",
    "LedgerRepo",
    "LinkRepo",
    "LtiLinkRepo",
    "NonceRepo",
    "PersonRepo",
    "RunRepo",
    "ScheduleRepo",
    "TenantRepo",
    "ToolKeyRepo",
    "UnitOfWork",
    "UnitOfWorkFactory",
    "UserRepo",
    "WorkerRepo",
]
