"""``python -m agenthive start-server`` and ``serve-env`` as real processes on loopback ports.

Both build on the package's :class:`agenthive.serving.process.ServerProcess`; the test
directory is on the servers' ``PYTHONPATH``, so ``helpers.<module>:<name>`` policies and env
factories load in them.
"""
import os
import sys
from pathlib import Path

from agenthive.serving.process import ServerProcess

TEST_DIR = Path(__file__).resolve().parent.parent


def _env():
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(TEST_DIR), os.environ.get("PYTHONPATH", "")])}


class PolicyServerProcess(ServerProcess):
    """``with PolicyServerProcess("mlp", kwargs='{...}') as server: server.port``.

    Args:
        policy: registered name or ``module:Class`` (``helpers.*`` modules are importable).
        *args: more command-line options (``--max-batch``, ``--curve-secret-key``, ...).
        python: interpreter to run it with (the torch-free venv for isolation tests).
        port: port to bind; 0 picks a free one (kept across ``stop()``/``start()``).
    """

    def __init__(self, policy, *args, kwargs="{}", python=sys.executable, port=0):
        command = [str(python), "-m", "agenthive", "start-server", policy, "--kwargs", kwargs, "--log-level", "WARNING", *args, "--port", "{port}"]
        super().__init__(command, port=port, env=_env())
        self.openpi_port = None

    def on_line(self, line):
        if line.startswith("agenthive: openpi websocket protocol on "):
            self.openpi_port = int(line.rsplit(":", 1)[1])


class EnvServerProcess(ServerProcess):
    """``with EnvServerProcess("FrankaReachRandom-v0") as server: server.port``.

    Args:
        env: what ``serve-env`` serves.
        *args: more command-line options (``--backend``, ``--idle-timeout``, ...).
        kwargs: the ``--kwargs`` JSON.
        port: port to bind; 0 picks a free one (kept across ``stop()``/``start()``).
    """

    def __init__(self, env, *args, kwargs="{}", port=0):
        command = [sys.executable, "-m", "agenthive", "serve-env", env, "--kwargs", kwargs, "--log-level", "INFO", *args, "--port", "{port}"]
        super().__init__(command, port=port, ready_prefix="agenthive: serving env ", start_timeout=180.0, stop_timeout=20.0, env=_env())
