"""Setting a SIS connection's token URL back to the default asks first and says how to go
back: the console sets a token URL only when it adds a connection, so it names what can."""

from __future__ import annotations

from html import unescape

from gradesync.domain.model import UserRole
from gradesync.services import sis
from gradesync.services.accounts import create_user
from tests.support.api import ApiEnv
from tests.support.console import form_token, sign_in

CUSTOM = "https://auth.example.org/oauth2/token"


def test_the_reset_says_how_to_give_the_token_url_again(api: ApiEnv) -> None:
    api.tenant("t1", "admin")
    rt = api.runtime
    sis.add_connection(
        rt.db.uow, rt.clock, tenant_id="t1", destination_id="sis", name="District SIS",
        base_url="https://sis.example.org/ims/oneroster/gradebook/v1p2", token_url=CUSTOM,
        client_id="gradesync", client_secret="s3cret",
    )  # fmt: skip
    create_user(
        api.db.uow, rt.clock, tenant_id="t1", username="ops",
        password="a-long-password-1", role=UserRole.ADMIN,
    )  # fmt: skip
    assert sign_in(api.client, "ops", "a-long-password-1").status_code == 200
    token = form_token(api.client.get("/console/sis").text)
    asked = api.client.post("/console/sis/sis/token-url/default", data={"csrf": token})
    assert asked.status_code == 200
    said = " ".join(unescape(asked.text).split())
    assert (
        "The console sets a token URL only when it adds a connection (Destinations), so to go "
        "back to this one, give it again with gradesync sis add sis -t t1 --token-url URL, or "
        "with PUT /api/v1/sis/connections/sis and its token_url."
    ) in said
    # as said: the Destinations form adds, it does not set an existing connection's token URL
    form = {"csrf": token, "kind": "sis", "id": "sis", "name": "District SIS",
            "base_url": "https://sis.example.org", "token_url": CUSTOM}  # fmt: skip
    refused = api.client.post("/console/destinations", data=form)
    assert "A destination &#39;sis&#39; already exists." in refused.text
