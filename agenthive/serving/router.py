"""The ZeroMQ machinery every agenthive server and client shares; numpy, pyzmq and msgpack only.

A server (``PolicyServer``, ``EnvServer``) owns one ROUTER socket: ``RouterServer`` binds it
(with optional CURVE encryption and client authorization), runs the receive loop, refuses
oversized and malformed requests with a structured error before any subclass code runs, and
sends replies without ever blocking on a slow or vanished client. Subclasses answer the
decoded requests (``_serve``) and forget idle state (``_sweep``).

A client (``PolicyClient``, ``RemoteEnv``'s connection) owns one DEALER socket:
``RouterClient`` sends a request and waits for the reply with the same id under a deadline.
A request that times out closes the socket; the next one opens a new socket and repeats
the handshake (``_reconnect``), so a restarted server is picked up, and a late reply to an
abandoned request is recognised by its id and dropped. With CURVE, a failed handshake is
reported as such instead of as a silent timeout.

Example:
    >>> class Echo(RouterServer):
    ...     serves = "echo"
    ...     def _serve(self, frames):
    ...         received = self._receive(frames)
    ...         if received is not None:
    ...             identity, message, _ = received
    ...             self._reply(identity, {"v": wire.VERSION, "type": "echo", "id": message.get("id"), "text": message.get("text")})
    >>> class EchoClient(RouterClient):
    ...     role = "echo server"
    ...     def _reconnect(self):
    ...         pass
    >>> import threading
    >>> server = Echo(port=0)
    >>> endpoint = server.bind()
    >>> thread = threading.Thread(target=server.serve_forever, daemon=True); thread.start()
    >>> client = EchoClient("127.0.0.1", server.port, timeout=5.0)
    >>> client._request({"type": "say", "text": "hi"}, "say")["text"]
    'hi'
    >>> client.close(); server.stop(); thread.join()
"""
import logging
import threading
import time
import uuid

import zmq
import zmq.auth
from zmq.utils.monitor import recv_monitor_message

from agenthive.serving import wire

logger = logging.getLogger(__name__)


class ServerError(RuntimeError):
    """The server refused a request; ``code`` is one of the ``wire.ERROR_*`` constants."""

    role = "server"

    def __init__(self, code, message, endpoint):
        super().__init__(f"{self.role} {endpoint} answered {code}: {message}")
        self.code = code


class ServerTimeoutError(TimeoutError):
    """The server did not answer in time."""


class RequestTooLargeError(ValueError):
    """A request larger than the server accepts (its ``max_message_bytes``), refused before sending."""


