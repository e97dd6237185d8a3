"""The shipped address-book and DNC configs, run by the real `etl` command against the sandbox.

The address-book run sends batches of 500 entries with a few bad rows scattered among
them: a bad email address is refused entry by entry, a bad phone number refuses its whole
request, which the runner splits down to the bad row. Every good row must be upserted
exactly once, every bad row must be rejected with its own error, and the same file
through the tutorial's PATCH config must accept and reject the same rows.
"""

from __future__ import annotations

from pathlib import Path

from etl_cxone.sample_data import BAD_EMAIL, BAD_PHONE, bulk_rows
from tests.conftest import run_etl
from tests.e2e.conftest import (
    PROJECT_ROOT,
    SHIPPED_CONFIG,
    SHIPPED_OUT,
    json_logs,
    read_csv,
    read_report,
    sandbox_env,
    write_rows,
)

ADDRESS_BOOK_CONFIG = PROJECT_ROOT / "configs" / "cxone-address-book.yaml"
ADDRESS_BOOK_OUT = Path("out") / "cxone-address-book"
DNC_CONFIG = PROJECT_ROOT / "configs" / "cxone-dnc.yaml"
BOOK_ID = "42"
ROWS = 1_000


def access_key_env(sandbox, csv_path: Path, **more: str) -> dict[str, str]:
    """What the access-key configs read, pointing at ``sandbox`` (found by discovery)."""
    settings = sandbox.settings
    return {
        "CXONE_ISSUER": sandbox.url,
        "CXONE_CLIENT_ID": settings.client_id,
        "CXONE_CLIENT_SECRET": settings.client_secret,
        "CXONE_ACCESS_KEY_ID": settings.access_key_id,
        "CXONE_ACCESS_KEY_SECRET": settings.access_key_secret,
        "CONTACTS_CSV": str(csv_path),
        **more,
    }


def outcomes(out: Path) -> tuple[set[int], dict[int, str]]:
    """The report's count of ok rows checked, and the rejects file: ``{line: reason}``."""
    rejects = {int(row["_line"]): row["_reason"] for row in read_csv(out / "rejects.csv")}
    return set(rejects), rejects


