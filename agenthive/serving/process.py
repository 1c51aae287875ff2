"""``ServerProcess``: runs a server command (``start-server``, ``serve-env``, or any command that
prints agenthive's ready line) as a child process, until it is ready and then until stopped.

Both agenthive servers print ``agenthive: serving <what> on tcp://HOST:PORT`` once their
socket is bound, so a caller that starts one with ``--port 0`` reads the port from that
line. Used by ``python -m agenthive eval --server-command`` and by the tests; imports no torch.

Example:
    >>> import sys
    >>> command = [sys.executable, "-m", "agenthive", "start-server", "mlp", "--kwargs", '{"obs_dim": 3}', "--port", "{port}"]
    >>> with ServerProcess(command) as server:
    ...     server.host, server.port > 0
    ('127.0.0.1', True)
"""
from __future__ import annotations

import re
import signal
import subprocess
import threading
import time

_READY = re.compile(r"on tcp://([^:\s]+):(\d+)")


class ServerProcess:
    """A server process that prints ``<ready_prefix>... on tcp://HOST:PORT`` once bound; a context manager.

    Args:
        command: the command line; ``"{port}"`` in any of its words is replaced by ``port``.
        port: the port to ask for; 0 lets the server pick one. The port read from the ready
            line is kept, so ``stop()`` then ``start()`` restarts the server on the same port
            (``command`` may be edited in between to restart it with something else).
        ready_prefix: how the ready line starts.
        start_timeout: seconds to wait for the ready line.
        stop_timeout: seconds ``stop()`` waits after SIGTERM before it kills the process.
        env: the child's environment (default: this process's).

    The child's stdout and stderr are read to the end by a thread (a full pipe would block
    the server); what it printed is in ``output`` (a list of lines) and ``logs()``.

    Raises:
        RuntimeError: from ``start()``, when the process exits or prints no ready line in
            time; the message ends with what it printed.
    """

    def __init__(self, command, *, port=0, ready_prefix="agenthive: serving ", start_timeout=60.0, stop_timeout=10.0, env=None):
        self.command = list(command)
        self.port = port or None
        self.host = None
        self.ready_prefix, self.start_timeout, self.stop_timeout, self.env = ready_prefix, start_timeout, stop_timeout, env
        self.process = None
        self.output = []
        self._reader = None

    def on_line(self, line: str) -> None:
        """Called with each line the server prints (override to read more than the ready line)."""

    def start(self, timeout=None):
        """Starts the process and returns ``self`` once it printed its ready line."""
        timeout = self.start_timeout if timeout is None else timeout
        command = [word.replace("{port}", str(self.port or 0)) for word in self.command]
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True, env=self.env,
        )
        ready = threading.Event()
        self._reader = threading.Thread(target=self._read, args=(self.process, ready), daemon=True)
        self._reader.start()
        deadline = time.monotonic() + timeout
        while not ready.wait(0.05):
            if self.process.poll() is not None or time.monotonic() > deadline:
                code = self.process.poll()
                self.stop()
                why = f"exited with code {code}" if code is not None else f"printed no '{self.ready_prefix}... on tcp://HOST:PORT' line in {timeout:.0f} s"
                raise RuntimeError(f"the server `{' '.join(command)}` {why}; its output:\n{self.logs(tail=40)}")
        return self

    def _read(self, process, ready):
        for line in process.stdout:
            line = line.rstrip("\n")
            self.output.append(line)
            self.on_line(line)
            match = _READY.search(line) if line.startswith(self.ready_prefix) and not ready.is_set() else None
            if match:
                self.host, self.port = match.group(1), int(match.group(2))
                ready.set()

    def stop(self):
        """SIGTERM, then SIGKILL after ``stop_timeout``; waits until the output is read to its end."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._reader is not None:
            self._reader.join(5)  # the process is gone: its stdout is at its end
            self._reader = None
        self.process.stdout.close()

    def logs(self, tail=None) -> str:
        """What the server printed (its last ``tail`` lines)."""
        return "\n".join(self.output[-tail:] if tail else self.output)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
