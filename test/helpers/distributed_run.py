"""Runs one agenthive.distributed collector on real RoboHive envs and prints what each batch held.

    python test/helpers/distributed_run.py '{"backend": "distributed", "sync": false, "tcp_port": 23456}'

The policy acts with zero weights and a bias of ``version / 10``, so every action a batch
holds says which weights made it. The learner bumps the version (in place) after batches
``UPDATES`` and calls ``update_policy_weights_()``. One JSON line per batch on stdout:
``{"batch", "version", "shape", "actions": sorted distinct action values per worker row}``.
"""
import functools
import json
import sys

import agenthive  # noqa: F401  (before torchrl: importing agenthive picks MUJOCO_GL)
import torch
from tensordict.nn import TensorDictModule
from torch import nn

from agenthive.distributed import distributed_collector
from agenthive.envs import RoboHiveEnv

UPDATES = {2: 2, 6: 3}  # after batch i, the learner moves to version v


def main(options):
    torch.set_num_threads(1)
    policy = TensorDictModule(nn.Linear(21, 9), in_keys=["observation"], out_keys=["action"])
    with torch.no_grad():
        policy.module.weight.zero_()
        policy.module.bias.fill_(0.1)
    version = 1
    collector = distributed_collector(
        functools.partial(RoboHiveEnv, "FrankaReachRandom-v0"), policy, num_workers=2,
        frames_per_batch=100, total_frames=100 * options.pop("batches", 12), **options,
    )
    try:
        for i, batch in enumerate(collector):
            rows = batch["action"].reshape(-1, 50, 9) if batch.ndim > 1 else batch["action"].reshape(1, -1, 9)
            actions = [sorted({round(a, 4) for a in row.flatten().tolist()}) for row in rows]
            print(json.dumps({"batch": i, "version": version, "shape": list(batch.shape), "actions": actions}), flush=True)
            if i in UPDATES:
                version = UPDATES[i]
                with torch.no_grad():
                    policy.module.bias.fill_(version / 10)
                collector.update_policy_weights_()
    finally:
        collector.shutdown()
    print(json.dumps({"done": True}), flush=True)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
