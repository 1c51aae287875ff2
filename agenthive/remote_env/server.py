"""``EnvServer``: serves TorchRL environments to ``RemoteEnv`` clients over the agenthive wire.

For a simulator or a robot that must run on its own host (a real-time kernel, a driver, a
licence) while the learner runs elsewhere. Each client gets its own env instance, made by
the function the server was given (``EnvServer(lambda: RoboHiveEnv(...))``); a server given
an env object serves that one instance to one client at a time. Specs travel in the
handshake; ``reset``/``step``/``seed``/``close`` act on the client's instance (see ``wire``
for the messages and ``codec`` for how specs and TensorDicts are encoded).

One thread owns the socket and steps the instances one request at a time; start several
servers, or serve a batched env (a ``ParallelEnv``, a GPU ManiSkill env), to step in
parallel. An instance that no request touched for ``idle_timeout_s`` (its client vanished)
is freed; a freed instance is kept as the next client's spare (making RoboHive and
ManiSkill envs takes seconds) and the rest are closed. Every request is validated before
it reaches an env, and whatever an env raises becomes an error reply for that request
alone: bad messages never stop the server.

Steps call the env's ``_step`` and torchrl's completion of its output (``_step_proc_data``:
reward shapes, missing done keys); the client's ``EnvBase.step`` does the rest of torchrl's
bookkeeping (``step_mdp``, automatic resets) once; resets call ``reset``.

This module imports torch (it serves TorchRL envs); it builds on ``agenthive.serving``'s
router and wire, which do not import it.

Example (a gymnasium env here; ``RemoteEnv``'s docstring serves RoboHive with a camera):
    >>> import threading
    >>> from agenthive.remote_env import RemoteEnv
    >>> server = EnvServer(env_factory("Pendulum-v1", backend="gym"), port=0)
    >>> endpoint = server.bind()  # port 0 picked a free port: server.port
    >>> thread = threading.Thread(target=server.serve_forever, daemon=True); thread.start()
    >>> env = RemoteEnv("127.0.0.1", server.port)
    >>> env.rollout(3)["next", "observation"].shape
    torch.Size([3, 3])
    >>> env.close(); server.stop(); thread.join()
"""
import argparse
import functools
import importlib
import logging
import signal
import sys
import time
import uuid

import numpy as np
from torchrl.envs import EnvBase

from agenthive.config_args import add_server_arguments, parse_kwargs
from agenthive.env_config import BACKENDS as SIMULATORS
from agenthive.env_config import make_simulator
from agenthive.remote_env import codec
from agenthive.remote_env.codec import SPEC_NAMES
from agenthive.serving import wire
from agenthive.serving.router import RouterServer

logger = logging.getLogger(__name__)

BACKENDS = (*SIMULATORS, "gym", "factory")  # what serve-env's env argument may name


class _Instance:
    __slots__ = ("env", "last_seen")

    def __init__(self, env, now):
        self.env = env
        self.last_seen = now


