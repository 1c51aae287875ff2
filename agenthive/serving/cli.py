"""``python -m agenthive start-server <policy> [options]``: serve a policy; imports no torch.

The line ``agenthive: serving <policy> on tcp://HOST:PORT`` is printed as soon as the socket
is bound (before the policy has loaded), so scripts that start the server with ``--port 0``
can read the port from it; clients then wait for ``ready``.

Example:
    >>> main(["mlp", "--help"])  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    SystemExit: 0
"""
import argparse
import logging
import signal
import sys

from agenthive.config_args import add_server_arguments, parse_kwargs
from agenthive.serving.policies import POLICIES, load_policy_class
from agenthive.serving.server import PolicyServer


def _parser():
    parser = argparse.ArgumentParser(
        prog="python -m agenthive start-server",
        description="Serve a policy to RemotePolicyModule clients (and openpi websocket clients with --openpi-port).",
    )
    parser.add_argument("policy", help=f"a registered policy ({', '.join(sorted(POLICIES))}) or module:Class")
    add_server_arguments(parser, port=8080, constructed="policy")
    parser.add_argument("--max-batch", type=int, default=16, help="most observations per batched forward pass; 1 turns batching off")
    parser.add_argument("--max-wait-ms", type=float, default=2.0, help="longest a request waits for those of other active clients")
    parser.add_argument("--max-message-mb", type=float, default=64.0, help="largest request accepted, in MiB")
    parser.add_argument("--openpi-port", type=int, help="also serve openpi's websocket protocol on this port (needs websockets)")
    return parser


def main(argv=None):
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    policy = load_policy_class(args.policy)(**parse_kwargs(args.kwargs, example='{"obs_dim": 21}'))
    server = PolicyServer(
        policy,
        host=args.host,
        port=args.port,
        max_batch=args.max_batch,
        max_wait_ms=args.max_wait_ms,
        max_message_bytes=int(args.max_message_mb * (1 << 20)),
        curve_secret_key=args.curve_secret_key,
        curve_authorized_keys=args.curve_authorized_keys,
    )
    endpoint = server.bind()
    bridge = None
    if args.openpi_port is not None:
        from agenthive.serving.openpi import OpenPIBridge

        bridge = OpenPIBridge(server, host=args.host, port=args.openpi_port)
        bridge.start()
        print(f"agenthive: openpi websocket protocol on ws://{args.host}:{bridge.port}", flush=True)
    print(f"agenthive: serving {args.policy} on {endpoint}", flush=True)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: server.stop())
    server.serve_forever()
    if bridge is not None:
        bridge.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
