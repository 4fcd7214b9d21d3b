"""One destination: configured, reachable, allowed to send grades."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime

from gradesync.domain.capabilities import Capabilities
from gradesync.domain.diagnosis.checks import (
    LTI_KINDS,
    REMOTE_CAUSES,
    Check,
    CheckCode,
    DeliveryFact,
    Diagnosis,
    RejectionFact,
    cause_title,
    credentials_fix,
    current_code,
    plural,
    when,
)
from gradesync.domain.diagnosis.destination_checks import (
    destination_ready_check,
    grade_scope_check,
    rate_limit_check,
)
from gradesync.domain.model import (
    Destination,
    DestinationKind,
)
from gradesync.domain.reasons import Reason
from gradesync.domain.remedies import Reader, Remedy

# --- one destination -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ProbeStep:
    """One step of the destination's own check (token, scopes, listing, test result), as a
    destination client's `check` and `destinations check` answer it."""

    name: str
    passed: bool
    evidence: str
    remedy: str | None = None
    # what the step found, for a program (e.g. "token_granted", "bad_credentials"); `fix` its
    # remedy held as a code, `remedy` then the command line's words (`read_over` makes
    # another reader's)
    code: str | None = None
    fix: Remedy | None = None

    def read_over(self, reader: Reader) -> ProbeStep:
        """The step with its remedy in the words of an administrator reading over `reader`."""
        if self.fix is None:
            return self
        return replace(self, remedy=self.fix.words(reader))


@dataclass(frozen=True, slots=True)
class DestinationDiagnosisFacts:
    now: datetime
    destination: Destination
    capabilities: Capabilities | Reason
    courses: int  # courses connected to it
    launches: int  # launches received through it
    last_launch_at: datetime | None
    rejections: tuple[RejectionFact, ...]
    failures: Mapping[str, int]  # ledger rows by failure reason (rejected/retrying)
    delivered: int
    last_delivery: DeliveryFact | None
    probe: tuple[ProbeStep, ...] = ()
    waiting: int = 0  # grades waiting to be sent to it (pending or retrying)


# Launch refusals that mean the platform or deployment is not the one registered (seed:
# "deployment scope problems", a Canvas shared between institutions).
DEPLOYMENT_CODES = {
    "unknown_deployment",
    "wrong_issuer",
    "wrong_audience",
    "unknown_platform",
    "unknown_client",
}

# A SIS's token_url is not among them: left out, it is /ims/oneroster/oauth2/token on the
# base URL's server (adapters.destinations.oneroster, docs/oneroster.md).
_REQUIRED = {
    DestinationKind.LTI13_AGS: ("issuer", "client_id", "auth_token_url", "key_set_url"),
    DestinationKind.LTI11_OUTCOMES: (),
    DestinationKind.ONEROSTER_REST: ("base_url", "client_id"),
    DestinationKind.ONEROSTER_CSV: (),
}


