"""Runs a ``python -m agenthive`` server command as a real process on a loopback port."""
import os
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

TEST_DIR = Path(__file__).resolve().parent


class ServerProcess:
    """A server process that prints ``<ready_prefix>...:<port>`` once bound; a context manager.

    Subclasses give the command. ``port`` 0 picks a free one; the port found is kept, so
    ``stop()`` then ``start()`` restarts the server on the same port (``command`` may be
    edited in between to restart it with something else).
    """

    ready_prefix = "agenthive: serving "
    start_timeout = 60.0
    stop_timeout = 10.0

    def __init__(self, command, *, port=0, log_prefix="agenthive-server-"):
        self.command = command
        self.port = port or None
        self.process = None
        self._drain = None
        self.log = tempfile.NamedTemporaryFile(prefix=log_prefix, suffix=".log", delete=False)

    def _line(self, line):
        """Called with each line the server prints before it is ready."""

    def start(self, timeout=None):
        timeout = self.start_timeout if timeout is None else timeout
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TEST_DIR), os.environ.get("PYTHONPATH", "")])}
        self.process = subprocess.Popen([*self.command, "--port", str(self.port or 0)], stdout=subprocess.PIPE, stderr=self.log, text=True, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()  # RoboHive prints a banner on stdout first
            if not line:
                break
            self._line(line)
            if line.startswith(self.ready_prefix):
                self.port = int(line.rsplit(":", 1)[1])
                # keep reading what the server prints later, so that a full pipe never blocks it
                self._drain = threading.Thread(target=self.process.stdout.read, daemon=True)
                self._drain.start()
                return self
        self.stop()
        raise RuntimeError(f"{' '.join(self.command)} did not start; its log:\n{self.logs()}")

    def stop(self):
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._drain is not None:
            self._drain.join(5)  # the process is gone: its stdout is at its end
            self._drain = None
        self.process.stdout.close()

    def logs(self):
        return Path(self.log.name).read_text()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
