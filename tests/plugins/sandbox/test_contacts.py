"""The seeded contacts, and the sample CSV that matches them."""

from __future__ import annotations

import csv
import re
import subprocess
import sys
import uuid
from pathlib import Path

from etl_cxone import sample_data
from etl_cxone.sandbox import EMAIL_RE, NAMESPACE, Sandbox, SandboxSettings, contact_id
from tests.plugins.sandbox.conftest import settings

#: The sample file shipped at the project root and used by configs/cxone-contacts.yaml.
BUNDLED_CSV = Path(__file__).parents[3] / "data" / "contacts.csv"


def test_contact_id_is_uuid5_in_the_namespace():
    assert contact_id(0) == str(uuid.uuid5(NAMESPACE, "contact-0"))
    assert contact_id(42) != contact_id(43)
    sb = Sandbox(settings(seed_count=50, extra_ids=("extra-1",)))
    assert sb.contact(contact_id(49)) == {"contactId": contact_id(49)}
    assert sb.contact(contact_id(50)) is None
    assert sb.contact("extra-1") == {"contactId": "extra-1"}



def test_sample_csv_is_deterministic_and_matches_the_bundled_file(tmp_path):
    a = sample_data.write_sample_csv(tmp_path / "a.csv")
    b = sample_data.write_sample_csv(tmp_path / "b.csv", rows=300)
    assert a.read_bytes() == b.read_bytes()
    bundled = BUNDLED_CSV
    assert bundled.read_bytes() == a.read_bytes()
    other = sample_data.write_sample_csv(tmp_path / "c.csv", seed=1)
    assert other.read_bytes() != a.read_bytes()


def test_sample_csv_content():
    bundled = BUNDLED_CSV
    with bundled.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        assert tuple(reader.fieldnames) == sample_data.HEADER
        rows = list(reader)
    assert len(rows) == 300
    assert b'"Washington, D.C."' in bundled.read_bytes()
    sb = Sandbox(SandboxSettings())  # default seeding, not listening
    uuid_re = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
    seeded = [r for r in rows if sb.contact(r["contact_id"]) is not None]
    unknown = [
        r for r in rows if uuid_re.match(r["contact_id"]) and sb.contact(r["contact_id"]) is None
    ]
    malformed = [r["contact_id"] for r in rows if not uuid_re.match(r["contact_id"])]
    bad_email = [r for r in rows if not EMAIL_RE.fullmatch(r["email"])]
    assert len(seeded) == 300 - 6 - 2
    assert {r["contact_id"] for r in unknown} == {sample_data.unknown_id(i) for i in range(6)}
    assert sorted(malformed) == ["../admin", "not-a-uuid"]
    assert len(bad_email) == 8
    assert all(sb.contact(r["contact_id"]) is not None for r in bad_email)
    assert len({r["contact_id"] for r in rows}) == 300
    assert any(r["phone"] == "" for r in rows) and any(r["city"] == "" for r in rows)
    phones = [r["phone"] for r in rows if r["phone"]]
    assert all(re.fullmatch(r"\+(1[2-9]\d{9}|447\d{9})", p) for p in phones)
    assert any(p.startswith("+1") for p in phones) and any(p.startswith("+44") for p in phones)


def test_sample_data_module_entry_point(tmp_path):
    out = tmp_path / "x.csv"
    subprocess.run(
        [sys.executable, "-m", "etl_cxone.sample_data", str(out), "--rows", "50"], check=True
    )
    assert len(out.read_text(encoding="utf-8").splitlines()) == 51
