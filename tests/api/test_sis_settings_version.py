"""Two admins changing one SIS connection through the API or the CLI: the change made from
settings another change reached first is refused, and the first change stays. The API does it
the HTTP way (the GET's `ETag`, the PUT's `If-Match`, `412`), the CLI with `sis show`'s version
and `sis add --expect-version`. Before, only the console passed the version: the API and the
CLI silently wrote the later change over the earlier."""

from __future__ import annotations

import json
from html import unescape

from typer.testing import CliRunner

from gradesync.cli import app
from gradesync.domain.model import Destination
from gradesync.services import sis
from gradesync.testing.seeding import add_destination
from tests.support.api import SIS_BASE, ApiEnv, Caller
from tests.support.console import form_fields

READONLY = sis.SCOPE_PREFIX + "gradebook.readonly"


def _stored(api: ApiEnv) -> Destination:
    with api.db.uow() as uow:
        dest = uow.destinations.get("t1", "sis")
    assert dest is not None
    return dest


def test_the_api_refuses_a_change_made_from_settings_changed_since(api: ApiEnv) -> None:
    admin = Caller(api.client, api.district_sis())
    opened = admin.get("/sis/connections/sis")
    assert opened.status_code == 200, opened.text
    tag = opened.headers["ETag"]
    assert tag == f'"{opened.json()["version"]}"'
    assert "client_secret" not in opened.text and "s3cret" not in opened.text

    # both admins start from the same version; the first one's change is taken
    first = admin.put(
        "/sis/connections/sis", json={"scopes": [READONLY]}, headers={"If-Match": tag}
    )
    assert first.status_code == 200, first.text
    assert first.headers["ETag"] != tag and first.headers["ETag"] == f'"{first.json()["version"]}"'
    after_first = _stored(api)

    # the second, from the same starting version, is refused and changes nothing
    second = admin.put(
        "/sis/connections/sis",
        json={"name": "Renamed", "scopes": [sis.DEFAULT_SCOPES[0]]},
        headers={"If-Match": tag},
    )
    assert second.status_code == 412, second.text
    (problem,) = second.json()["detail"]
    assert (problem["field"], problem["rule"], problem["loc"]) == (
        "If-Match",
        "changed",
        ["header", "If-Match"],
    )
    assert "changed since" in problem["msg"] and "Nothing was changed" in problem["msg"]
    now = _stored(api)
    assert now.name == "District SIS" and now.config == after_first.config
    assert now.config["scopes"] == [READONLY]

    # made again from the version now stored, it is taken
    again = admin.put(
        "/sis/connections/sis",
        json={"name": "Renamed"},
        headers={"If-Match": first.headers["ETag"]},
    )
    assert again.status_code == 200, again.text
    assert _stored(api).name == "Renamed"


def test_a_new_secret_is_a_new_version(api: ApiEnv) -> None:
    """The secret is no part of the settings shown, but a change made from settings read
    before another admin gave a new secret is refused: it would write its own secret over
    the new one unseen. The version tells nothing of the secret."""
    admin = Caller(api.client, api.district_sis())
    tag = admin.get("/sis/connections/sis").headers["ETag"]
    rotated = admin.put(
        "/sis/connections/sis", json={"client_secret": "rotated"}, headers={"If-Match": tag}
    )
    assert rotated.status_code == 200, rotated.text
    assert rotated.headers["ETag"] != tag
    assert admin.get("/sis/connections/sis").headers["ETag"] == rotated.headers["ETag"]
    stale = admin.put(
        "/sis/connections/sis", json={"client_secret": "mine"}, headers={"If-Match": tag}
    )
    assert stale.status_code == 412, stale.text
    assert _stored(api).secret["client_secret"] == "rotated"
    # the same secret given again is counted too: the version does not say it was the same
    again = admin.put("/sis/connections/sis", json={"client_secret": "rotated"})
    assert again.status_code == 200 and again.headers["ETag"] != rotated.headers["ETag"]


