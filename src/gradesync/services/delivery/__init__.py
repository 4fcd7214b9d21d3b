"""Delivery: send the current desired state of due ledger rows, and record what happened.

- `pass_loop`: the pass (claim, prepare, send) and the `Deliverer` that runs it;
- `in_flight`: the tasks of one pass and the rows they hold;
- `governor`: per destination, what may be sent and when (limits, pauses, breaker);
- `failures`: what a remote failure means for the row and for its destination;
- `provisioning`: course links and columns at the destination, and their caches;
- `settle`: the writer that folds outcomes into the ledger in batches;
- `clients`: one destination client per destination;
- `records`: what the steps hand each other.
"""

from gradesync.services.delivery.clients import Clients
from gradesync.services.delivery.failures import outcome_of_failure, slowed_down
from gradesync.services.delivery.governor import DestinationPaused, Governor
from gradesync.services.delivery.pass_loop import Deliverer
from gradesync.services.delivery.records import (
    RUN_PRIORITY,
    DeliveryScope,
    DeliveryStats,
    Settlement,
)
from gradesync.services.delivery.settle import SettleWriter

__all__ = [
    "RUN_PRIORITY",
    "Clients",
    "Deliverer",
    "DeliveryScope",
    "DeliveryStats",
    "DestinationPaused",
    "Governor",
    "SettleWriter",
    "Settlement",
    "outcome_of_failure",
    "slowed_down",
]
