"""Runs ``python -m agenthive serve-env`` as a real process on a loopback port."""
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

TEST_DIR = Path(__file__).resolve().parent


class EnvServerProcess:
    """``with EnvServerProcess("FrankaReachRandom-v0") as server: server.port``.

    Args:
        env: what ``serve-env`` serves.
        *args: more command-line options (``--backend``, ``--idle-timeout``, ...).
        kwargs: the ``--kwargs`` JSON.
        port: port to bind; 0 picks a free one (kept across ``stop()``/``start()``).
    """

    def __init__(self, env, *args, kwargs="{}", port=0):
        self.command = [sys.executable, "-m", "agenthive", "serve-env", env, "--kwargs", kwargs, "--log-level", "INFO", *args]
        self.port = port or None
        self.process = None
        self.log = tempfile.NamedTemporaryFile(prefix="agenthive-env-server-", suffix=".log", delete=False)

    def start(self, timeout=180.0):
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TEST_DIR), os.environ.get("PYTHONPATH", "")])}
        self.process = subprocess.Popen([*self.command, "--port", str(self.port or 0)], stdout=subprocess.PIPE, stderr=self.log, text=True, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()  # RoboHive prints a banner on stdout first
            if not line:
                break
            if line.startswith("agenthive: serving env "):
                self.port = int(line.rsplit(":", 1)[1])
                # keep reading what the env prints later, so that a full pipe never blocks the server
                threading.Thread(target=self.process.stdout.read, daemon=True).start()
                return self
        self.stop()
        raise RuntimeError(f"{' '.join(self.command)} did not start; its log:\n{self.logs()}")

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def logs(self):
        return Path(self.log.name).read_text()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
