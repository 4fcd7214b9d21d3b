"""Why a login or launch was refused.

`LaunchRefused` (LTI 1.3 login, launch and deep linking): a stable code, a sentence naming the
claim and the rule, and what was known about who sent it (for the rejection record).
`Lti11Refused` (LTI 1.1 launch): the HTTP status, the form field at fault, a rule and a
sentence.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from gradesync.services.ports import UnitOfWorkFactory
from gradesync.services.ports.lti import Rejection


@dataclass
class LaunchRefused(Exception):
    code: str  # bad_signature, wrong_audience, expired, nonce_replayed, unknown_deployment, ...
    message: str
    status: int = 400
    tenant_id: str | None = None
    destination_id: str | None = None
    issuer: str | None = None
    client_id: str | None = None
    deployment_id: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(f"{self.code}: {self.message}")


class Lti11Refused(Exception):
    """Why an LTI 1.1 launch was refused: HTTP status, the field at fault, a rule and a
    sentence."""

    def __init__(
        self,
        status: int,
        field: str,
        rule: str,
        message: str,
        *,
        more: Sequence[tuple[str, str, str]] = (),
    ) -> None:
        # `more`: the form's other problems (field, rule, message), told at once
        every = [(field, rule, message), *more]
        super().__init__("; ".join(f"{f}: {m} [{r}]" for f, r, m in every))
        self.status = status
        self.field = field
        self.rule = rule
        self.message = message
        self.problems = tuple(every)

    @classmethod
    def of(cls, status: int, problems: Sequence[tuple[str, str, str]]) -> Lti11Refused:
        first, *rest = problems
        return cls(status, *first, more=rest)


def record_refusal(uow: UnitOfWorkFactory, refused: LaunchRefused, at: datetime) -> None:
    """Keep a refusal for support (`lti_rejections`), in its own transaction: the refused
    login or launch itself changes nothing."""
    with uow() as u:
        u.launches.add_rejection(
            Rejection(
                code=refused.code,
                message=refused.message,
                at=at,
                tenant_id=refused.tenant_id,
                destination_id=refused.destination_id,
                issuer=refused.issuer,
                client_id=refused.client_id,
                deployment_id=refused.deployment_id,
                detail=refused.detail,
            )
        )
        u.commit()


def record_lti11_refusal(
    uow: UnitOfWorkFactory,
    refused: Lti11Refused,
    at: datetime,
    *,
    consumer_key: str,
    tenant_id: str | None = None,
    destination_id: str | None = None,
) -> None:
    """Keep a refused LTI 1.1 launch beside the LTI 1.3 ones, so `doctor --destination`
    and `GET /lti/rejections` count it: the rule as its code, the sentence naming the
    field, and the consumer key (an identifier, like an LTI 1.3 client id). Nothing of the
    form's learner or signature is kept. Its own transaction: the launch changed nothing."""
    record_refusal(
        uow,
        LaunchRefused(
            code=refused.rule[:64],
            message=str(refused),
            tenant_id=tenant_id,
            destination_id=destination_id,
            detail={"lti": "1.1", "consumer_key": consumer_key[:255]}
            if consumer_key
            else {"lti": "1.1"},
        ),
        at,
    )
