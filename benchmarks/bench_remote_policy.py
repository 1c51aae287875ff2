"""Round-trip latency and batching throughput of agenthive's policy server, next to baselines.

    .venv/bin/python benchmarks/bench_remote_policy.py

Everything runs on loopback in one go, interleaved round by round so that a noisy, shared
machine slows every contender alike:

* latency, p50 and p99, for (a) 64 float32 of state -> 8 actions and (b) two 224x224x3 uint8
  images + the state -> 8 actions, of
  - ``zmq echo``: a bare pyzmq DEALER/ROUTER echo of the very frames agenthive sends (the
    transport's floor);
  - ``agenthive tcp``: ``PolicyClient`` -> ``PolicyServer`` over TCP (shared memory off);
  - ``agenthive same-host``: the same with the automatic shared-memory fast path;
  - ``openpi websocket``: openpi-client's ``WebsocketClientPolicy`` against a server written
    like openpi's (asyncio websockets + msgpack-numpy), serving the same policy;
* throughput of 16 concurrent clients against a torch MLP (TorchRL checkpoint policy) with
  batching on (max batch 16) and off (max batch 1).
"""
import argparse
import asyncio
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
import zmq

from agenthive.serving import PolicyClient, wire
from agenthive.serving.policies.mlp import MLPPolicy

STATE_ONLY = {"obs_dim": 64, "action_dim": 8, "obs_key": "state"}
WITH_IMAGES = {**STATE_ONLY, "images": {"image_0": [224, 224, 3], "image_1": [224, 224, 3]}}


def payload(images):
    obs = {"state": np.random.default_rng(0).normal(size=(1, 64)).astype(np.float32)}
    if images:
        rng = np.random.default_rng(1)
        obs.update({name: rng.integers(0, 256, (1, 224, 224, 3), dtype=np.uint8) for name in ("image_0", "image_1")})
    return obs


# -- servers ------------------------------------------------------------------------------------


def start_agenthive(policy, kwargs, *args):
    command = [sys.executable, "-m", "agenthive", "start-server", policy, "--port", "0", "--kwargs", json.dumps(kwargs), "--log-level", "WARNING", *args]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    return process, int(process.stdout.readline().rsplit(":", 1)[1])


def zmq_echo(port_queue):
    sock = zmq.Context().socket(zmq.ROUTER)
    port_queue.put(sock.bind_to_random_port("tcp://127.0.0.1"))
    while True:
        sock.send_multipart(sock.recv_multipart(copy=False), copy=False)


def openpi_style_server(port_queue):
    """openpi's WebsocketPolicyServer loop: msgpack-numpy blobs over websockets, one policy."""
    import websockets.asyncio.server
    from openpi_client import msgpack_numpy

    policy = MLPPolicy(**WITH_IMAGES)

    async def handler(websocket):
        packer = msgpack_numpy.Packer()
        await websocket.send(packer.pack({}))
        while True:
            try:
                obs = msgpack_numpy.unpackb(await websocket.recv())
            except websockets.ConnectionClosed:
                return
            action = policy.act(obs, None)
            action["server_timing"] = {"infer_ms": 0.0}
            await websocket.send(packer.pack(action))

    async def main():
        async with websockets.asyncio.server.serve(handler, "127.0.0.1", 0, compression=None, max_size=None) as server:
            port_queue.put(server.sockets[0].getsockname()[1])
            await server.serve_forever()

    asyncio.run(main())


def start_process(target):
    queue = multiprocessing.Queue()
    process = multiprocessing.Process(target=target, args=(queue,), daemon=True)
    process.start()
    return process, queue.get(timeout=60)


# -- latency ------------------------------------------------------------------------------------


