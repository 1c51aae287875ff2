"""Command-line options shared by agenthive's scripts and commands; imports no torch.

* :func:`add_dataclass_arguments`: each field of a dataclass of settings declared with
  :func:`arg` becomes ``--field-name`` (``scripts/train.py``, ``scripts/collect.py``); a
  ``bool`` field becomes a ``--name/--no-name`` pair; the option's type is its default's.
* :func:`add_server_arguments` and :func:`parse_kwargs`: the options ``start-server`` and
  ``serve-env`` share, and their ``--kwargs`` (JSON or a Python dict literal).
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import json
import sys


def arg(default, help: str, *, formerly: tuple[str, ...] = ()):
    """A dataclass field with its default and its command-line help.

    ``formerly``: the option's old names, still accepted with a line on stderr naming the new one.
    """
    return dataclasses.field(default=default, metadata={"help": help, "formerly": formerly})


class _Renamed(argparse.Action):
    """An old option name: stores into the new option's field and says so."""

    def __call__(self, parser, namespace, values, option_string=None):
        new = "--" + self.dest.replace("_", "-")
        print(f"{parser.prog}: {option_string} is now {new} (the old name will go)", file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_dataclass_arguments(parser: argparse.ArgumentParser, cls, *, only_given: bool = False) -> None:
    """Adds one option per field of ``cls`` to ``parser``.

    ``only_given``: options left out of the command line are left out of the parsed
    namespace (``argparse.SUPPRESS``) instead of taking the field's default, so that the
    caller can tell what was given.
    """
    for f in dataclasses.fields(cls):
        name, help_ = f"--{f.name.replace('_', '-')}", f"{f.metadata['help']} (default: {f.default!r})"
        default = argparse.SUPPRESS if only_given else f.default
        if isinstance(f.default, bool):
            parser.add_argument(name, action=argparse.BooleanOptionalAction, default=default, help=help_)
        else:
            parser.add_argument(name, type=type(f.default), default=default, help=help_)
        for old in f.metadata.get("formerly", ()):
            parser.add_argument(old, dest=f.name, type=type(f.default), action=_Renamed, default=argparse.SUPPRESS, help=argparse.SUPPRESS)


def parse_kwargs(text: str, *, example: str, flag: str = "--kwargs") -> dict:
    """``flag``'s value: a JSON object or a Python dict literal, or a ``SystemExit`` naming ``flag`` and showing ``example``.

    Python literals (``None``, ``True``, tuples) are read with ``ast.literal_eval``, never
    ``eval``, so commands written for the ``agents`` project paste as they are.

    Example:
        >>> parse_kwargs('{"obs_dim": 21}', example='{"obs_dim": 21}')
        {'obs_dim': 21}
        >>> parse_kwargs('{"checkpoint_step": None, "unnorm_key": [], "half": True}', example="{}")
        {'checkpoint_step': None, 'unnorm_key': [], 'half': True}
    """
    try:
        kwargs = json.loads(text)
    except json.JSONDecodeError as json_error:
        try:
            kwargs = ast.literal_eval(text)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError) as literal_error:
            raise SystemExit(
                f"{flag} is neither JSON ({json_error}) nor a Python literal ({type(literal_error).__name__}: {literal_error}): "
                f"expected an object such as '{example}'"
            ) from None
    if not isinstance(kwargs, dict) or not all(isinstance(key, str) for key in kwargs):
        raise SystemExit(f"{flag} is a {type(kwargs).__name__}: expected an object with string keys such as '{example}'")
    return kwargs


def add_server_arguments(parser: argparse.ArgumentParser, *, port: int, constructed: str) -> None:
    """The options both servers take: ``--host``, ``--port``, ``--kwargs`` (for ``constructed``'s constructor), CURVE keys, ``--log-level``."""
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback only; 0.0.0.0 for every interface)")
    parser.add_argument("--port", type=int, default=port, help="TCP port; 0 picks a free one (printed on start)")
    parser.add_argument("--kwargs", default="{}", help=f"keyword arguments for the {constructed}'s constructor: a JSON object or a Python dict literal")
    parser.add_argument("--curve-secret-key", help="server key pair file (zmq.auth.create_certificates); encrypts all traffic")
    parser.add_argument("--curve-authorized-keys", help="folder of public key files of the clients allowed in")
    parser.add_argument("--log-level", default="INFO", help="logging level (DEBUG, INFO, WARNING)")
