from pathlib import Path

import pytest

from etl_core import ConfigError
from etl_core._yaml import MAX_BYTES
from etl_core.config import interpolate, load_config

MINIMAL = """
pipeline: demo
source:
  type: csv
  path: in.csv
sink:
  type: jsonl
  path: out.jsonl
"""


def test_minimal_config_gets_defaults(write_config, registry):
    config = load_config(str(write_config(MINIMAL)), registry)
    assert config.model.pipeline == "demo"
    assert config.model.run.workers == "auto" and config.model.run.max_workers == 256
    assert config.sink[0].name == "jsonl"
    assert config.sink[1].path == "out.jsonl"


def test_unknown_core_key_names_path_and_line(write_config, registry):
    path = write_config(MINIMAL + "run:\n  workerz: 3\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(path), registry)
    err = info.value
    assert err.path == "run.workerz"
    assert err.line == 9
    assert "unknown key" in str(err)
    assert str(err).startswith(f"{path}:9: run.workerz:")


def test_unknown_plugin_option_names_path_and_line(write_config, registry):
    path = write_config(MINIMAL.replace("  path: out.jsonl", "  path: out.jsonl\n  colour: red"))
    with pytest.raises(ConfigError) as info:
        load_config(str(path), registry)
    assert info.value.path == "sink.colour"
    assert info.value.line == 8


def test_wrong_type(write_config, registry):
    path = write_config(MINIMAL + "run:\n  workers: many\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(path), registry)
    assert info.value.path == "run.workers"
    assert info.value.line == 9
    assert "integer" in info.value.message


def test_missing_required_key_points_at_its_section(write_config, registry):
    path = write_config("pipeline: demo\nsource:\n  type: csv\nsink:\n  type: jsonl\n  path: x\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(path), registry)
    assert info.value.path == "source.path"
    assert info.value.line == 2
    assert "required key is missing" in info.value.message


def test_unknown_plugin_lists_installed(write_config, registry):
    path = write_config(MINIMAL.replace("type: jsonl", "type: kafka"))
    with pytest.raises(ConfigError) as info:
        load_config(str(path), registry)
    assert info.value.path == "sink.type"
    assert info.value.line == 6
    assert "unknown sink type 'kafka'" in str(info.value)
    assert "jsonl" in str(info.value) and "discard" in str(info.value)


def test_not_a_mapping(write_config, registry):
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(str(write_config("- a\n- b\n")), registry)


def test_a_config_file_over_the_size_limit_is_refused_unread(tmp_path, registry):
    path = tmp_path / "huge.yaml"
    with path.open("wb") as file:
        file.write(MINIMAL.encode())
        file.write(b"# padding\n" * (MAX_BYTES // 10))
    with pytest.raises(ConfigError) as info:
        load_config(str(path), registry)
    assert str(info.value) == f"{path}: config file is larger than 1 MiB (a config is a few kilobytes); refusing to load it"


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="needs /dev/zero")
def test_an_endless_config_file_is_refused_unread(registry):
    with pytest.raises(ConfigError) as info:
        load_config("/dev/zero", registry)
    assert str(info.value) == "/dev/zero: cannot read config file: it is a character device, not a regular file"


def test_a_directory_as_the_config_file_says_what_it_is(tmp_path, registry):
    with pytest.raises(ConfigError) as info:
        load_config(str(tmp_path), registry)
    assert str(info.value) == f"{tmp_path}: cannot read config file: it is a directory, not a regular file"


def test_a_tagged_value_that_cannot_be_read_names_file_and_line(write_config, registry):
    path = write_config(MINIMAL + "run:\n  workers: !!int ${TOKEN}\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(path), registry, env={"TOKEN": "s3cr3t"})
    assert str(info.value) == f"{path}:9: invalid YAML: not a valid !!int value"


def test_missing_file(tmp_path, registry):
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(str(tmp_path / "nope.yaml"), registry)


def test_env_interpolation_and_default(write_config, registry):
    path = write_config(MINIMAL.replace("out.jsonl", "${OUT_DIR:-/tmp}/${OUT_NAME}.jsonl"))
    config = load_config(str(path), registry, env={"OUT_NAME": "x"})
    assert config.sink[1].path == "/tmp/x.jsonl"


def test_unset_env_var_is_named_without_value(write_config, registry):
    path = write_config(MINIMAL.replace("out.jsonl", "${SECRET_PATH}"))
    with pytest.raises(ConfigError) as info:
        load_config(str(path), registry, env={})
    assert "SECRET_PATH is not set" in str(info.value)
    assert info.value.path == "sink.path"
    assert info.value.line == 7


def test_interpolation_escape_and_non_strings():
    assert interpolate({"a": "$${X}", "b": [1, "${Y:-}"], "c": True}, {}, {}) == {"a": "${X}", "b": [1, ""], "c": True}


def test_secret_values_never_echoed(write_config, registry, monkeypatch):
    # A wrong type for a field fed from a secret: the message must not contain the value.
    path = write_config(MINIMAL + "run:\n  workers: ${TOKEN}\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(path), registry, env={"TOKEN": "s3cr3t-value-123"})
    assert "s3cr3t-value-123" not in str(info.value)


def test_masked_config_round_trips(write_config, registry):
    config = load_config(str(write_config(MINIMAL)), registry)
    masked = config.masked()
    assert masked["sink"] == {"type": "jsonl", "path": "out.jsonl", "line_field": ""}
    assert masked["run"]["workers"] == "auto"


def test_transform_index_in_path(write_config, registry):
    path = write_config(MINIMAL + "transforms:\n  - type: nope\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(path), registry)
    assert info.value.path == "transforms[0].type"
    assert info.value.line == 9


def test_shipped_configs_validate(registry, monkeypatch):
    monkeypatch.setenv("CXONE_CLIENT_ID", "id")
    monkeypatch.setenv("CXONE_CLIENT_SECRET", "secret")
    monkeypatch.setenv("CXONE_BASE_URL", "https://api-na1.niceincontact.com")
    monkeypatch.setenv("CXONE_TOKEN_URL", "https://cxone.niceincontact.com/auth/token")
    monkeypatch.setenv("CXONE_ACCESS_KEY_ID", "key-id")
    monkeypatch.setenv("CXONE_ACCESS_KEY_SECRET", "key-secret")
    monkeypatch.setenv("CXONE_ADDRESS_BOOK_ID", "12")
    monkeypatch.setenv("CXONE_DNC_GROUP_ID", "34")
    configs = sorted((Path(__file__).parents[2] / "configs").glob("*.yaml"))
    assert configs, "no shipped configs"
    for path in configs:
        load_config(str(path), registry)


def test_a_misspelt_key_in_a_map_field_names_the_key_as_written_and_the_one_meant(write_config, registry):
    path = write_config(MINIMAL + "transforms:\n  - type: map\n    fields:\n      id: {from: id, normalise: [strip]}\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(path), registry)
    assert info.value.path == "transforms[0].fields.id.normalise" and info.value.line == 11
    assert "did you mean 'normalize'?" in info.value.message


def test_a_misspelt_core_key_gets_a_suggestion_and_a_made_up_one_does_not(write_config, registry):
    for key, hint in (("max_worker", "did you mean 'max_workers'?"), ("colour", "check the spelling")):
        with pytest.raises(ConfigError) as info:
            load_config(str(write_config(MINIMAL + f"run:\n  {key}: 3\n")), registry)
        assert hint in info.value.message


def test_a_pipeline_name_with_a_space_says_what_is_allowed(write_config, registry):
    with pytest.raises(ConfigError) as info:
        load_config(str(write_config(MINIMAL.replace("pipeline: demo", "pipeline: my demo"))), registry)
    assert info.value.path == "pipeline"
    assert info.value.message.startswith("use only letters, digits, '_', '.' and '-' (no spaces)")
    assert "^[" not in info.value.message


def test_a_state_url_s_password_is_a_secret_and_masked(write_config, registry):
    path = write_config(MINIMAL + "state:\n  url: postgresql://etl:${PGPASSWORD}@db.example.com/etl?sslmode=require\n")
    config = load_config(str(path), registry, env={"PGPASSWORD": "p@ss/word-123"})
    url = "postgresql://etl:p@ss/word-123@db.example.com/etl?sslmode=require"
    assert config.model.state.url is not None and config.model.state.url.get_secret_value() == url
    assert config.masked()["state"]["url"] == "**********"
    assert set(config.secrets()) >= {url, "p@ss/word-123"}


def test_a_state_url_that_is_not_postgresql_is_refused(write_config, registry):
    with pytest.raises(ConfigError, match="must be a PostgreSQL URL: postgresql://USER:PASSWORD@HOST/DATABASE") as info:
        load_config(str(write_config(MINIMAL + "state:\n  url: mysql://etl:pw@db/etl\n")), registry)
    assert info.value.path == "state.url"
