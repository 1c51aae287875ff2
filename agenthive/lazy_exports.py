"""Package attributes imported on first use, so that importing a package imports no simulator or torch.

Example:
    >>> __getattr__, __dir__ = lazy_exports("mypackage", {"sqrt": "math"}, globals())
    >>> __getattr__("sqrt")(4.0)
    2.0
"""
import importlib


def lazy_exports(package: str, names: dict, namespace: dict):
    """The ``__getattr__`` and ``__dir__`` of a package whose ``names`` (public name -> defining module) load on first access.

    Args:
        package: the package's name, for the error of an unknown attribute.
        names: public name -> the module that defines it.
        namespace: the package's ``globals()`` (listed by ``__dir__`` beside ``names``).
    """

    def __getattr__(name):
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module), name)

    def __dir__():
        return sorted(list(namespace) + list(names))

    return __getattr__, __dir__