def test_if_match_is_optional_and_read_as_http_says(api: ApiEnv) -> None:
    admin = Caller(api.client, api.district_sis())
    tag = admin.get("/sis/connections/sis").headers["ETag"]
    # without it, a change is made as before
    assert admin.put("/sis/connections/sis", json={"name": "One"}).status_code == 200
    # `*`: any version, as long as the connection exists; one of several tags will do
    assert (
        admin.put(
            "/sis/connections/sis", json={"name": "Two"}, headers={"If-Match": "*"}
        ).status_code
        == 200
    )
    now = admin.get("/sis/connections/sis").headers["ETag"]
    listed = admin.put(
        "/sis/connections/sis", json={"name": "Three"}, headers={"If-Match": f"{tag}, {now}"}
    )
    assert listed.status_code == 200, listed.text
    before = _stored(api)
    # a weak tag never matches (If-Match compares strongly); a new connection has no version
    weak = admin.put(
        "/sis/connections/sis",
        json={"name": "Four"},
        headers={"If-Match": "W/" + listed.headers["ETag"]},
    )
    assert weak.status_code == 412, weak.text
    new = admin.put(
        "/sis/connections/sis2",
        json={"base_url": SIS_BASE, "client_id": "c", "client_secret": "s"},
        headers={"If-Match": listed.headers["ETag"]},
    )
    assert new.status_code == 412, new.text
    with api.db.uow() as uow:
        assert uow.destinations.get("t1", "sis2") is None
    # a malformed header is refused, naming it and the rule, not read as no precondition
    for bad in ("abc", "bogus", '"unclosed', "", ",", " , ,", '*, "x"', '"x" "y"', "W/x"):
        r = admin.put("/sis/connections/sis", json={"name": "Five"}, headers={"If-Match": bad})
        assert r.status_code == 422, (bad, r.text)
        assert [(p["field"], p["rule"]) for p in r.json()["detail"]] == [("If-Match", "etag")]
    assert _stored(api) == before


def test_if_match_holding_no_version_is_refused_not_read_as_changed(api: ApiEnv) -> None:
    """A well-formed tag holding no settings version (a typo, a cut copy) is not a version
    changed since: refused `etag` naming If-Match and the rule, as `sis add --expect-version`
    refuses it. A stale version stays `412 changed`, `*` stays any version."""
    admin = Caller(api.client, api.district_sis())
    tag = admin.get("/sis/connections/sis").headers["ETag"]
    before = _stored(api)
    for bad in ('"bogus"', tag[:-2] + '"', tag.upper(), f'{tag}, "3f2a"', '""'):
        r = admin.put("/sis/connections/sis", json={"name": "One"}, headers={"If-Match": bad})
        assert r.status_code == 422, (bad, r.text)
        (problem,) = r.json()["detail"]
        assert (problem["field"], problem["rule"]) == ("If-Match", "etag"), problem
        assert problem["loc"] == ["header", "If-Match"]
        assert "64 lowercase hexadecimal characters" in problem["msg"], problem
    assert _stored(api) == before
    stale = '"' + "0" * 64 + '"'
    r = admin.put("/sis/connections/sis", json={"name": "One"}, headers={"If-Match": stale})
    assert r.status_code == 412, r.text
    r = admin.put("/sis/connections/sis", json={"name": "One"}, headers={"If-Match": "*"})
    assert r.status_code == 200, r.text


def test_if_match_ignores_empty_list_elements_as_http_says(api: ApiEnv) -> None:
    """RFC 9110 5.6.1: a recipient ignores empty elements of a list (`"a", , "b"`); they do
    not make a well-formed header malformed, and do not make a stale one current."""
    admin = Caller(api.client, api.district_sis())
    tag = admin.get("/sis/connections/sis").headers["ETag"]
    stale = '"' + "0" * 64 + '"'
    r = admin.put(
        "/sis/connections/sis", json={"name": "One"}, headers={"If-Match": f", {stale}, , {tag},"}
    )
    assert r.status_code == 200, r.text
    before = _stored(api)
    r = admin.put("/sis/connections/sis", json={"name": "Two"}, headers={"If-Match": f",{tag},"})
    assert r.status_code == 412, r.text  # the version `tag` named is gone: still stale
    assert [(p["field"], p["rule"]) for p in r.json()["detail"]] == [("If-Match", "changed")]
    assert _stored(api) == before


