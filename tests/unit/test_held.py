"""What a gradebook holds of a grade, from the delivery log line each adapter writes."""

from __future__ import annotations

from gradesync.domain.held import (
    Held,
    held_score,
    line_item_maximum,
    newest_held,
    provisioned,
)
from gradesync.domain.model import ItemLink


def test_each_adapters_delivered_send_says_its_score() -> None:
    ags = {"scoreGiven": 8.0, "scoreMaximum": 10.0, "activityProgress": "Completed"}
    lti11 = {"operation": "replaceResult", "score": "0.8", "sourcedid": "s"}
    removed = {"operation": "deleteResult", "sourcedid": "s"}
    rest = {"result": {"sourcedId": "r", "score": 8, "scoreStatus": "fully graded"}}
    csv = {"sourcedId": "r", "score": "8", "scoreStatus": "fully graded"}
    said = {
        "ags": Held(8.0, 10.0, False),
        "lti11": Held(0.8, 1.0, False),
        "removed": Held(None, None, False),
        "rest": Held(8.0, None, False),
        "csv": Held(8.0, None, False),
    }
    for name, payload in (
        ("ags", ags),
        ("lti11", lti11),
        ("removed", removed),
        ("rest", rest),
        ("csv", csv),
    ):
        assert held_score({"outcome": "delivered", "payload": payload}) == said[name], name
    assert [h.text() for h in said.values()] == ["8 / 10", "0.8 / 1", "no score", "8", "8"]


def test_the_newest_of_a_send_and_a_readback_that_found_an_edit_wins() -> None:
    sent = {"outcome": "delivered", "payload": {"scoreGiven": 7, "scoreMaximum": 10}}
    found = {
        "outcome": "overridden",
        "payload": {"read_back": {"remote_given": 9.0, "remote_maximum": 10.0}},
    }
    refused = {"outcome": "rejected", "payload": {"scoreGiven": 5, "scoreMaximum": 10}}
    repair = {"outcome": "repair", "payload": {}}
    assert newest_held([refused, repair, found, sent]) == Held(9.0, 10.0, True)
    assert newest_held([refused, sent, found]) == Held(7.0, 10.0, False)
    assert newest_held([refused, repair]) is None  # a refusal changed nothing there


def test_a_held_score_reads_on_the_activitys_scale_where_the_gradebook_gives_none() -> None:
    fraction, sis, ags = Held(0.8, 1.0, True), Held(8.0, None, False), Held(7.0, 10.0, False)
    assert fraction.on_scale("lti11_outcomes", 10).text() == "8 / 10"
    assert fraction.on_scale("lti11_outcomes", 10) == Held(8.0, 10.0, True)
    assert sis.on_scale("oneroster_rest", 10).text() == "8 / 10"
    assert sis.on_scale("oneroster_csv", 10).text() == "8 / 10"
    assert ags.on_scale("lti13_ags", 20) == ags  # the LMS's own maximum stands
    assert fraction.on_scale("lti11_outcomes", None) == fraction  # no points known: as held
    assert Held(None, None, False).on_scale("lti11_outcomes", 10).text() == "no score"


def test_an_lti11_fraction_reads_on_the_points_its_line_logged() -> None:
    fraction = {"operation": "replaceResult", "score": "0.8", "sourcedid": "s"}
    sent = held_score({"outcome": "delivered", "payload": fraction, "score_scale": 10.0})
    assert sent is not None
    assert sent.on_scale("lti11_outcomes", 20).text() == "8 / 10"  # the points now are 20
    # a line logged before the points were kept reads on the points now
    old = held_score({"outcome": "delivered", "payload": fraction, "score_scale": None})
    assert old is not None and old.on_scale("lti11_outcomes", 20).text() == "16 / 20"
    found = {"remote_given": 0.9, "remote_maximum": 1.0}
    line = {"outcome": "overridden", "payload": {"read_back": found}, "score_scale": 10.0}
    read = held_score(line)
    assert read is not None and read.read_back
    assert read.on_scale("lti11_outcomes", 20).text() == "9 / 10"


def test_a_sis_score_reads_on_its_line_items_maximum_as_it_is_now() -> None:
    """The SIS puts the score on its line item's resultValueMax, which gradesync rewrites
    when the activity's points change: a points' scale logged with the line does not count."""
    rest = {"result": {"sourcedId": "r", "score": 8, "scoreStatus": "fully graded"}}
    sent = {"outcome": "delivered", "payload": rest, "score_scale": 10.0}
    found = {"outcome": "overridden", "payload": {"read_back": {"remote_given": 9}}}
    for kind in ("oneroster_rest", "oneroster_csv"):
        held, read = held_score(sent), held_score(found | {"score_scale": 10.0})
        assert held is not None and read is not None
        assert held.on_scale(kind, 10, line_item=20).text() == "8 / 20", kind
        assert read.on_scale(kind, 10, line_item=20).text() == "9 / 20", kind
        # a line item written before gradesync kept its maximum: the points now stand in
        assert read.on_scale(kind, 20).text() == "9 / 20", kind


def test_a_sis_link_keeps_the_maximum_its_line_item_was_written_with() -> None:
    link = ItemLink("t", "sis", "a1", "li-1", "h", {"sync_to_sis": True})
    written = provisioned(link, "oneroster_rest", 20.0)
    assert line_item_maximum(written) == 20.0 and written.data["sync_to_sis"] is True
    assert provisioned(written, "oneroster_rest", 20.0) is written  # unchanged
    assert line_item_maximum(provisioned(link, "oneroster_csv", 15.0)) == 15.0
    assert provisioned(link, "lti13_ags", 20.0) is link  # the LMS gives its own maximum
    assert line_item_maximum(link) is None and line_item_maximum(None) is None
