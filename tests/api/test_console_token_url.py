"""Setting a SIS connection's token URL back to the default asks first and says how to go
back: the connection's settings, which it links to, take the old URL again."""

from __future__ import annotations

from html import unescape

from tests.support.api import ApiEnv
from tests.support.console import form_fields, form_token

CUSTOM = "https://sis.example.org/oauth2/token"  # the server of the base URL: the same secret


def test_the_reset_links_to_the_settings_that_give_the_token_url_again(api: ApiEnv) -> None:
    api.district_sis(token_url=CUSTOM)
    api.console_admin("t1")
    token = form_token(api.client.get("/console/sis").text)
    asked = api.client.post("/console/sis/sis/token-url/default", data={"csrf": token})
    assert asked.status_code == 200
    said = " ".join(unescape(asked.text).split())
    assert (
        "The token URL it has now is not kept: to go back to it, give it again in "
        '<a href="/console/sis/sis/edit">the settings of District SIS</a>.'
    ) in said
    assert "gradesync sis add" not in said and "PUT /api/v1" not in said
    done = api.client.post(
        "/console/sis/sis/token-url/default", data={"csrf": token, "confirm": "yes"}
    )
    assert "District SIS now gets its tokens at the default token URL." in done.text
    with api.db.uow() as uow:
        dest = uow.destinations.get("t1", "sis")
    assert dest is not None and "token_url" not in dest.config
    # as said: the settings take it again (the Destinations form adds, it does not change)
    form = form_fields(api.client.get("/console/sis/sis/edit").text)
    assert form["token_url"] == ""
    saved = api.client.post("/console/sis/sis/edit", data={**form, "token_url": CUSTOM})
    assert "Saved the settings of District SIS." in saved.text
    with api.db.uow() as uow:
        dest = uow.destinations.get("t1", "sis")
    assert dest is not None and dest.config["token_url"] == CUSTOM
    assert dest.secret["client_secret"] == "s3cret"
    form = {"csrf": token, "kind": "sis", "id": "sis", "name": "District SIS",
            "base_url": "https://sis.example.org", "token_url": CUSTOM}  # fmt: skip
    refused = api.client.post("/console/destinations", data=form)
    assert "A destination &#39;sis&#39; already exists." in refused.text