def test_the_cli_refuses_a_change_made_from_settings_changed_since(
    api: ApiEnv, api_cli: CliRunner
) -> None:
    admin = Caller(api.client, api.district_sis())
    shown = api_cli.invoke(app, ["sis", "show", "sis", "-t", "t1", "--json"])
    assert shown.exit_code == 0, shown.output
    version = json.loads(shown.stdout)["version"]
    assert json.loads(shown.stdout) == admin.get("/sis/connections/sis").json()
    said = api_cli.invoke(app, ["sis", "show", "sis", "-t", "t1"])
    assert said.exit_code == 0 and f"version: {version}" in said.stdout, said.output

    add = ["sis", "add", "sis", "-t", "t1", "--no-check", "--expect-version", version]
    first = api_cli.invoke(app, [*add, "--scope", READONLY])
    assert first.exit_code == 0, first.output
    after_first = _stored(api)
    second = api_cli.invoke(app, [*add, "--name", "Renamed", "--scope", sis.DEFAULT_SCOPES[0]])
    assert second.exit_code == 4, second.output
    assert second.output.startswith(
        "error: --expect-version: These settings were changed since you opened them: they "
        f"are at version {sis.settings_version(after_first)} now. [changed]"
    ), second.output
    now = _stored(api)
    assert now.name == "District SIS" and now.config == after_first.config

    # from the version now stored, the change is taken
    fresh = sis.settings_version(after_first)
    again = api_cli.invoke(app, [*add[:-1], fresh, "--name", "Renamed", "--json"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["version"] == sis.settings_version(_stored(api))
    assert _stored(api).name == "Renamed"


def test_if_match_on_a_destination_that_is_no_sis_is_the_kind_error(api: ApiEnv) -> None:
    """A destination that is no SIS has no SIS settings to be stale: `If-Match` or not, the
    answer is the `422` `kind` a GET of it gives, not a `412` telling to GET it again."""
    admin = Caller(api.client, api.tenant("t1", "admin"))
    add_destination(api.db.uow, "t1", "lms", name="Canvas")
    before = admin.get("/destinations/lms").json()
    for tag in ('"' + "0" * 64 + '"', "*", None):  # a tag holding no version is `etag`
        headers = {"If-Match": tag} if tag else {}
        r = admin.put("/sis/connections/lms", json={"name": "q"}, headers=headers)
        assert r.status_code == 422, (tag, r.text)
        assert [(p["loc"], p["rule"]) for p in r.json()["detail"]] == [
            (["path", "destination_id"], "kind")
        ]
    assert admin.get("/destinations/lms").json() == before


def test_the_cli_takes_the_version_as_the_apis_etag_too(api: ApiEnv, api_cli: CliRunner) -> None:
    """Copied from the API, the version is in its ETag's double quotes: it is the same version,
    not another one ("changed"). A weak tag or a stray quote is malformed (`etag`, exit 2)."""
    admin = Caller(api.client, api.district_sis())
    tag = admin.get("/sis/connections/sis").headers["ETag"]
    assert tag.startswith('"')
    add = ["sis", "add", "sis", "-t", "t1", "--no-check", "--expect-version"]
    before = _stored(api)
    for bad in ("W/" + tag, tag[:-1], '""'):
        r = api_cli.invoke(app, [*add, bad, "--name", "Weak"])
        assert r.exit_code == 2, (bad, r.output)
        assert r.output.startswith("error: --expect-version: "), r.output
        assert r.output.rstrip().endswith("[etag]"), r.output
    assert _stored(api) == before
    taken = api_cli.invoke(app, [*add, tag, "--name", "Quoted"])
    assert taken.exit_code == 0, taken.output
    assert _stored(api).name == "Quoted"
    # hexadecimal in upper case is the same version (it was refused as malformed)
    upper = sis.settings_version(_stored(api)).upper()
    taken = api_cli.invoke(app, [*add, upper, "--name", "Upper"])
    assert taken.exit_code == 0, taken.output
    assert _stored(api).name == "Upper"


def test_the_cli_refuses_a_version_that_is_no_version(api: ApiEnv, api_cli: CliRunner) -> None:
    """A typo or a cut copy was read as a version another change had left: "changed", exit 4,
    telling to show the settings again when nothing had changed. It is malformed (`etag`,
    exit 2), named and explained, and nothing changes."""
    api.district_sis()
    version = sis.settings_version(_stored(api))
    before = _stored(api)
    add = ["sis", "add", "sis", "-t", "t1", "--no-check", "--name", "Typo", "--expect-version"]
    for bad in ("bogus", '"bogus"', version[:-1], version + "0", "*", " "):
        r = api_cli.invoke(app, [*add, bad])
        assert r.exit_code == 2, (bad, r.output)
        [line] = r.output.splitlines()
        assert line.startswith(f"error: --expect-version: {bad!r} is no settings version: "), line
        assert "64 hexadecimal characters" in line and line.endswith("[etag]"), line
        said = api_cli.invoke(app, [*add, bad, "--json"])
        assert said.exit_code == 2, (bad, said.output)
        [problem] = json.loads(said.stdout)["error"]["problems"]
        assert (problem["field"], problem["rule"]) == ("--expect-version", "etag"), problem
    assert _stored(api) == before


def test_a_gets_settings_put_back_with_its_etag_changes_nothing(api: ApiEnv) -> None:
    """GET answered the profile's settings at the top of `config`, where PUT refuses them
    (`unknown_field`): what a client read was no body it could write back. GET's `settings`
    is one, in PUT's shape, and edited there it changes what was edited alone."""
    admin = Caller(
        api.client,
        api.district_sis(
            token_url=SIS_BASE + "/oauth/token",
            profile={"name_max_length": 40, "category_match": "name", "concurrency": 3},
        ),
    )
    with api.db.uow() as uow:  # what alignment writes, no setting PUT takes
        dest = uow.destinations.get("t1", "sis")
        assert dest is not None
        dest.config["category_map"] = {"Quizzes": "cat-quiz"}
        uow.destinations.upsert(dest, api.runtime.clock.now())
        uow.commit()
    before = _stored(api)
    opened = admin.get("/sis/connections/sis")
    settings = opened.json()["settings"]
    assert settings["profile"]["name_max_length"] == 40
    assert settings["profile"]["category_match"] == "name"
    assert settings["token_url"] == SIS_BASE + "/oauth/token" and settings["file_based"] is False

    same = admin.put(
        "/sis/connections/sis", json=settings, headers={"If-Match": opened.headers["ETag"]}
    )
    assert same.status_code == 200, same.text
    assert same.headers["ETag"] == opened.headers["ETag"]
    after = _stored(api)
    assert (after.name, after.kind, after.config) == (before.name, before.kind, before.config)

    edited = {**settings, "profile": {**settings["profile"], "name_max_length": 50}}
    changed = admin.put(
        "/sis/connections/sis", json=edited, headers={"If-Match": same.headers["ETag"]}
    )
    assert changed.status_code == 200, changed.text
    assert _stored(api).config == {**before.config, "name_max_length": 50}


def test_the_openapi_names_the_real_profile_settings(api: ApiEnv) -> None:
    schemas = api.client.get("/openapi.json").json()["components"]["schemas"]
    said = schemas["ConnectionIn"]["properties"]["profile"]["description"]
    assert all(f"`{key}`" in said for key in sis.PROFILE_KEYS), said
    assert set(schemas["SisProfileIn"]["properties"]) == set(sis.PROFILE_KEYS)


def test_every_reader_refuses_a_version_that_is_none_by_one_check(
    api: ApiEnv, api_cli: CliRunner
) -> None:
    """The API, the command line and the console each checked the version a change is made
    from with their own copy, in three phrasings (`If-Match: "x" holds no version`, `'x' is no
    settings version`, `None was sent, and that is ...`). One check refuses it for all three,
    in one phrasing, each with where its reader has a version; nothing changes."""
    admin = Caller(api.client, api.district_sis())
    before = _stored(api)
    r = admin.put("/sis/connections/sis", json={"name": "X"}, headers={"If-Match": '"bogus"'})
    [over_api] = r.json()["detail"]
    assert (over_api["field"], over_api["rule"], over_api["loc"]) == (
        "If-Match", "etag", ["header", "If-Match"],
    )  # fmt: skip
    add = ["sis", "add", "sis", "-t", "t1", "--no-check", "--name", "X", "--expect-version"]
    cli = api_cli.invoke(app, [*add, "bogus", "--json"])
    [at_cli] = json.loads(cli.stdout)["error"]["problems"]
    assert (at_cli["field"], at_cli["rule"]) == ("--expect-version", "etag")
    api.console_admin("t1")
    opened = form_fields(api.client.get("/console/sis/sis/edit").text)
    said: dict[str, str] = {}
    for typed in ("bogus", ""):
        page = api.client.post("/console/sis/sis/edit", data={**opened, "version": typed})
        assert page.status_code == 422
        said[typed] = " ".join(unescape(page.text).split())
    assert over_api["msg"] == (
        "'bogus' is no settings version: give the ETag a GET answered (64 lowercase "
        'hexadecimal characters, in double quotes), or "*".'
    )
    assert at_cli["message"] == (
        "'bogus' is no settings version: give the 64 hexadecimal characters `sis show` "
        'printed, or the ETag the API answered (the same in double quotes, "..."); a weak tag '
        '(W/"...") never matches.'
    )
    console_way = (
        "no settings version: the form holds the 64 lowercase hexadecimal characters of the "
        "settings it was opened with. Open the settings again."
    )
    assert f"Settings version: 'bogus' is {console_way}" in said["bogus"], said["bogus"]
    assert f"Settings version: None was given, and that is {console_way}" in said[""]
    assert _stored(api) == before