def diagnose_destination(facts: DestinationDiagnosisFacts) -> Diagnosis:
    d = facts.destination
    checks = [destination_ready_check(d, facts.capabilities, facts.now)]
    missing = [k for k in _REQUIRED.get(d.kind, ()) if not d.config.get(k)]
    if d.kind is DestinationKind.LTI13_AGS and not d.config.get("deployment_ids"):
        missing.append("deployment_ids")
    checks.append(
        Check(
            CheckCode.REGISTRATION,
            "The registration is complete",
            not missing,
            "Every required setting is present."
            if not missing
            else f"Missing: {', '.join(missing)}.",
            None if not missing else "Complete the destination's settings.",
            d.id,
        )
    )
    scope = grade_scope_check(d)
    if scope is not None:
        checks.append(scope)
    if d.kind is DestinationKind.LTI11_OUTCOMES:
        checks.append(_lti11_launches_check(facts))
    elif d.kind in LTI_KINDS:
        deployment = [r for r in facts.rejections if r.code in DEPLOYMENT_CODES]
        if deployment:
            latest = max(deployment, key=lambda r: r.at)
            deps = sorted({r.deployment_id for r in deployment if r.deployment_id})
            checks.append(
                Check(
                    CheckCode.LAUNCHES_ACCEPTED,
                    "Launches come from the registered platform and deployment",
                    False,
                    f"{plural(len(deployment), 'launch')} refused ({latest.code}), the latest on "
                    f"{when(latest.at)}: {latest.message}"
                    + (f" Deployments seen: {', '.join(deps)}." if deps else ""),
                    "Deployment scope problem: the LMS is using a deployment (or an issuer) "
                    "gradesync does not know — common in a Canvas shared between "
                    "institutions. Add the deployment id to this platform's registration if "
                    "it is yours, or install the tool in the right sub-account.",
                    d.id,
                )
            )
        else:
            others = [r for r in facts.rejections if r.code not in DEPLOYMENT_CODES]
            checks.append(
                Check(
                    CheckCode.LAUNCHES_ACCEPTED,
                    "Launches come from the registered platform and deployment",
                    True,
                    f"{plural(facts.launches, 'launch')} received, the latest "
                    f"{when(facts.last_launch_at)}; {plural(len(others), 'other refusal')}.",
                    None,
                    d.id,
                )
            )
    for step in facts.probe:
        if step.name == "registration":
            continue  # the same settings the registration check above reads: said once
        checks.append(
            Check(
                f"probe_{_slug(step.name)}",
                step.name,
                step.passed,
                step.evidence,
                step.remedy,
                d.id,
                reason=step.code,
                fix=step.fix,
            )
        )
    # rows an older gradesync stored under a former code are counted under the current one
    failures: dict[str, int] = {}
    for k, v in facts.failures.items():
        failures[current_code(k)] = failures.get(current_code(k), 0) + v
    config_codes = {k: v for k, v in failures.items() if k in REMOTE_CAUSES}
    other_codes = {k: v for k, v in failures.items() if k not in REMOTE_CAUSES}
    if failures:
        parts = [
            f"{code}: {n} ({cause_title(code, d.kind)})" for code, n in sorted(config_codes.items())
        ] + [f"{code}: {n}" for code, n in sorted(other_codes.items())]
        worst = max(failures.items(), key=lambda kv: kv[1])[0]
        fix = credentials_fix(d) if worst == "bad_credentials" else None
        checks.append(
            Check(
                CheckCode.DELIVERIES_ACCEPTED,
                "The destination accepts gradesync's results",
                False,
                f"{facts.delivered} delivered; failing: " + "; ".join(parts) + ".",
                fix.words(Reader.CLI)
                if fix is not None
                else REMOTE_CAUSES[worst][1]
                if worst in REMOTE_CAUSES
                else "Diagnose an affected learner for the exact message.",
                d.id,
                reason=worst,
                fix=fix,
            )
        )
    else:
        last = facts.last_delivery
        checks.append(
            Check(
                CheckCode.DELIVERIES_ACCEPTED,
                "The destination accepts gradesync's results",
                True,
                f"{facts.delivered} delivered, none failing"
                + (f"; last send {when(last.sent_at)} ({last.outcome})" if last else "")
                + ".",
                None,
                d.id,
            )
        )
    rate = rate_limit_check(d, facts.waiting)
    if rate is not None:
        checks.append(rate)
    return Diagnosis(
        "destination",
        d.name,
        tuple(checks),
        {"destination_id": d.id, "kind": d.kind.value, "courses": facts.courses},
    )


# LTI 1.1 launch refusals (their rule is their code, `services.lti.errors`) that mean the
# consumer's settings are not the LMS's: its key, its secret, its allowed hosts
LTI11_SETTINGS_CODES = {"mismatch", "unknown", "no_secret", "host_not_allowed"}


def _lti11_launches_check(facts: DestinationDiagnosisFacts) -> Check:
    """An LTI 1.1 consumer has no platform or deployment: its launches are signed with its
    key and secret and name outcome hosts it allows, and a launch refused for them fails the
    check with the consumer's remedy, as a grade its LMS refused for them does."""
    d = facts.destination
    name = "Launches are signed with the consumer's key and secret"
    refused = [r for r in facts.rejections if r.code in LTI11_SETTINGS_CODES]
    if not refused:
        return Check(
            CheckCode.LAUNCHES_ACCEPTED,
            name,
            True,
            f"{plural(facts.launches, 'launch')} received, the latest "
            f"{when(facts.last_launch_at)}; "
            f"{plural(len(facts.rejections), 'other refusal')}.",
            None,
            d.id,
        )
    latest = max(refused, key=lambda r: r.at)
    fix = Remedy("bad_configuration", destination=d.id)  # the consumer's settings
    return Check(
        CheckCode.LAUNCHES_ACCEPTED,
        name,
        False,
        f"{plural(len(refused), 'launch')} refused ({latest.code}), the latest on "
        f"{when(latest.at)}: {latest.message}",
        fix.words(Reader.CLI),
        d.id,
        reason=fix.code,
        fix=fix,
    )


def _slug(text: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in text.lower()).strip("_")