class _Refusal(Exception):
    """A request refused with ``code``; becomes an error reply."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


def _as_torchrl(env):
    """A TorchRL env for a TorchRL or gymnasium env object."""
    if isinstance(env, EnvBase):
        return env
    if hasattr(env, "step") and hasattr(env, "reset") and hasattr(env, "action_space"):
        from torchrl.envs import GymWrapper

        return GymWrapper(env)
    raise TypeError(f"cannot serve a {type(env).__name__}: expected a TorchRL EnvBase, a gymnasium env, or a function returning one")


def _key_tuple(key):
    return (key,) if isinstance(key, str) else tuple(key)


def _key_name(key):
    return key[0] if len(key) == 1 else key


def _leaves(spec):
    return {_key_tuple(key): (tuple(leaf.shape), codec.numpy_dtype(leaf.dtype)) for key, leaf in spec.items(True, True)}


class EnvServer(RouterServer):
    """Serves TorchRL (or gymnasium) envs on ``tcp://host:port``, one instance per client.

    Args:
        env: a function that makes an env (called once per client; the first env is made
            at construction, which also fixes the specs every later one must match), or an
            env object to serve to one client at a time.
        host: address to bind; loopback unless you mean to expose the env.
        port: TCP port; 0 picks a free one (read it from ``port`` after ``bind()``).
        idle_timeout_s: an instance no request touched for this long is freed.
        max_instances: most instances at once; further clients are refused.
        max_message_bytes: larger requests are refused.
        curve_secret_key: path of the server's CURVE key pair file; encrypts all traffic.
        curve_authorized_keys: folder of public key files of the clients allowed in.

    Raises:
        TypeError: ``env`` is neither an env nor a function that makes one.
        ValueError: the env has a spec that cannot be described on the wire.
    """

    serves = "env"

    def __init__(
        self,
        env,
        *,
        host="127.0.0.1",
        port=8080,
        idle_timeout_s=300.0,
        max_instances=64,
        max_message_bytes=64 << 20,
        curve_secret_key=None,
        curve_authorized_keys=None,
    ):
        super().__init__(
            host=host,
            port=port,
            max_message_bytes=max_message_bytes,
            curve_secret_key=curve_secret_key,
            curve_authorized_keys=curve_authorized_keys,
        )
        self.idle_timeout_s = idle_timeout_s
        self.max_instances = max_instances
        if isinstance(env, EnvBase) or not callable(env):
            self._factory, first = None, _as_torchrl(env)
        else:
            self._factory, first = env, _as_torchrl(env())
        self.name = repr(first)
        self._spare = first  # handed to the next client that asks for an instance
        self._instances = {}  # instance id -> _Instance
        self._input_spec, self._output_spec = first.input_spec.clone(), first.output_spec.clone()
        self.batch_size = list(first.batch_size)
        self.specs = {name: codec.spec_to_wire(getattr(first, name), name) for name in SPEC_NAMES}
        # what requests may carry, key tuple -> (shape, numpy dtype); a step needs every action
        self._actions = _leaves(first.full_action_spec)
        self._states = _leaves(first.full_state_spec)
        self._resets = {_key_tuple(key): None for key in first.reset_keys}  # "_reset" masks: any shape

    # -- the loop -------------------------------------------------------------------------------

    def _serve(self, frames):
        received = self._receive(frames)
        if received is None:
            return
        identity, message, _ = received
        request_id = message.get("id")
        try:
            reply = self._answer(message)
            reply.update({"v": wire.VERSION, "type": message["type"], "id": request_id})
        except _Refusal as refusal:
            reply = wire.error(refusal.code, str(refusal), request_id)
        except Exception:  # a bug here must not take the server down for every other client
            logger.exception("handling a %r request failed", message.get("type"))
            reply = wire.error(wire.ERROR_BAD_MESSAGE, "the server failed on this request (a server bug; see its log)", request_id)
        self._reply(identity, reply)

    def _answer(self, message):
        kind = message["type"]
        if kind == "hello":
            return {"serves": self.serves, "server": self.instance, "ready": True, "error": None, "env": self.name, "batch_size": self.batch_size, "specs": self.specs, "shm": False, "max_message_bytes": self.max_message_bytes}
        if kind == "health":
            return {"server": self.instance, "ready": True, "error": None, "instances": len(self._instances), "uptime_s": time.monotonic() - self._started}
        if kind == "make":
            return {"instance": self._make()}
        if kind == "close":
            return {"closed": self._free(message.get("instance"))}
        handlers = {"reset": self._reset, "step": self._step, "seed": self._seed}
        if kind not in handlers:
            raise _Refusal(wire.ERROR_BAD_MESSAGE, f"unknown request type {kind!r}: expected one of 'hello', 'health', 'make', 'reset', 'step', 'seed', 'close'")
        instance_id = message.get("instance")
        instance = self._instances.get(instance_id) if isinstance(instance_id, str) else None
        if instance is None:
            raise _Refusal(
                wire.ERROR_UNKNOWN_INSTANCE,
                f"env instance {instance_id!r} is not on this server: the server restarted, or freed it after "
                f"{self.idle_timeout_s:g} s without requests; reset() makes a new one",
            )
        instance.last_seen = time.monotonic()
        return handlers[kind](instance.env, message)

    def _sweep(self, now):
        for instance_id in [i for i, instance in self._instances.items() if now - instance.last_seen > self.idle_timeout_s]:
            logger.info("freeing env instance %s after %.0f s without requests", instance_id, now - self._instances[instance_id].last_seen)
            self._free(instance_id)

    def _closed(self):
        if self._factory is None:
            return  # the caller's env: theirs to close
        for env in [self._spare, *(instance.env for instance in self._instances.values())]:
            if env is not None and not env.is_closed:
                env.close()
        self._instances.clear()
        self._spare = None

    # -- instances ------------------------------------------------------------------------------

    def _make(self):
        if len(self._instances) >= self.max_instances:
            raise _Refusal(wire.ERROR_FULL, f"this server already runs {len(self._instances)} env instances (max_instances={self.max_instances})")
        env, self._spare = self._spare, None
        if env is None:
            if self._factory is None:
                raise _Refusal(
                    wire.ERROR_FULL,
                    "this server serves one env object and another client is using it: give EnvServer a function "
                    "that makes envs to serve several clients",
                )
            try:
                env = _as_torchrl(self._factory())
            except Exception as err:
                raise _Refusal(wire.ERROR_ENV, f"making the env raised {type(err).__name__}: {err}") from None
            if env.input_spec != self._input_spec or env.output_spec != self._output_spec:
                env.close()
                raise _Refusal(wire.ERROR_ENV, f"the env factory made an env whose specs differ from the first one's ({self.name})")
        instance_id = uuid.uuid4().hex
        self._instances[instance_id] = _Instance(env, time.monotonic())
        logger.info("made env instance %s (%d in use)", instance_id, len(self._instances))
        return instance_id

    def _free(self, instance_id):
        instance = self._instances.pop(instance_id, None) if isinstance(instance_id, str) else None
        if instance is None:
            return False
        if self._spare is None:
            self._spare = instance.env
        else:
            instance.env.close()
        return True

    # -- env calls ------------------------------------------------------------------------------

    def _tensordict(self, message, env, allowed, required=()):
        entries = message.get("td")
        if entries is None and not required:
            return None
        if not isinstance(entries, dict):
            raise _Refusal(wire.ERROR_BAD_INPUT, f"'td' is a {type(entries).__name__}: expected a map of entry name -> array")
        seen = set()
        for key, value in codec.leaf_entries(entries):
            expected = allowed.get(key, False)
            if expected is False:
                names = sorted(map(str, map(_key_name, allowed)))
                raise _Refusal(wire.ERROR_BAD_INPUT, f"unexpected entry {_key_name(key)!r}: this env takes {names}")
            if not isinstance(value, np.ndarray):
                raise _Refusal(wire.ERROR_BAD_INPUT, f"entry {_key_name(key)!r} is a {type(value).__name__}: expected an array")
            if expected is not None and (value.shape != expected[0] or value.dtype != expected[1]):
                raise _Refusal(wire.ERROR_BAD_INPUT, f"entry {_key_name(key)!r} has shape {value.shape} and dtype {value.dtype}: expected {expected[0]} {expected[1]}")
            seen.add(key)
        missing = sorted(map(str, map(_key_name, set(required) - seen)))
        if missing:
            raise _Refusal(wire.ERROR_BAD_INPUT, f"missing entries {missing}: a step needs every action entry")
        return codec.tensordict_from_wire(entries, self.batch_size)

    def _call(self, env, method, *args):
        try:
            return getattr(env, method)(*args)
        except Exception as err:
            raise _Refusal(wire.ERROR_ENV, f"{type(env).__name__}.{method.lstrip('_')} raised {type(err).__name__}: {err}") from None

    def _reset(self, env, message):
        td = self._tensordict(message, env, {**self._states, **self._resets})
        return {"td": codec.tensordict_to_wire(self._call(env, "reset", td))}

    def _step(self, env, message):
        td = self._tensordict(message, env, {**self._states, **self._actions}, required=self._actions)
        # torchrl's completion of the output (reward shapes, missing done keys) runs here, beside
        # the env that knows its own outputs, so that RemoteEnv (a CompleteStep) skips it
        out = self._call(env, "_step_proc_data", self._call(env, "_step", td))
        return {"td": codec.tensordict_to_wire(out)}

    def _seed(self, env, message):
        seed = message.get("seed")
        if not (seed is None or (isinstance(seed, int) and not isinstance(seed, bool))):
            raise _Refusal(wire.ERROR_BAD_INPUT, f"'seed' is a {type(seed).__name__}: expected an int or nil")
        return {"seed": self._call(env, "set_seed", seed, True)}


# -- python -m agenthive serve-env ---------------------------------------------------------------


def env_factory(env, backend="robohive", kwargs=None):
    """The function that makes the env ``serve-env`` was asked for.

    Args:
        env: a RoboHive or ManiSkill id, a gymnasium id, or ``module:function`` (``factory``).
        backend: ``"robohive"``, ``"maniskill"``, ``"gym"`` or ``"factory"``.
        kwargs: keyword arguments for the env's constructor (or the function).

    Example:
        >>> env_factory("Pendulum-v1", backend="gym", kwargs={"frame_skip": 2})().frame_skip
        2
    """
    kwargs = kwargs or {}
    if backend in SIMULATORS:
        return functools.partial(make_simulator, backend, env, **kwargs)
    if backend == "gym":
        from torchrl.envs import GymEnv

        return functools.partial(GymEnv, env, **kwargs)
    if backend == "factory":
        module, _, name = env.partition(":")
        if not name:
            raise ValueError(f"--backend factory takes module:function, got {env!r}")
        return functools.partial(getattr(importlib.import_module(module), name), **kwargs)
    raise ValueError(f"backend {backend!r}: expected one of {BACKENDS}")


def _parser():
    parser = argparse.ArgumentParser(prog="python -m agenthive serve-env", description="Serve an environment to RemoteEnv clients (one instance per client).")
    parser.add_argument("env", help="a RoboHive/ManiSkill/gymnasium id, or module:function with --backend factory")
    parser.add_argument("--backend", default="robohive", choices=BACKENDS, help="what kind of env `env` names (default: robohive)")
    parser.add_argument("--idle-timeout", type=float, default=300.0, help="free an instance after this many seconds without requests")
    parser.add_argument("--max-instances", type=int, default=64, help="most env instances at once")
    add_server_arguments(parser, port=8090, constructed="env")
    return parser


def main(argv=None):
    """``python -m agenthive serve-env <env> [options]``; prints ``agenthive: serving env ... on tcp://HOST:PORT`` once bound.

    Example:
        >>> main(["--help"])  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        SystemExit: 0
    """
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    kwargs = parse_kwargs(args.kwargs, example='{"from_pixels": true}')
    server = EnvServer(
        env_factory(args.env, args.backend, kwargs),
        host=args.host,
        port=args.port,
        idle_timeout_s=args.idle_timeout,
        max_instances=args.max_instances,
        curve_secret_key=args.curve_secret_key,
        curve_authorized_keys=args.curve_authorized_keys,
    )
    endpoint = server.bind()
    print(f"agenthive: serving env {args.env} on {endpoint}", flush=True)
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: server.stop())
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
