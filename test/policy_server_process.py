"""Runs ``python -m agenthive start-server`` as a real process on a free loopback port."""
import sys

from server_process import ServerProcess


class PolicyServerProcess(ServerProcess):
    """``with PolicyServerProcess("mlp", kwargs='{...}') as server: server.port``.

    Args:
        policy: registered name or ``module:Class`` (test modules are importable).
        *args: more command-line options (``--max-batch``, ``--curve-secret-key``, ...).
        python: interpreter to run it with (the torch-free venv for isolation tests).
        port: port to bind; 0 picks a free one (kept across ``stop()``/``start()``).
    """

    def __init__(self, policy, *args, kwargs="{}", python=sys.executable, port=0):
        command = [str(python), "-m", "agenthive", "start-server", policy, "--kwargs", kwargs, "--log-level", "WARNING", *args]
        super().__init__(command, port=port)
        self.openpi_port = None

    def _line(self, line):
        if line.startswith("agenthive: openpi websocket protocol on "):
            self.openpi_port = int(line.rsplit(":", 1)[1])
