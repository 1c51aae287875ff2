"""Runs the docstring examples of agenthive.serving and agenthive.modules (real servers)."""
import doctest
import importlib
import pkgutil

import pytest

import agenthive.modules
import agenthive.serving

MODULES = sorted(
    info.name
    for package in (agenthive.serving, agenthive.modules)
    for info in pkgutil.walk_packages(package.__path__, package.__name__ + ".")
)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