def latency(rounds, per_round):
    echo_process, echo_port = start_process(zmq_echo)
    ws_process, ws_port = start_process(openpi_style_server)
    servers = {"a": start_agenthive("mlp", STATE_ONLY), "b": start_agenthive("mlp", WITH_IMAGES)}
    from openpi_client.websocket_client_policy import WebsocketClientPolicy

    echo = zmq.Context.instance().socket(zmq.DEALER)
    echo.connect(f"tcp://127.0.0.1:{echo_port}")
    websocket = WebsocketClientPolicy("127.0.0.1", ws_port)
    contenders, clients = {}, []
    for name, (_, port) in servers.items():
        obs = payload(images=name == "b")
        tcp = PolicyClient("127.0.0.1", port, shared_memory=False)
        same_host = PolicyClient("127.0.0.1", port)
        clients += [tcp, same_host]
        frames = wire.encode({"v": wire.VERSION, "type": "act", "id": 1, "sessions": ["s"], "reset": None, "instruction": None, "obs": obs})
        unbatched = {key: value[0] for key, value in obs.items()}

        def echo_once(frames=frames):
            echo.send_multipart(frames, copy=False)
            echo.recv_multipart(copy=False)

        contenders[name] = {
            "zmq echo": echo_once,
            "agenthive tcp": lambda client=tcp, obs=obs: client.act(obs, sessions=["s"]),
            "agenthive same-host": lambda client=same_host, obs=obs: client.act(obs, sessions=["s"]),
            "openpi websocket": lambda obs=unbatched: websocket.infer(obs),
        }
        assert same_host._shm, "the shared-memory fast path should be on for a loopback client"
    samples = {(name, who): [] for name, group in contenders.items() for who in group}
    for name, group in contenders.items():  # warm up
        for call in group.values():
            for _ in range(100):
                call()
    for _ in range(rounds):
        for name, group in contenders.items():
            for who, call in group.items():
                times = samples[name, who]
                for _ in range(per_round):
                    start = time.perf_counter()
                    call()
                    times.append(time.perf_counter() - start)
    for group in clients:
        group.close()
    for process, _ in servers.values():
        process.terminate()
    echo_process.terminate()
    ws_process.terminate()
    return {key: (np.percentile(t, 50) * 1e6, np.percentile(t, 99) * 1e6) for key, t in samples.items()}


# -- batching -----------------------------------------------------------------------------------


def save_mlp(path, hidden):
    import torch
    from tensordict.nn import TensorDictModule

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(64, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 8))
    torch.save(TensorDictModule(net, in_keys=["state"], out_keys=["action"]), path)


def throughput(port, clients, seconds):
    """Requests per second of ``clients`` closed-loop clients, each one environment."""
    counts = [0] * clients
    stop = threading.Event()
    barrier = threading.Barrier(clients + 1)

    def run(i):
        with PolicyClient("127.0.0.1", port, timeout=60) as client:
            obs = payload(images=False)
            client.act(obs, sessions=[f"c{i}"])
            barrier.wait()
            while not stop.is_set():
                client.act(obs, sessions=[f"c{i}"])
                counts[i] += 1

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    [t.start() for t in threads]
    barrier.wait()
    start = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    [t.join() for t in threads]
    return sum(counts) / (time.perf_counter() - start)


def batching(rounds, seconds, clients, hidden):
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "mlp.pt")
        save_mlp(path, hidden)
        kwargs = {"path": path, "observations": {"state": [[64], "float32"]}, "num_threads": 1}
        servers = {"on": start_agenthive("torchrl-checkpoint", kwargs, "--max-batch", str(clients)), "off": start_agenthive("torchrl-checkpoint", kwargs, "--max-batch", "1")}
        results = {"on": [], "off": []}
        for _ in range(rounds):
            for mode, (_, port) in servers.items():
                results[mode].append(throughput(port, clients, seconds))
        for process, _ in servers.values():
            process.terminate()
    return {mode: float(np.median(r)) for mode, r in results.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=20, help="interleaved latency rounds")
    parser.add_argument("--per-round", type=int, default=100, help="requests per contender per round")
    parser.add_argument("--batching-rounds", type=int, default=3, help="interleaved throughput rounds (batching on, off)")
    parser.add_argument("--batching-seconds", type=float, default=3.0, help="length of one throughput measurement")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients in the throughput test")
    parser.add_argument("--hidden", type=int, default=1024, help="hidden width of the torch MLP served in the throughput test")
    args = parser.parse_args()

    lat = latency(args.rounds, args.per_round)
    print(f"latency, loopback, {args.rounds} interleaved rounds x {args.per_round} requests (microseconds)\n")
    print("| payload | contender | p50 | p99 | p50 / zmq echo | openpi websocket p50 / p50 |")
    print("|---|---|---|---|---|---|")
    for name, label in (("a", "(a) 64 float32 -> 8 actions"), ("b", "(b) 2x 224x224x3 uint8 + state")):
        floor, websocket = lat[name, "zmq echo"][0], lat[name, "openpi websocket"][0]
        for who in ("zmq echo", "agenthive tcp", "agenthive same-host", "openpi websocket"):
            p50, p99 = lat[name, who]
            print(f"| {label} | {who} | {p50:.0f} | {p99:.0f} | {p50 / floor:.2f}x | {websocket / p50:.2f}x |")
    rates = batching(args.batching_rounds, args.batching_seconds, args.clients, args.hidden)
    print(f"\nthroughput, {args.clients} concurrent clients, torch MLP 64-{args.hidden}-{args.hidden}-8 (1 thread), median of {args.batching_rounds} rounds\n")
    print("| batching | requests/s |\n|---|---|")
    print(f"| on (max batch {args.clients}) | {rates['on']:.0f} |\n| off (max batch 1) | {rates['off']:.0f} |")
    print(f"\nbatching on / off: {rates['on'] / rates['off']:.2f}x")


if __name__ == "__main__":
    main()