class RouterServer:
    """Binds a ROUTER socket on ``tcp://host:port`` and runs the receive loop.

    Args:
        host: address to bind; loopback unless you mean to expose the server.
        port: TCP port; 0 picks a free one (read it from ``port`` after ``bind()``).
        max_message_bytes: larger requests are answered ``too_large``; the handshake tells
            clients, which then refuse them before sending. ZeroMQ reads frames of up to
            twice this size (so that they too get their ``too_large``) and drops a peer that
            sends a larger one.
        curve_secret_key: path of the server's CURVE key pair file
            (``zmq.auth.create_certificates``); with it, all traffic is encrypted.
        curve_authorized_keys: folder of public key files of the clients allowed in; None
            admits any client that knows the server's public key.
    """

    serves = None  # what the handshake says this server serves: "policy" or "env"

    def __init__(self, *, host="127.0.0.1", port=8080, max_message_bytes=64 << 20, curve_secret_key=None, curve_authorized_keys=None):
        self.host = host
        self.port = port
        self.max_message_bytes = max_message_bytes
        self.curve_secret_key = curve_secret_key
        self.curve_authorized_keys = curve_authorized_keys
        self.instance = uuid.uuid4().hex  # changes when the server restarts
        self._context = None
        self._socket = None
        self._authenticator = None
        self._shared_memory = None  # a SharedMemoryReader where a subclass takes same-host arrays
        self._stopping = threading.Event()
        self._started = time.monotonic()

    @property
    def endpoint(self):
        return f"tcp://{self.host}:{self.port}"

    def bind(self):
        """Bind the socket (done by ``serve_forever`` if not yet); returns the endpoint."""
        self._context = zmq.Context()
        sock = self._context.socket(zmq.ROUTER)
        sock.linger = 0
        sock.setsockopt(zmq.MAXMSGSIZE, 2 * self.max_message_bytes)  # room to see, and refuse, oversize requests
        sock.sndhwm = sock.rcvhwm = 10_000
        if self.curve_secret_key is not None:
            public, secret = zmq.auth.load_certificate(self.curve_secret_key)
            if secret is None:
                raise ValueError(f"{self.curve_secret_key} holds no secret key: expected the server's key pair file (*.key_secret)")
            if self.curve_authorized_keys is not None:
                from zmq.auth.thread import ThreadAuthenticator

                self._authenticator = ThreadAuthenticator(self._context)
                self._authenticator.start()
                self._authenticator.configure_curve(domain="*", location=str(self.curve_authorized_keys))
            sock.curve_publickey, sock.curve_secretkey, sock.curve_server = public, secret, True
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.port == 0:
            sock.bind(f"tcp://{host}:*")
            self.port = int(sock.get(zmq.LAST_ENDPOINT).decode().rsplit(":", 1)[1])
        else:
            sock.bind(f"tcp://{host}:{self.port}")
        self._socket = sock
        return self.endpoint

    def stop(self):
        """Ask ``serve_forever`` to return (from any thread); it does within 0.1 s."""
        self._stopping.set()

    def serve_forever(self):
        """Answer requests until ``stop()``; ``_sweep`` runs about once a second."""
        if self._socket is None:
            self.bind()
        last_sweep = time.monotonic()
        try:
            self._socket.rcvtimeo = 100  # wake up to notice stop() and to sweep
            while not self._stopping.is_set():
                try:
                    frames = self._socket.recv_multipart(copy=False)
                except zmq.Again:
                    frames = None
                if frames is not None:
                    self._serve(frames)
                now = time.monotonic()
                if now - last_sweep > 1.0:
                    self._sweep(now)
                    last_sweep = now
        finally:
            if self._authenticator is not None:
                self._authenticator.stop()
            self._socket.close(linger=0)
            self._context.term()
            self._closed()

    # -- for subclasses -----------------------------------------------------------------------

    def _serve(self, frames):
        """Handle one received multipart message ``[identity, header, arrays...]``."""
        raise NotImplementedError

    def _sweep(self, now):
        """Forget what has been idle too long (called about once a second)."""

    def _closed(self):
        """Release what the server holds once the loop has ended."""

    def _receive(self, frames):
        """Check and decode a request; answers the bad ones itself.

        Returns:
            ``(identity, message, local)`` (``local``: it came from this host and its
            same-host arrays were resolved), or None when the request was refused.
        """
        identity, payload = frames[0], frames[1:]
        size = sum(len(frame) for frame in payload)
        if size > self.max_message_bytes:
            self._refuse(frames, wire.ERROR_TOO_LARGE, f"request of {size} bytes: this server accepts at most {self.max_message_bytes}")
            return None
        local = self._shared_memory is not None and _is_loopback(identity)
        try:
            message = wire.decode(payload, shared_memory=self._shared_memory if local else None)
        except wire.VersionError as err:
            self._refuse(frames, wire.ERROR_VERSION, f"{err} (server runs agenthive wire protocol {wire.VERSION})")
            return None
        except wire.WireError as err:
            self._refuse(frames, wire.ERROR_BAD_MESSAGE, str(err))
            return None
        return identity, message, local

    def _refuse(self, frames, code, text):
        """Answer the request ``frames`` with an error, repeating its id if its header has one."""
        self._reply(frames[0], wire.error(code, text, wire.request_id(frames[1]) if len(frames) > 1 else None))

    def _reply(self, identity, message):
        try:
            self._socket.send_multipart([identity, *wire.encode(message)], copy=False)  # a ROUTER drops rather than blocks
        except zmq.ZMQError as err:  # the client is gone or not reading: its loss, not the server's
            logger.debug("reply to a client dropped: %s", err)


def _is_loopback(frame):
    address = frame.get("Peer-Address")
    return address.startswith("127.") or address in ("::1", "::ffff:127.0.0.1")


_HANDSHAKE_FAILURES = {
    getattr(zmq, name): name
    for name in ("EVENT_HANDSHAKE_FAILED_AUTH", "EVENT_HANDSHAKE_FAILED_PROTOCOL", "EVENT_HANDSHAKE_FAILED_NO_DETAIL")
}


