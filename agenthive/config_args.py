"""Command-line options from a dataclass of settings (``scripts/train.py``, ``scripts/collect.py``).

Each field declared with :func:`arg` becomes ``--field-name``; a ``bool`` field becomes a
``--name/--no-name`` pair; the option's type is its default's.
"""
from __future__ import annotations

import argparse
import dataclasses


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
