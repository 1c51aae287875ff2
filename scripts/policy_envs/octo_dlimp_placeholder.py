"""Placeholder for ``dlimp``, a data-loading library that Octo imports but does not use at inference.

Octo (octo-models/octo at 241fb35) imports ``dlimp`` at module level in its data utilities,
which ``octo.model.octo_model`` imports, and evaluates the annotation ``dl.DLataset`` there.
dlimp is installed from GitHub only (not reachable here) and its repository carries no
licence, so the Octo policy environment installs this module as ``dlimp`` instead. Octo's
inference path (``OctoModel.load_pretrained``, ``create_tasks``, ``sample_actions``) calls
nothing of it; Octo's training data pipeline does, and fails loudly here.
"""


class DLataset:
    """Stands in for ``dlimp.DLataset`` in annotations; building one means Octo's data pipeline ran."""

    def __init__(self, *args, **kwargs):
        raise NotImplementedError("dlimp is a placeholder in agenthive's Octo policy environment: Octo's data pipeline (training) needs the real dlimp")


def __getattr__(name):
    raise AttributeError(f"dlimp.{name}: dlimp is a placeholder in agenthive's Octo policy environment (inference only); Octo's data pipeline needs the real dlimp")
