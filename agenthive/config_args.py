"""Command-line options shared by agenthive's scripts and commands; imports no torch.

* :func:`add_dataclass_arguments`: each field of a dataclass of settings declared with
  :func:`arg` becomes ``--field-name`` (``scripts/train.py``, ``scripts/collect.py``); a
  ``bool`` field becomes a ``--name/--no-name`` pair; the option's type is its default's.
* :func:`parse_kwargs`: the ``--kwargs`` JSON object of ``start-server`` and ``serve-env``.
"""
from __future__ import annotations

import argparse
import dataclasses
import json


def arg(default, help: str):
    """A dataclass field with its default and its command-line help."""
    return dataclasses.field(default=default, metadata={"help": help})


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


def parse_kwargs(text: str, *, example: str) -> dict:
    """``--kwargs``: a JSON object, or a ``SystemExit`` saying what was wrong and showing ``example``.

    Example:
        >>> parse_kwargs('{"obs_dim": 21}', example='{"obs_dim": 21}')
        {'obs_dim': 21}
    """
    try:
        kwargs = json.loads(text)
    except json.JSONDecodeError as err:
        raise SystemExit(f"--kwargs is not valid JSON ({err}): expected an object such as '{example}'") from None
    if not isinstance(kwargs, dict):
        raise SystemExit(f"--kwargs is a JSON {type(kwargs).__name__}: expected an object such as '{example}'")
    return kwargs
