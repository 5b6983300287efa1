"""Shell completion for `weft` (bash and zsh, through argcomplete), names of objects included.

`weft completion bash|zsh` prints the shell code (`source <(weft completion bash)`, or into
/etc/bash_completion.d/weft; zsh: `weft completion zsh > "${fpath[1]}/_weft"`). Subcommands and
flags come from the parser itself; arguments that name objects complete from weftd's API (the
same endpoint as every other command: the lab's socket, WEFT_API ...): tenants, TENANT/NET,
TENANT/NET/PORT, TENANT/SG, TENANT/ROUTER and hosts. Which argument names what is read from its
metavar (TENANT/NET ...) or its flag (--host, --to, --tenant), so subcommands added later
complete without being listed here. An API that does not answer within a second completes
nothing rather than hang the shell.
"""
from __future__ import annotations

import argparse
import os

SOURCES = {        # what an argument names -> (API path, the field that is its reference)
    "tenant": ("/v1/tenants", "name"),
    "network": ("/v1/networks", "ref"),
    "port": ("/v1/ports", "ref"),
    "sg": ("/v1/security-groups", "ref"),
    "router": ("/v1/routers", "ref"),
    "host": ("/v1/hosts", "name"),
}
BY_METAVAR = {"TENANT/NET/PORT": ["port"], "TENANT/NET": ["network"], "TENANT/SG": ["sg"],
              "TENANT/ROUTER": ["router"], "TENANT[/NET]": ["tenant", "network"], "HOST": ["host"],
              "hvK": []}
BY_FLAG = {"--host": ["host"], "--to": ["host"], "--tenant": ["tenant"], "--sg": ["sg"],
           "--remote-sg": ["sg"]}
BY_POSITION = {("tenant", "delete"): ["tenant"], ("host", "delete"): ["host"],
               ("host", "update"): ["host"], ("host", "remove"): ["host"]}


def names(kinds: list[str], prefix: str = "") -> list[str]:
    """References of these kinds from weftd's API, starting with `prefix`; [] if it does not answer."""
    from controller.client import Client
    from topology.errors import WeftError

    client = Client(timeout=1.0)
    found: list[str] = []
    for kind in kinds:
        path, field = SOURCES[kind]
        try:
            rows = client.get(path)
        except (WeftError, OSError, ValueError):
            return found
        found += [r[field] for r in rows if isinstance(r, dict) and str(r.get(field, "")).startswith(prefix)]
    return sorted(found)


def _completer(kinds: list[str]):
    def complete(prefix, **_kwargs):
        return names(kinds, prefix)
    return complete


def _kinds(action: argparse.Action, path: tuple[str, ...]) -> list[str] | None:
    if action.option_strings:
        for flag in action.option_strings:
            if flag in BY_FLAG:
                return BY_FLAG[flag]
        return None
    if action.metavar in BY_METAVAR:
        return BY_METAVAR[action.metavar]
    if action.dest in ("tenant", "host"):
        return [action.dest]
    return BY_POSITION.get(path[-2:]) if action.dest == "name" else None


def attach(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> None:
    """Give every argument that names an object a completer, walking every subcommand."""
    for action in parser._actions:        # argparse has no public walk of its actions
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                attach(sub, path + (name,))
            continue
        kinds = _kinds(action, path)
        if kinds:
            action.completer = _completer(kinds)


def autocomplete(parser: argparse.ArgumentParser) -> None:
    """Answer the shell's completion request and exit, when this run is one (argcomplete)."""
    if "_ARGCOMPLETE" not in os.environ:
        return
    import argcomplete
    attach(parser)
    argcomplete.autocomplete(parser, always_complete_options=False)   # flags once "-" is typed


def shell_code(shell: str) -> str:
    import argcomplete
    return argcomplete.shellcode(["weft"], shell=shell)
