"""Runs ``python -m agenthive serve-env`` as a real process on a loopback port."""
import sys

from server_process import ServerProcess


class EnvServerProcess(ServerProcess):
    """``with EnvServerProcess("FrankaReachRandom-v0") as server: server.port``.

    Args:
        env: what ``serve-env`` serves.
        *args: more command-line options (``--backend``, ``--idle-timeout``, ...).
        kwargs: the ``--kwargs`` JSON.
        port: port to bind; 0 picks a free one (kept across ``stop()``/``start()``).
    """

    ready_prefix = "agenthive: serving env "
    start_timeout = 180.0
    stop_timeout = 20.0

    def __init__(self, env, *args, kwargs="{}", port=0):
        command = [sys.executable, "-m", "agenthive", "serve-env", env, "--kwargs", kwargs, "--log-level", "INFO", *args]
        super().__init__(command, port=port, log_prefix="agenthive-env-server-")
