"""The sandbox's address-book and do-not-call endpoints, over real HTTP."""

from __future__ import annotations

import pytest

from tests.plugins.sandbox.conftest import authed

ADMIN = "/inContactAPI/services/v34.0"
DYNAMIC = f"{ADMIN}/address-books/12/dynamic-entries"


async def test_dynamic_upsert_answers_one_result_per_entry_in_order(client, sandbox):
    await authed(client)
    entries = [
        {"externalId": "A1", "firstName": "Ada", "email": "ada@example.com"},
        {"externalId": "B2", "email": "not-an-email"},
        {"firstName": "No key"},
        {"externalId": "C3", "nickname": "Cy"},
    ]
    r = await client.put(DYNAMIC, params={"fullLoad": "false"}, json={"addressBookEntries": entries})
    assert r.status_code == 202, r.text
    results = r.json()["entryResults"]
    assert [(res["success"], res["externalId"], res["error"]) for res in results] == [
        (True, "A1", None),
        (False, "B2", "invalid email address"),
        (False, None, "externalId is required"),
        (False, "C3", "unknown field nickname"),
    ]
    assert results[0]["created"] is True
    entry_id = results[0]["addressBookEntryId"]
    assert sandbox.directory_entries("dynamic", 12) == {
        "A1": {"externalId": "A1", "firstName": "Ada", "email": "ada@example.com", "addressBookEntryId": entry_id}
    }
    # The same externalId again updates the same entry.
    r = await client.put(DYNAMIC, json={"addressBookEntries": [{"externalId": "A1", "lastName": "Lovelace"}]})
    again = r.json()["entryResults"][0]
    assert (again["success"], again["created"], again["addressBookEntryId"]) == (True, False, entry_id)
    assert sandbox.directory_entries("dynamic", 12)["A1"]["lastName"] == "Lovelace"
    assert sandbox.directory_writes() == {("dynamic", "12", "A1"): 2}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"addressBookEntries": [{"externalId": "A1"}, "B2"]}, "addressBookEntries[1] is not a JSON object"),
        ({"addressBookEntries": [{"externalId": "A1"}, {"externalId": 7}]}, "addressBookEntries[1].externalId must be a string"),
        ({"addressBookEntries": [{"externalId": "A1", "phone": ["+1"]}]}, "addressBookEntries[0].phone must be a string"),
        ({"addressBookEntries": [{"externalId": "A1"}, {"externalId": "B2", "mobile": "call me"}]}, "addressBookEntries[1].mobile is not a phone number"),
        ({"entries": []}, "the body must be a JSON object with a addressBookEntries list"),
        ([{"externalId": "A1"}], "the body must be a JSON object with a addressBookEntries list"),
    ],
)
async def test_a_malformed_entry_refuses_the_whole_request(client, sandbox, body, message):
    await authed(client)
    r = await client.put(DYNAMIC, json=body)
    assert r.status_code == 400
    assert r.json() == {"error": "invalid_request", "message": message}
    assert sandbox.directory_entries("dynamic", 12) == {}


async def test_too_many_entries_is_413_and_nothing_applied(client, sandbox):
    sandbox.settings.max_bulk_entries = 2
    await authed(client)
    entries = [{"externalId": f"E{i}"} for i in range(3)]
    r = await client.put(DYNAMIC, json={"addressBookEntries": entries})
    assert r.status_code == 413
    assert sandbox.directory_entries("dynamic", 12) == {}


async def test_full_load_drops_entries_the_request_does_not_name(client, sandbox):
    await authed(client)
    await client.put(DYNAMIC, json={"addressBookEntries": [{"externalId": "A"}, {"externalId": "B"}]})
    await client.put(DYNAMIC, params={"fullLoad": "true"}, json={"addressBookEntries": [{"externalId": "B"}]})
    assert list(sandbox.directory_entries("dynamic", 12)) == ["B"]


async def test_standard_entries_are_created_then_updated_by_id(client, sandbox):
    await authed(client)
    r = await client.post(f"{ADMIN}/address-books/3/entries", json={"addressBookEntries": [{"firstName": "Ada"}]})
    assert r.status_code == 200
    created = r.json()["entryResults"][0]
    assert (created["success"], created["created"]) == (True, True)
    entry_id = created["addressBookEntryId"]
    r = await client.put(
        f"{ADMIN}/address-books/3/entries",
        json={"addressBookEntries": [{"addressBookEntryId": entry_id, "lastName": "L"}, {"addressBookEntryId": "999"}]},
    )
    assert [(res["success"], res["error"]) for res in r.json()["entryResults"]] == [
        (True, None),
        (False, "entry 999 not found"),
    ]
    assert sandbox.directory_entries("standard", 3) == {
        entry_id: {"firstName": "Ada", "lastName": "L", "addressBookEntryId": entry_id}
    }


async def test_dnc_records_have_per_record_results(client, sandbox):
    await authed(client)
    records = [
        {"phoneNumber": "+14155550100", "expirationDate": "2030-01-31"},
        {"phoneNumber": "call me"},
        {"phoneNumber": "4155550101", "expirationDate": "tomorrow"},
    ]
    r = await client.post(f"{ADMIN}/dnc-groups/5/records", json={"dncGroupRecords": records})
    assert r.status_code == 200
    assert r.json()["recordResults"] == [
        {"success": True, "phoneNumber": "+14155550100", "error": None},
        {"success": False, "phoneNumber": "call me", "error": "invalid phone number"},
        {"success": False, "phoneNumber": "4155550101", "error": "invalid expirationDate (YYYY-MM-DD expected)"},
    ]
    assert list(sandbox.directory_entries("dnc", 5)) == ["+14155550100"]


async def test_admin_requests_need_a_token_and_count_against_the_quota(client, sandbox):
    r = await client.put(DYNAMIC, json={"addressBookEntries": []})
    assert r.status_code == 401
    sandbox.settings.rate_limit = 1
    sandbox.settings.burst = 1
    await authed(client)
    statuses = [(await client.put(DYNAMIC, json={"addressBookEntries": []})).status_code for _ in range(3)]
    assert statuses[0] == 202
    assert 429 in statuses[1:]
    assert sandbox.stats()["rate_limited"] >= 1


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/address-books/12/dynamic-entries", 405),
        ("DELETE", "/dnc-groups/5/records", 405),
        ("PUT", "/address-books/abc/dynamic-entries", 404),
        ("PUT", "/address-books/12/other", 404),
    ],
)
async def test_unknown_routes_and_methods(client, method, path, status):
    await authed(client)
    r = await client.request(method, ADMIN + path, json={"addressBookEntries": []})
    assert r.status_code == status
