"""Two admins editing one SIS connection: the later form, opened before the earlier was
saved, is refused and shown again with the settings as they are now. Before, it posted
every field and silently wrote the earlier change back over."""

from __future__ import annotations

from html import unescape

from gradesync.services import sis
from tests.support.api import ApiEnv
from tests.support.console import form_fields

READONLY = sis.SCOPE_PREFIX + "gradebook.readonly"


def test_a_form_opened_before_another_change_is_refused(api: ApiEnv) -> None:
    api.district_sis()
    api.console_admin("t1")
    opened = form_fields(api.client.get("/console/sis/sis/edit").text)
    assert opened["version"]
    # another admin saves new scopes meanwhile
    earlier = api.client.post("/console/sis/sis/edit", data={**opened, "scopes": READONLY})
    assert "Saved the settings of District SIS." in earlier.text
    # the form opened before that renames the connection, with the old scopes in it
    later = api.client.post("/console/sis/sis/edit", data={**opened, "name": "Renamed"})
    assert later.status_code == 409
    said = " ".join(unescape(later.text).split())
    assert "Nothing was changed: these settings were changed since you opened them." in said
    with api.db.uow() as uow:
        dest = uow.destinations.get("t1", "sis")
    assert dest is not None and dest.name == "District SIS"
    assert dest.config["scopes"] == [READONLY]  # the earlier change stays
    # shown again as it is now, with the version it is made from: saved again, it is taken
    shown = form_fields(later.text)
    assert shown["scopes"] == READONLY and shown["name"] == "District SIS"
    assert shown["version"] != opened["version"]
    again = api.client.post("/console/sis/sis/edit", data={**shown, "name": "Renamed"})
    assert "Saved the settings of Renamed." in again.text
    with api.db.uow() as uow:
        dest = uow.destinations.get("t1", "sis")
    assert dest is not None and dest.name == "Renamed" and dest.config["scopes"] == [READONLY]
    # a form that carries no version (not made by this page) is not taken either: bad
    # input naming the field, as a malformed one is
    bare = {k: v for k, v in shown.items() if k != "version"}
    refused = api.client.post("/console/sis/sis/edit", data=bare)
    assert refused.status_code == 422
    assert "Settings version" in refused.text
    with api.db.uow() as uow:
        kept = uow.destinations.get("t1", "sis")
    assert kept is not None and kept.name == "Renamed"
