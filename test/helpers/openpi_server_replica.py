"""A replica of openpi's ``WebsocketPolicyServer`` (openpi/serving/websocket_policy_server.py),
using openpi-client's own msgpack_numpy: what pi0 served by openpi looks like on the wire.

``python test/helpers/openpi_server_replica.py PORT`` serves a policy whose actions (a chunk of 5)
are [len(prompt), sum(state), step] so tests can check what arrived.
"""
import asyncio
import sys
import time
import traceback

import numpy as np
import websockets.asyncio.server
import websockets.frames
from openpi_client import msgpack_numpy


def infer(obs):
    state = obs["observation/state"]
    chunk = np.zeros((5, 3), np.float32)
    chunk[:, 0], chunk[:, 1], chunk[:, 2] = len(obs.get("prompt", "")), state.sum(), np.arange(5)
    return {"actions": chunk}


async def handler(websocket):
    packer = msgpack_numpy.Packer()
    await websocket.send(packer.pack({"policy": "replica", "action_horizon": 5}))
    while True:
        try:
            start = time.monotonic()
            action = infer(msgpack_numpy.unpackb(await websocket.recv()))
            action["server_timing"] = {"infer_ms": (time.monotonic() - start) * 1000}
            await websocket.send(packer.pack(action))
        except websockets.ConnectionClosed:
            break
        except Exception:
            await websocket.send(traceback.format_exc())
            await websocket.close(code=websockets.frames.CloseCode.INTERNAL_ERROR, reason="Internal server error.")
            raise


async def main(port):
    async with websockets.asyncio.server.serve(handler, "127.0.0.1", port, compression=None, max_size=None) as server:
        print(f"serving on {server.sockets[0].getsockname()[1]}", flush=True)
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
