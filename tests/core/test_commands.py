"""Plugins add commands and options to `etl` (register_commands) and read them (command_started)."""

from __future__ import annotations

import argparse

import pytest

from etl_core import CommandLine, ConfigError, hookimpl
from etl_core.cli import main


class Greeter:
    """A plugin adding `etl greet`, `etl sandbox echo` and `etl plugins --loud`."""

    def __init__(self) -> None:
        self.started: list[tuple[str, argparse.Namespace]] = []

    @hookimpl
    def register_commands(self, cli: CommandLine) -> None:
        greet = cli.add_command("greet", help="greet someone", description="Greet someone by name.")
        greet.add_argument("name")
        greet.add_argument("--exit-code", type=int, default=0)
        greet.set_defaults(handler=self.greet)
        echo = cli.add_sandbox("echo", help="a local echo service")
        echo.add_argument("--port", type=int, default=7)
        echo.set_defaults(handler=lambda args: 0)
        cli.command("plugins").add_argument("--loud", action="store_true")

    @hookimpl
    def command_started(self, command: str, options: argparse.Namespace) -> None:
        self.started.append((command, options))

    def greet(self, args: argparse.Namespace) -> int:
        if args.name == "nobody":
            raise ConfigError("nobody to greet", path="name")
        print(f"hello {args.name}")
        return args.exit_code


def test_a_plugin_command_runs_and_its_exit_code_is_the_command_s(capsys):
    greeter = Greeter()
    assert main(["greet", "Ada", "--exit-code", "3"], extra_plugins=(greeter,)) == 3
    assert capsys.readouterr().out == "hello Ada\n"
    ((command, options),) = greeter.started
    assert command == "greet" and options.name == "Ada"


def test_command_started_sees_options_plugins_added_to_core_commands(capsys):
    greeter = Greeter()
    assert main(["plugins", "--loud"], extra_plugins=(greeter,)) == 0
    ((command, options),) = greeter.started
    assert command == "plugins" and options.loud is True and options.json is False
    assert "csv" in capsys.readouterr().out  # the core's command ran as usual


def test_a_config_error_from_a_handler_is_a_usage_error(capsys):
    assert main(["greet", "nobody"], extra_plugins=(Greeter(),)) == 2
    assert capsys.readouterr().err == "etl: error: name: nobody to greet\n"


def test_help_lists_plugin_commands_and_sandboxes(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--help"], extra_plugins=(Greeter(),))
    assert exit_.value.code == 0
    assert "greet someone" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["sandbox", "--help"], extra_plugins=(Greeter(),))
    listed = capsys.readouterr().out
    assert "installed sandboxes" in listed and "a local echo service" in listed and "cxone" in listed


def test_a_command_group_without_a_subcommand_prints_its_usage(capsys):
    assert main(["sandbox"], extra_plugins=(Greeter(),)) == 2
    assert "echo" in capsys.readouterr().err
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().err


class TakesRun:
    @hookimpl
    def register_commands(self, cli):
        cli.add_command("run", help="a second run")


class TakesCxone:
    @hookimpl
    def register_commands(self, cli):
        cli.add_sandbox("cxone", help="another CXone")


class ExtendsNothing:
    @hookimpl
    def register_commands(self, cli):
        cli.command("deploy").add_argument("--fast")


class Forgetful:
    @hookimpl
    def register_commands(self, cli):
        cli.add_command("idle", help="a command without a handler")


def test_a_command_without_a_handler_is_a_plugin_error(capsys):
    assert main(["idle"], extra_plugins=(Forgetful(),)) == 2
    assert capsys.readouterr().err == "etl: error: the command 'idle' has no handler: its plugin must set_defaults(handler=...)\n"


class Broken:
    @hookimpl
    def register_commands(self):
        raise RuntimeError("no parser for you")


@pytest.mark.parametrize(
    ("plugin", "message"),
    [
        (TakesRun(), "register_commands() raised PluginError: there is already a command named 'run'"),
        (TakesCxone(), "register_commands() raised PluginError: there is already a sandbox named 'cxone'"),
        (ExtendsNothing(), "register_commands() raised PluginError: etl has no command 'deploy'"),
        (Broken(), "register_commands() raised RuntimeError: no parser for you"),
    ],
    ids=["command-name-taken", "sandbox-name-taken", "unknown-command", "hook-fails"],
)
def test_a_bad_register_commands_stops_etl_naming_the_plugin(capsys, plugin, message):
    assert main(["plugins"], extra_plugins=(plugin,)) == 2
    err = capsys.readouterr().err
    assert err.startswith("etl: error: plugin '") and message in err and "Traceback" not in err
