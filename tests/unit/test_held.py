"""What a gradebook holds of a grade, from the delivery log line each adapter writes."""

from __future__ import annotations

from gradesync.domain.held import Held, held_score, newest_held


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


def test_a_held_score_reads_on_the_points_it_was_sent_on_when_the_log_kept_them() -> None:
    fraction = {"operation": "replaceResult", "score": "0.8", "sourcedid": "s"}
    rest = {"result": {"sourcedId": "r", "score": 8, "scoreStatus": "fully graded"}}
    for kind, payload in (("lti11_outcomes", fraction), ("oneroster_rest", rest)):
        sent = held_score({"outcome": "delivered", "payload": payload, "score_scale": 10.0})
        assert sent is not None
        assert sent.on_scale(kind, 20).text() == "8 / 10", kind  # the points now are 20
        # a line logged before the points were kept reads on the points now
        old = held_score({"outcome": "delivered", "payload": payload, "score_scale": None})
        assert old is not None and old.on_scale(kind, 20).score_maximum == 20, kind


def test_a_grade_read_back_reads_on_the_points_the_readback_logged() -> None:
    for kind, given, maximum in (("lti11_outcomes", 0.9, 1.0), ("oneroster_rest", 9, None)):
        found = {"remote_given": given, "remote_maximum": maximum}
        line = {"outcome": "overridden", "payload": {"read_back": found}, "score_scale": 10.0}
        read = held_score(line)
        assert read is not None and read.read_back
        assert read.on_scale(kind, 20).text() == "9 / 10", kind  # the points now are 20
        old = held_score(line | {"score_scale": None})  # logged before the points were kept
        assert old is not None and old.on_scale(kind, 20).score_maximum == 20, kind
