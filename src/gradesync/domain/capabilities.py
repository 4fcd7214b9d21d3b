"""What a destination accepts. Destinations build one from their protocol and LMS profile so
policy can shape the desired result without knowing which LMS it is talking to."""

from __future__ import annotations

from dataclasses import dataclass

from gradesync.domain.model import ScoreForm


@dataclass(frozen=True, slots=True)
class Capabilities:
    score_form: ScoreForm = ScoreForm.POINTS
    extra_credit: bool = False  # accepts scoreGiven > scoreMaximum
    comments: bool = True
    statuses: bool = False  # late/missing/excused flags are transmitted
    name_max_length: int | None = None
    forbidden_name_chars: str = ""
    # whose rules the two above are ("Brightspace"), named in reasons and notes
    name_rules_from: str = ""
    zeros_stored: bool = True  # False: a zero is not stored (Brightspace), so it is not sent
    percent_scale: float = 100.0  # percent form: the score_maximum sent (1.0 for LTI 1.1)
    pending_results: bool = True  # accepts a result with no score yet (gradingProgress Pending)
    # Column maximums must be whole numbers (Open edX): fractional points are rescaled by the
    # smallest factor up to `integer_scale_limit` that makes them whole, else refused.
    integer_points: bool = False
    integer_scale_limit: int = 100
    # The LMS counts a grade only on a column tied to the LTI link it was launched from
    # (Open edX): a column without a resource link cannot count.
    needs_resource_link: bool = False
