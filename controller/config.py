"""weftd's configuration file: TOML (stdlib tomllib), one key per command-line flag, flags override it.

A key is the flag's long name without its dashes (`of-listen = "192.0.2.10:6653"`,
`insecure-openflow = true`, `controller-target = ["ssl:A:6653", "ssl:B:6653"]`). The keys are
derived from weftd's own argument parser, so every flag has one and a new flag gets one without
anything to keep in step. Values are checked as the flag's would be (its type, its choices);
an unknown key, a value of the wrong kind or a bad value is refused with the key named. A flag
given on the command line overrides the file's key; for a repeatable flag (a list) the command
line's values replace the file's, they are not added to them.
"""
from __future__ import annotations

import argparse
import difflib
import tomllib

NOT_KEYS = {"help", "config", "check-config"}     # flags that make no sense in the file itself


class ConfigError(ValueError):
    """A configuration file that cannot be used; the message names the file and the key."""


def _keys(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """Configuration key -> the parser's action for it (only flags with a long name)."""
    keys = {}
    for action in parser._actions:              # argparse offers no public walk of its actions
        longs = [o for o in action.option_strings if o.startswith("--")]
        if longs and longs[0][2:] not in NOT_KEYS:
            keys[longs[0][2:]] = action
    return keys


def _kind(action: argparse.Action) -> str:
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        return "boolean"
    if isinstance(action, argparse._AppendAction):
        return "list"
    return "value"


def _scalar(action: argparse.Action, value, where: str):
    """One value converted and checked as argparse would convert and check the flag's argument."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ConfigError(f"{where}: expected a string{' or a number' if action.type else ''}, "
                          f"got {_tname(value)}")
    if isinstance(value, (int, float)) and action.type is None:
        raise ConfigError(f"{where}: expected a string, got {_tname(value)} (quote it)")
    text = str(value)
    if action.type is not None:
        try:
            value = action.type(text)
        except (argparse.ArgumentTypeError, ValueError, TypeError) as exc:
            raise ConfigError(f"{where}: {exc or f'invalid value {text!r}'}") from None
    else:
        value = text
    if action.choices is not None and value not in action.choices:
        raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(str, action.choices))}")
    return value


def _tname(value) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
            list: "a list", dict: "a table"}.get(type(value), type(value).__name__)


def load(path: str, parser: argparse.ArgumentParser) -> dict[str, object]:
    """The file's settings as {dest: value}, every key known and every value checked."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    keys = _keys(parser)
    values = {}
    for key, value in data.items():
        where = f"{path}: key {key!r}"
        action = keys.get(key)
        if action is None:
            close = difflib.get_close_matches(key.replace("_", "-"), list(keys), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(f"{where}: unknown key{hint}; the keys are weftd's flags without "
                              f"their dashes (weftd --help)")
        kind = _kind(action)
        if kind == "boolean":
            if not isinstance(value, bool):
                raise ConfigError(f"{where}: expected true or false, got {_tname(value)}")
            values[action.dest] = value if isinstance(action, argparse._StoreTrueAction) else not value
        elif kind == "list":
            if not isinstance(value, list):
                raise ConfigError(f"{where}: expected a list (e.g. [\"...\"]), got {_tname(value)}")
            values[action.dest] = [_scalar(action, v, f"{where}[{i}]") for i, v in enumerate(value)]
        else:
            values[action.dest] = _scalar(action, value, where)
    return values


def parse(parser: argparse.ArgumentParser, argv: list[str], config: str | None) -> argparse.Namespace:
    """Parse `argv` with the file's settings as the defaults: a flag on the command line wins,
    and a repeatable flag given there replaces the file's list."""
    file_values = load(config, parser) if config else {}
    parser.set_defaults(**file_values)
    args = parser.parse_args(argv)
    for key, action in _keys(parser).items():
        if _kind(action) != "list" or action.dest not in file_values:
            continue
        if any(a in action.option_strings or a.split("=", 1)[0] in action.option_strings
               for a in argv):
            setattr(args, action.dest, getattr(args, action.dest)[len(file_values[action.dest]):])
    return args

