"""An output directory with links planted where a run writes its files.

Whoever may write into ``output.dir`` (but not elsewhere) plants symbolic links named
like the files of the next run, pointing at files it wants overwritten. A run replaces
every link it writes, never writes through one, and refuses a linked state file.
"""

from __future__ import annotations

import json
from pathlib import Path

from .conftest import answer, run_measured, token_answer, write_pipeline

SECRET = "hostile-secret-5f1d2c"
MISSING = "0b6f1e0c-95d7-4c5c-9d5e-1f8b2a3c4d5e"
REFUSED = "1c7a2f1d-a6e8-4d6d-8e6f-2a9c3b4d5e6f"
DELIVERED = "2d8b3a2e-b7f9-4e7e-9f7a-3b0d4c5e6f7a"
PRECIOUS = "precious: must never be overwritten\n"


def plant(out: Path, names: list[str], victims: Path) -> dict[str, Path]:
    """Link each of ``names`` in ``out`` to its own victim file; return the victims by name."""
    out.mkdir(parents=True, exist_ok=True)
    victims.mkdir()
    planted = {}
    for name in names:
        victim = victims / name
        victim.write_text(PRECIOUS, encoding="utf-8")
        (out / name).symlink_to(victim)
        planted[name] = victim
    return planted


def test_links_planted_for_the_run_files_are_replaced_not_written_through(tmp_path, hostile_server):
    server = hostile_server(
        {
            "/oauth/token": token_answer(),
            f"/api/v2/contacts/{MISSING}": answer(404),
            f"/api/v2/contacts/{REFUSED}": answer(400),
            f"/api/v2/contacts/{DELIVERED}": answer(200),
        }
    )
    rows = [f"{key},user@example.com" for key in (MISSING, REFUSED, DELIVERED)]
    config = write_pipeline(
        tmp_path, base_url=server.url, token_url=server.url + "/oauth/token", rows=rows, output_extra="success: delivered.csv"
    )
    out = tmp_path / "out"
    names = ["missing-contacts.csv", "report.json.tmp", "report.json", "rejects.csv", "delivered.csv"]
    victims = plant(out, names, tmp_path / "victims")
    outcome = run_measured("run", str(config), cwd=tmp_path, env={"CXONE_CLIENT_SECRET": SECRET})
    assert outcome.returncode == 1, outcome.stderr
    for name, victim in victims.items():
        assert victim.read_text(encoding="utf-8") == PRECIOUS, name
    assert not (out / "report.json.tmp").exists()
    for name in ("missing-contacts.csv", "report.json", "rejects.csv", "delivered.csv"):
        assert not (out / name).is_symlink(), name
    assert (out / "missing-contacts.csv").read_text(encoding="utf-8").splitlines() == ["key,line", f"{MISSING},2"]
    assert (out / "delivered.csv").read_text(encoding="utf-8").splitlines()[1].startswith(f"{DELIVERED},4,200,")
    assert json.loads((out / "report.json").read_text(encoding="utf-8"))["records"]["failed"] == 2


def test_a_linked_state_file_is_refused_before_anything_is_sent(tmp_path, hostile_server):
    server = hostile_server({"/oauth/token": token_answer(), "/api/": answer(200)})
    config = write_pipeline(
        tmp_path, base_url=server.url, token_url=server.url + "/oauth/token", rows=[f"{DELIVERED},user@example.com"]
    )
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "empty-victim"
    victim.touch()  # SQLite would make a database of an empty file
    (out / "state.db").symlink_to(victim)
    outcome = run_measured("run", str(config), cwd=tmp_path, env={"CXONE_CLIENT_SECRET": SECRET})
    assert outcome.returncode == 2
    assert outcome.stderr == (
        f"etl: error: state.path: the state file {out / 'state.db'} is a symbolic link, which is never written "
        "through: name the file itself\n"
    )
    assert victim.stat().st_size == 0
    assert server.requests == []
