"""The config etl guess writes: it loads through the real loader and reads the file as sniffed."""

from __future__ import annotations

import csv
import io

import pytest
import yaml

from etl_core import ConfigError
from etl_core._guess import sniff
from etl_core._guess_command import _rule_check
from etl_core._guess_config import Target, pipeline_name, render_config
from etl_core._guess_fields import plan_fields
from etl_core._yaml import load_yaml
from etl_core.config import parse_config
from etl_cxone import CxoneSink
from etl_cxone.sandbox import contact_id

CXONE_ENV = {
    "CXONE_BASE_URL": "https://api.example.com",
    "CXONE_TOKEN_URL": "https://auth.example.com/token",
    "CXONE_CLIENT_ID": "client",
    "CXONE_CLIENT_SECRET": "secret",
}
CXONE_ENV_KEYS = ("base_url", "token_url", "client_id", "client_secret")


def guessed(
    registry, rows: list[list[str]], *, sink: str = "cxone", delimiter: str = ",", path: str = "in.csv", config: str = "guessed.yaml"
) -> str:
    buffer = io.StringIO(newline="")
    csv.writer(buffer, delimiter=delimiter).writerows(rows)
    sniffed = sniff(buffer.getvalue().encode())
    sink_class = registry.get("sink", sink)
    plan = plan_fields(sniffed, sink_class.guess_fields(), _rule_check(registry), sink=sink)
    target = Target(sink, sink_class.Options, sink_class is CxoneSink)
    return render_config(path=path, sniffed=sniffed, plan=plan, target=target, config=config)


def load(registry, text: str, env: dict[str, str]):
    data, lines = load_yaml(text, source="guessed.yaml")
    return parse_config(data, lines, registry, env=env, source="guessed.yaml")


def seed_rows(count: int = 4) -> list[list[str]]:
    return [["contactId", "firstName", "lastName", "email"]] + [
        [contact_id(i), f"Zoë {i}", "Müller", f"zoe{i}@example.com"] for i in range(count)
    ]


def test_a_config_for_the_cxone_sink_loads_and_keeps_credentials_in_variables(registry):
    text = guessed(registry, seed_rows())
    config = load(registry, text, CXONE_ENV)
    model = config.model
    assert (model.pipeline, model.key, model.output.dir) == ("in", "contactId", "out/in")
    assert [t.type for t in model.transforms] == ["map", "validate"]
    source_options = config.source[1].model_dump()
    assert {k: source_options[k] for k in ("path", "encoding", "delimiter", "header", "columns")} == {
        "path": "in.csv", "encoding": "utf-8", "delimiter": ",", "header": True, "columns": None,
    }
    map_options = config.transforms[0][1].model_dump(by_alias=True)
    assert {field: spec["from"] for field, spec in map_options["fields"].items()} == {
        "contactId": "contactId", "firstName": "firstName", "lastName": "lastName", "email": "email",
    }
    assert map_options["fields"]["email"]["normalize"] == ["strip", "lower"]
    validate_fields = yaml.safe_load(text)["transforms"][1]["fields"]
    assert validate_fields == {"contactId": ["required", "uuid"], "email": ["email"]}
    sink = yaml.safe_load(text)["sink"]
    assert {key: sink[key] for key in CXONE_ENV_KEYS} == {key: f"${{CXONE_{key.upper()}}}" for key in CXONE_ENV_KEYS}
    assert "etl run guessed.yaml --sandbox" in text


def test_an_unset_credential_is_the_loader_s_usual_error(registry):
    with pytest.raises(ConfigError, match="CXONE_BASE_URL is not set"):
        load(registry, guessed(registry, seed_rows()), {})


@pytest.mark.parametrize(
    "column",
    ["${HOME}", 'say "hi"', "a: b # c", "yes", "line\nbreak", " Email ", "ünïcode\u2028sep", "[x]", "-", "010"],
)
def test_any_column_name_reaches_the_map_transform_as_written(registry, column):
    rows = [["id", column]] + [[f"{i}", f"v{i}"] for i in range(4)]
    text = guessed(registry, rows, sink="jsonl")
    config = load(registry, text, {"JSONL_PATH": "out.jsonl"})
    fields = config.transforms[0][1].model_dump(by_alias=True)["fields"]
    assert fields[column]["from"] == column
    assert config.model.key == "id"


def test_unmapped_columns_and_missing_fields_are_listed_in_comments(registry):
    rows = [["Contact ID", "EMAIL", " Email ", "Notes"]] + [
        [contact_id(i), f"u{i}@example.com", "", "n"] for i in range(4)
    ]
    text = guessed(registry, rows, delimiter=";")
    assert '    #   " Email ": also named like email, which "EMAIL" feeds: fewer of its values pass email\n' in text
    assert '    #   "Notes": the cxone sink takes no field of this name\n' in text
    assert "# Fields of the cxone sink no column feeds: firstName, lastName, phone, city, country, externalId" in text
    config = load(registry, text, CXONE_ENV)
    assert config.source[1].model_dump()["delimiter"] == ";"


def test_a_headerless_file_names_its_columns(registry):
    text = guessed(registry, seed_rows()[1:])
    config = load(registry, text, CXONE_ENV)
    source = config.source[1].model_dump()
    assert source["header"] is False
    assert source["columns"] == ["column_1", "column_2", "column_3", "column_4"]
    assert config.model.key == "contactId"


def test_a_file_sink_gets_a_variable_for_its_path_and_no_sandbox_line(registry):
    text = guessed(registry, seed_rows(), sink="jsonl")
    assert "  path: ${JSONL_PATH}\n" in text
    assert "  # line_field: ''\n" in text
    assert "--sandbox" not in text
    assert load(registry, text, {"JSONL_PATH": "out.jsonl"}).model.key == "contactId"


@pytest.mark.parametrize(
    ("path", "name"),
    [("data/contacts.csv", "contacts"), ("Export 2024 (final).CSV", "Export-2024-final"), ("/tmp/$$$.csv", "guessed")],
)
def test_the_pipeline_is_named_after_the_file(path, name):
    assert pipeline_name(path) == name


def test_file_names_that_could_break_a_comment_are_quoted(registry):
    text = guessed(registry, seed_rows(), path="in\n#.csv", config="out\nput: x.yaml")
    assert '#   etl validate "out\\nput: x.yaml"\n' in text
    config = load(registry, text, CXONE_ENV)
    assert config.source[1].model_dump()["path"] == "in\n#.csv"
    assert config.model.pipeline == "in"
