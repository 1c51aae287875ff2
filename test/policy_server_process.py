"""Runs ``python -m agenthive start-server`` as a real process on a free loopback port."""
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TEST_DIR = Path(__file__).resolve().parent


class PolicyServerProcess:
    """``with PolicyServerProcess("mlp", kwargs='{...}') as server: server.port``.

    Args:
        policy: registered name or ``module:Class`` (test modules are importable).
        *args: more command-line options (``--max-batch``, ``--curve-secret-key``, ...).
        python: interpreter to run it with (the torch-free venv for isolation tests).
        port: port to bind; 0 picks a free one.
    """

    def __init__(self, policy, *args, kwargs="{}", python=sys.executable, port=0):
        self.command = [str(python), "-m", "agenthive", "start-server", policy, "--kwargs", kwargs, "--log-level", "WARNING", *args]
        self.requested_port = port
        self.port = None
        self.openpi_port = None
        self.process = None
        self.log = tempfile.NamedTemporaryFile(prefix="agenthive-server-", suffix=".log", delete=False)

    def start(self, timeout=60.0):
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TEST_DIR), os.environ.get("PYTHONPATH", "")])}
        port = self.port if self.port is not None else self.requested_port
        self.process = subprocess.Popen([*self.command, "--port", str(port)], stdout=subprocess.PIPE, stderr=self.log, text=True, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            if line.startswith("agenthive: openpi websocket protocol on "):
                self.openpi_port = int(line.rsplit(":", 1)[1])
            if line.startswith("agenthive: serving "):
                self.port = int(line.rsplit(":", 1)[1])
                return self
        self.stop()
        raise RuntimeError(f"{' '.join(self.command)} did not start; its log:\n{Path(self.log.name).read_text()}")

    def stop(self):
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process is not None:
            self.process.stdout.close()

    def logs(self):
        return Path(self.log.name).read_text()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