def test_address_book_batches_split_only_around_bad_rows_and_match_the_patch_run(tmp_path, start_sandbox):
    rows = bulk_rows(ROWS)
    csv_path = write_rows(tmp_path / "people.csv", rows)
    bad_email = {i + 2 for i, row in enumerate(rows) if row["email"] == BAD_EMAIL}
    bad_phone = {i + 2 for i, row in enumerate(rows) if row["phone"] == BAD_PHONE}
    assert len(bad_email) == len(bad_phone) == ROWS // 100
    sandbox = start_sandbox(seed_count=ROWS)

    result = run_etl(
        "run", str(ADDRESS_BOOK_CONFIG), "--log-format", "json", cwd=tmp_path,
        env=access_key_env(sandbox, csv_path, CXONE_ADDRESS_BOOK_ID=BOOK_ID), timeout=300,
    )
    assert result.returncode == 1, result.stderr  # 1: some rows failed
    [discovered] = [e for e in json_logs(result.stdout) if e["event"] == "api_endpoint_discovered"]
    assert discovered["api_endpoint"] == sandbox.url

    # Every good row upserted exactly once, with its fields.
    good = [row for i, row in enumerate(rows) if i + 2 not in bad_email | bad_phone]
    entries = sandbox.directory_entries("dynamic", BOOK_ID)
    assert sorted(entries) == sorted(row["contact_id"] for row in good)
    writes = sandbox.directory_writes()
    assert set(writes.values()) == {1} and len(writes) == len(good)
    sample = good[len(good) // 2]
    assert entries[sample["contact_id"]] | {"addressBookEntryId": ""} == {
        "externalId": sample["contact_id"],
        "firstName": sample["first_name"],
        "lastName": sample["last_name"],
        "email": sample["email"],
        "phone": sample["phone"],
        "addressBookEntryId": "",
    }

    # Every bad row rejected with its own error; no good row failed with a bad neighbour.
    out = tmp_path / ADDRESS_BOOK_OUT
    rejected, reasons = outcomes(out)
    assert rejected == bad_email | bad_phone
    assert {reasons[line] for line in bad_email} == {"HTTP 202: invalid email address"}
    assert {reasons[line] for line in bad_phone} == {"HTTP 400: addressBookEntries[0].phone is not a phone number"}

    report = read_report(out)
    assert report["records"]["ok"] == len(good)
    assert report["records"]["failed"] + report["records"]["rejected"] == len(rejected)
    requests = report["requests"]
    assert requests["batch_splits"] > 0, requests
    # At least one request per batch of 500, and far fewer than one per row.
    assert ROWS // 500 <= requests["attempts"] < ROWS // 4

    # The same file through the tutorial's PATCH config: the same rows accepted and rejected.
    patch = run_etl(
        "run", str(SHIPPED_CONFIG), "--log-format", "json", cwd=tmp_path, env=sandbox_env(sandbox, csv_path), timeout=300,
    )
    assert patch.returncode == 1, patch.stderr
    patch_rejected, _ = outcomes(tmp_path / SHIPPED_OUT)
    assert patch_rejected == rejected
    patched = {cid for cid, count in sandbox.stats()["updates"].items() if count == 1}
    assert patched == set(entries)


def test_dnc_config_adds_each_phone_number_once(tmp_path, start_sandbox):
    rows = bulk_rows(300)
    csv_path = write_rows(tmp_path / "people.csv", rows)
    sandbox = start_sandbox(seed_count=10)
    env = access_key_env(sandbox, csv_path, CXONE_DNC_GROUP_ID="7")
    env["DNC_CSV"] = env.pop("CONTACTS_CSV")
    result = run_etl("run", str(DNC_CONFIG), "--log-format", "json", cwd=tmp_path, env=env, timeout=120)
    assert result.returncode == 1, result.stderr  # the bad phone numbers
    good = {row["phone"] for row in rows if row["phone"] != BAD_PHONE}
    assert set(sandbox.directory_entries("dnc", 7)) == good
    assert set(sandbox.directory_writes().values()) == {1}
    _, reasons = outcomes(tmp_path / "out" / "cxone-dnc")
    assert sorted(reasons.values()) == ["phoneNumber: not an E.164 phone number (rule: e164)"] * (300 - len(good))


def test_shipped_bulk_configs_validate_and_run_against_the_bundled_sandbox(project_copy):
    ids = {"CXONE_ADDRESS_BOOK_ID": "1", "CXONE_DNC_GROUP_ID": "2"}
    credentials = {name: "x" for name in ("CXONE_CLIENT_ID", "CXONE_CLIENT_SECRET", "CXONE_ACCESS_KEY_ID", "CXONE_ACCESS_KEY_SECRET")}
    for config, out in (("cxone-address-book", "cxone-address-book"), ("cxone-dnc", "cxone-dnc")):
        validated = run_etl("validate", f"configs/{config}.yaml", cwd=project_copy, env={**ids, **credentials})
        assert validated.returncode == 0, validated.stderr
        # --sandbox brings its own credentials: only the ids are needed.
        result = run_etl("run", f"configs/{config}.yaml", "--sandbox", "--log-format", "json", cwd=project_copy, env=ids)
        assert result.returncode == 1, result.stderr  # the sample holds bad rows on purpose
        report = read_report(project_copy / "out" / out / "sandbox")
        assert report["records"]["ok"] > 250
        assert report["records"]["ok"] + report["records"]["rejected"] + report["records"]["failed"] == report["records"]["read"]
        events = {event["event"] for event in json_logs(result.stdout)}
        assert "api_endpoint_discovered" in events