class RouterClient:
    """A DEALER connection to a ``RouterServer``: requests with deadlines, reconnection, CURVE.

    Subclasses set ``role`` (named in errors), ``error_type`` and ``timeout_error``, and
    implement ``_reconnect`` (the handshake to repeat on a fresh socket).

    Args:
        host: server address.
        port: server port.
        timeout: seconds to wait for each reply.
        curve_server_key: path of the server's public key file; turns on CURVE encryption.
        curve_client_key: path of this client's key pair file (generated per connection
            when omitted; give one when the server admits only known clients).
    """

    role = "server"
    error_type = ServerError
    timeout_error = ServerTimeoutError

    def __init__(self, host, port, *, timeout=10.0, curve_server_key=None, curve_client_key=None):
        self.host = host
        self.port = int(port)
        self.timeout = timeout
        self.curve_server_key = curve_server_key
        self.curve_client_key = curve_client_key
        host = f"[{host}]" if ":" in host else host
        self.endpoint = f"tcp://{host}:{self.port}"
        self._context = zmq.Context()
        self._socket = None
        self._monitor = None
        self._request_id = 0
        self.max_message_bytes = None  # the server's limit, from its hello reply

    def _reconnect(self):
        """Repeat the handshake on a fresh socket (after a request timed out)."""
        raise NotImplementedError

    def _open(self):
        sock = self._context.socket(zmq.DEALER)
        sock.linger = 0
        if self.curve_server_key is not None:
            server_public, _ = zmq.auth.load_certificate(self.curve_server_key)
            if self.curve_client_key is not None:
                public, secret = zmq.auth.load_certificate(self.curve_client_key)
                if secret is None:
                    raise ValueError(f"{self.curve_client_key} holds no secret key: expected this client's key pair file (*.key_secret)")
            else:
                public, secret = zmq.curve_keypair()
            sock.curve_serverkey, sock.curve_publickey, sock.curve_secretkey = server_public, public, secret
            self._monitor = sock.get_monitor_socket(sum(_HANDSHAKE_FAILURES))
        sock.connect(self.endpoint)
        self._socket = sock

    def _close_socket(self):
        if self._monitor is not None:
            self._socket.disable_monitor()
            self._monitor.close(linger=0)
            self._monitor = None
        if self._socket is not None:
            self._socket.close(linger=0)
            self._socket = None

    def _request(self, message, kind, shared_memory=None, timeout=None):
        """Send ``message`` (``v`` and ``id`` are filled in) and return the reply.

        Args:
            message: the request; its arrays may go through ``shared_memory``.
            kind: the request's name, for errors.
            shared_memory: a ``SharedMemoryWriter`` for large arrays, or None.
            timeout: seconds to wait for this reply (default: ``self.timeout``).

        Raises:
            ServerError (``error_type``): the server answered with an error.
            ServerTimeoutError (``timeout_error``): no reply in time; the socket is closed
                and the next request reconnects.
            RequestTooLargeError: the request exceeds the server's ``max_message_bytes``;
                nothing was sent.
        """
        if self._socket is None:  # the previous request timed out: reconnect and re-check the server
            self._open()
            if kind != "hello":
                self._reconnect()
        timeout = self.timeout if timeout is None else timeout
        self._request_id += 1
        message["v"], message["id"] = wire.VERSION, self._request_id
        frames = wire.encode(message, shared_memory)
        self._check_size(frames, kind)
        start = time.monotonic()
        self._socket.send_multipart(frames, copy=False)
        while True:
            remaining_ms = int((timeout - (time.monotonic() - start)) * 1000)
            try:
                if remaining_ms <= 0:
                    raise zmq.Again()
                self._socket.setsockopt(zmq.RCVTIMEO, remaining_ms)
                frames = self._socket.recv_multipart(copy=False)
            except zmq.Again:
                elapsed = time.monotonic() - start
                reason = self._handshake_failure()
                self._close_socket()
                if shared_memory is not None:  # the server may still read the arrays of this request
                    shared_memory.renew()
                raise self.timeout_error(
                    f"{self.role} {self.host}:{self.port} did not answer {kind!r} within {timeout} s "
                    f"(waited {elapsed:.2f} s){reason}"
                ) from None
            reply = wire.decode(frames)
            if reply.get("id") != self._request_id:
                continue  # the late answer to a request that timed out
            if reply["type"] == "error":
                raise self.error_type(reply.get("code"), reply.get("message"), self.endpoint)
            if kind == "hello":
                self.max_message_bytes = reply.get("max_message_bytes")
            return reply

    def _check_size(self, frames, kind):
        """Refuse what the server would refuse, before sending it (it could not answer a large enough frame)."""
        if self.max_message_bytes is None:
            return
        size = sum(memoryview(frame).nbytes for frame in frames)
        if size > self.max_message_bytes:
            raise RequestTooLargeError(
                f"{kind!r} request of {size} bytes is larger than the {self.max_message_bytes} bytes {self.role} "
                f"{self.host}:{self.port} accepts: send smaller or fewer observations per request, or raise the server's "
                f"limit (start-server --max-message-mb)"
            )

    def _handshake_failure(self):
        if self._monitor is None:
            return ""
        failures = []
        while self._monitor.poll(0):
            event = recv_monitor_message(self._monitor)
            failures.append(_HANDSHAKE_FAILURES.get(event["event"], str(event["event"])))
        if not failures:
            return "; no CURVE handshake failure was reported, so the server is down or busy"
        return (
            f"; the CURVE handshake failed ({failures[-1]}): the server's public key "
            f"({self.curve_server_key}) is not the server's, or the server does not admit this client's key"
        )

    def _check_serves(self, reply, expected, hint):
        """Refuse a server that serves something else (a policy where an env was expected)."""
        serves = reply.get("serves", "policy")  # servers before the "serves" field served policies
        if serves != expected:
            raise RuntimeError(f"{self.endpoint} serves {serves!r} where this client expects {expected!r}: {hint}")

    def close(self):
        """Close the connection; safe to call twice."""
        self._close_socket()
        if not self._context.closed:
            self._context.term()
