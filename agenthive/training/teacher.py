"""A served teacher policy in PPO's loss: VLA-guided RL in the manner of Refined Policy Distillation (RPD).

``scripts/train.py --algo ppo --teacher HOST:PORT`` adds one more named term to PPO's loss,
``loss_teacher = coef(frames) * L(student, teacher action)``:

* ``mse`` / ``l1``: between the student's deterministic action (the tanh of its Gaussian
  mean, scaled to the action bounds) and the teacher's. MSE pulls towards the mean of the
  teacher's answers, L1 towards their median: for a teacher whose errors are zero-median
  noise, clipped at the bounds, only L1 recovers its clean action
  (``test_teacher.py::test_l1_pulls_the_student_to_a_noisy_teachers_clean_action...``);
* ``nll``: minus the student's log-likelihood of the teacher's action (behaviour cloning).

``coef`` is ``--teacher-coef`` annealed over ``--total-frames``: ``none`` (constant),
``linear`` (down to 0) or ``cosine`` (half a cosine down to 0).

The teacher is a policy served by ``python -m agenthive start-server`` (agenthive's own
protocol), queried in the update through :class:`agenthive.serving.PolicyClient`: one
request per minibatch, with the observations the teacher announces, of which the first
action of each chunk is used. Unlike RPD, which asks again for every minibatch of every
epoch, the teacher's answer for each transition of the batch is cached across the PPO
epochs: the teacher is asked once per transition, which spares a slow server
``ppo_epochs - 1`` of every ``ppo_epochs`` requests (the observations do not change, so a
deterministic teacher would answer the same).

Its observations are the env's keys of the same names, or renamed by ``--teacher-keys
TEACHER_KEY=ENV_KEY``. ``--teacher-protocol openpi`` asks an openpi websocket server
instead (:class:`agenthive.serving.openpi.OpenPIClient`): openpi announces no observation
names, so ``--teacher-keys`` names them all, and it has no batching, so each transition is
one request on its own connection (a new episode each: the transitions of a minibatch are
not in order). A teacher that reads images while the student reads state (a VLA guiding a
state-based student, as in RPD) gets them from ``--teacher-camera CAMERA``: the env also
renders that camera at ``--teacher-image-size`` into ``"teacher_image"`` (uint8 ``[H, W, 3]``),
which the batch keeps for the update and the student does not read (``--teacher-keys
image=teacher_image`` when the teacher calls it ``image``). ``Teacher.requests`` and
``Teacher.request_seconds`` count what the teacher cost the run (train.py prints them at
the end).
"""
from __future__ import annotations

import math
import time

import numpy as np
import torch


ANNEALS = ("none", "linear", "cosine")
LOSSES = ("mse", "l1", "nll")
PROTOCOLS = ("agenthive", "openpi")


class TeacherLost(RuntimeError):
    """The teacher stopped answering during training."""


def parse_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise SystemExit(f"--teacher {address!r}: expected HOST:PORT of a policy served by `python -m agenthive start-server`")
    return host, int(port)


def parse_keys(text: str) -> dict[str, str]:
    """``--teacher-keys TEACHER_KEY=ENV_KEY[,...]`` as ``{teacher key: env key}`` (empty text: no renaming)."""
    keys = {}
    for pair in filter(None, (p.strip() for p in text.split(","))):
        teacher_key, equals, env_key = (part.strip() for part in pair.partition("="))
        if not equals or not teacher_key or not env_key or teacher_key in keys:
            raise SystemExit(f"--teacher-keys {text!r}: expected TEACHER_KEY=ENV_KEY[,...], each teacher key once "
                             f"(e.g. state=observation); {pair!r} is not")
        keys[teacher_key] = env_key
    return keys


def check_teacher_args(args) -> None:
    """Refuses teacher flags that cannot run, saying why."""
    if not args.teacher:
        if args.teacher_camera:
            raise SystemExit(f"--teacher-camera {args.teacher_camera!r} keeps images for a teacher: expected --teacher HOST:PORT too")
        return
    if args.algo != "ppo":
        raise SystemExit(f"--teacher guides PPO's update (RPD); --algo {args.algo!r} is not supported: use --algo ppo.")
    parse_address(args.teacher)
    if args.teacher_anneal not in ANNEALS:
        raise SystemExit(f"--teacher-anneal {args.teacher_anneal!r}: expected one of {', '.join(ANNEALS)}")
    if args.teacher_loss not in LOSSES:
        raise SystemExit(f"--teacher-loss {args.teacher_loss!r}: expected one of {', '.join(LOSSES)}")
    if args.teacher_timeout <= 0:
        raise SystemExit(f"--teacher-timeout {args.teacher_timeout}: expected seconds > 0")
    if args.teacher_coef < 0:
        raise SystemExit(f"--teacher-coef {args.teacher_coef}: expected a weight >= 0")
    if args.teacher_protocol not in PROTOCOLS:
        raise SystemExit(f"--teacher-protocol {args.teacher_protocol!r}: expected one of {', '.join(PROTOCOLS)}")
    if args.teacher_camera and (args.observation != "state" or args.teacher_image_size <= 0):
        raise SystemExit(f"--teacher-camera {args.teacher_camera!r}: expected --observation state (the student reads state, "
                         f"the teacher images) and --teacher-image-size > 0; got --observation {args.observation!r} "
                         f"and --teacher-image-size {args.teacher_image_size}")
    if not parse_keys(args.teacher_keys) and args.teacher_protocol == "openpi":
        raise SystemExit("--teacher-protocol openpi: openpi servers do not announce their observation names; name each with "
                         "--teacher-keys TEACHER_KEY=ENV_KEY[,...] (e.g. observation/state=observation)")


def teacher_coefficient(coef: float, anneal: str, frames: int, total_frames: int) -> float:
    """``coef`` at ``frames`` of ``total_frames``, annealed by ``anneal`` (none, linear or cosine) towards 0."""
    progress = min(max(frames / total_frames, 0.0), 1.0)
    if anneal == "linear":
        return coef * (1.0 - progress)
    if anneal == "cosine":
        return coef * 0.5 * (1.0 + math.cos(math.pi * progress))
    return coef


class Teacher:
    """A served policy's actions for the transitions of a batch, cached across PPO epochs.

    Args:
        address: ``HOST:PORT`` of the policy server.
        observation_spec, action_spec: the env's, checked against what the teacher announces.
        timeout: seconds to wait for each reply; a teacher silent that long is lost.
        instruction: the language instruction, for a teacher that takes one (a VLA).
        keys: ``{teacher's observation name: env key}`` for the names that differ
            (``--teacher-keys``); the others are read from the env key of the same name.
            An openpi teacher announces no names: ``keys`` names every observation it reads.
        protocol: ``"agenthive"`` (a ``start-server`` policy, asked one batched request per
            minibatch) or ``"openpi"`` (openpi's websocket servers: one observation per
            request and connection, as openpi has no batching; the action's shape is checked
            by one request for zero observations at the start).

    Attributes:
        requests, request_seconds: how many requests were sent to the teacher in training and
            the wall time spent waiting for their replies (the teacher's cost to the run).

    Raises:
        SystemExit: nothing answers at ``address``, ``keys`` names observations the teacher
            does not announce or the env does not have, or the teacher's observations or
            action do not match the env's.
    """

    def __init__(self, address: str, *, observation_spec, action_spec, timeout: float = 30.0, instruction: str = "",
                 keys: dict[str, str] | None = None, protocol: str = "agenthive"):
        self.address, self.instruction, self.protocol = address, instruction or None, protocol
        self.client = _connect(address, protocol, timeout)
        try:
            if protocol == "openpi":
                self.env_keys = self._openpi_keys(dict(keys or {}), observation_spec, action_spec)
            else:
                self.env_keys = self._env_keys(self.client.metadata, dict(keys or {}), observation_spec, action_spec)
        except SystemExit:
            self.client.close()
            raise
        self.low, self.high = action_spec.space.low, action_spec.space.high
        self.requests, self.request_seconds = 0, 0.0
        self.cache = self.known = None
        self.success = None  # its evaluation (train.py: evaluate_teacher at the start)

    def _env_keys(self, metadata, keys: dict[str, str], observation_spec, action_spec) -> dict[str, str]:
        """``{teacher's observation name: env key}`` for every observation the teacher reads, checked against both sides."""
        where, env_keys = f"--teacher {self.address}: policy {metadata.name!r}", sorted(map(str, observation_spec.keys()))
        unknown_teacher = sorted(set(keys) - set(metadata.observations))
        unknown_env = sorted(set(keys.values()) - set(env_keys))
        if unknown_teacher or unknown_env:
            raise SystemExit(f"--teacher-keys: {where} announces no {unknown_teacher} observations (it reads "
                             f"{sorted(metadata.observations)}); the env has no {unknown_env} keys (it has {env_keys}). "
                             "Expected TEACHER_KEY=ENV_KEY pairs from those.")
        mapping = {name: keys.get(name, name) for name in metadata.observations}
        shared = sorted(key for key in set(mapping.values()) if list(mapping.values()).count(key) > 1)
        if shared:
            raise SystemExit(f"--teacher-keys: {where} would read env keys {shared} under two names ({mapping}); "
                             "expected one teacher observation per env key.")
        missing = sorted(name for name, key in mapping.items() if key not in env_keys)
        action_dim = action_spec.shape[-1]
        if missing or tuple(metadata.action_shape) != (action_dim,):
            raise SystemExit(f"{where} reads {dict(metadata.observations)} and acts {tuple(metadata.action_shape)}; the env "
                             f"has no {missing} observations (it has {env_keys}) or acts ({action_dim},). The teacher's "
                             "observations must be the env's keys, or be renamed with --teacher-keys TEACHER_KEY=ENV_KEY; "
                             "camera images: --teacher-camera CAMERA keeps one camera's under 'teacher_image'.")
        layouts = {name: ((tuple(metadata.observations[name][0]), metadata.observations[name][1]),
                          (tuple(observation_spec[key].shape), str(observation_spec[key].dtype).removeprefix("torch.")))
                   for name, key in mapping.items()}
        wrong = {name: f"{want} from env key {mapping[name]!r} of {have}" for name, (want, have) in layouts.items() if want != have}
        if wrong:
            raise SystemExit(f"{where} reads observations of other shapes or dtypes than the env's: {wrong}. Expected the same "
                             "(images: --teacher-image-size sets the height and width of 'teacher_image').")
        if metadata.takes_instruction and not self.instruction:
            raise SystemExit(f"{where} takes a language instruction: pass --teacher-instruction.")
        return mapping

    def _openpi_keys(self, keys: dict[str, str], observation_spec, action_spec) -> dict[str, str]:
        """``keys``, checked against the env; the openpi teacher's action shape, checked by asking it once."""
        env_keys = sorted(map(str, observation_spec.keys()))
        unknown_env = sorted(set(keys.values()) - set(env_keys))
        if not keys or unknown_env:
            raise SystemExit(f"--teacher-keys: the env has no {unknown_env} keys (it has {env_keys}); the openpi teacher at "
                             f"{self.address} reads only the observations named there: expected TEACHER_KEY=ENV_KEY pairs.")
        zeros = {name: observation_spec[key].zero().unsqueeze(0).cpu().numpy() for name, key in keys.items()}
        try:
            actions = np.asarray(self.client.act(zeros, instruction=self.instruction)["actions"])
        except Exception as error:  # noqa: BLE001  (a refused observation, a timeout: the teacher cannot be used)
            raise SystemExit(f"--teacher {self.address} (openpi): a request with observations {sorted(keys)} "
                             f"failed ({type(error).__name__}: {error})") from None
        if actions.ndim != 3 or actions.shape[-1] != action_spec.shape[-1]:
            raise SystemExit(f"--teacher {self.address} (openpi): answered actions of shape {actions.shape[1:]}; expected "
                             f"(chunk, {action_spec.shape[-1]}) for the env's action of {action_spec.shape[-1]}")
        return keys

    def new_batch(self, size: int, device) -> None:
        """Forgets the previous batch's answers (a new batch of ``size`` transitions follows)."""
        self.cache = torch.zeros(size, *self.low.shape, device=device)
        self.known = torch.zeros(size, dtype=torch.bool, device=device)

    def actions(self, data, index: torch.Tensor) -> torch.Tensor:
        """The teacher's actions for ``data[index]`` (a minibatch of the batch), asking only for those not asked yet."""
        ask = index[~self.known[index]]
        if ask.numel():
            obs = {name: data[key][ask].cpu().numpy() for name, key in self.env_keys.items()}
            started = time.perf_counter()
            try:
                reply = self.client.act(obs, instruction=self.instruction)
            except Exception as error:  # noqa: BLE001  (a timeout, a dead server, a refused request: the run cannot go on)
                raise TeacherLost(f"the teacher at {self.address} stopped answering ({type(error).__name__}: {error})") from error
            finally:
                self.requests += 1
                self.request_seconds += time.perf_counter() - started
            first = np.array(reply["actions"])[:, 0]  # a copy: torch wants writable memory
            self.cache[ask] = torch.as_tensor(first, dtype=self.cache.dtype, device=self.cache.device)
            self.known[ask] = True
        return self.cache[index]

    def close(self) -> None:
        self.client.close()


def _connect(address: str, protocol: str, timeout: float):
    """A ``PolicyClient`` (agenthive) or an ``OpenPIClient`` (openpi) to ``address``; SystemExit naming it when nothing answers."""
    host, port = parse_address(address)
    try:
        if protocol == "openpi":
            from agenthive.serving.openpi import OpenPIClient

            return OpenPIClient(host, port, timeout=timeout)
        from agenthive.serving.client import PolicyClient  # here: training without a teacher needs no pyzmq

        return PolicyClient(host, port, timeout=timeout, ready_timeout=timeout)
    except Exception as error:  # noqa: BLE001  (any failure to connect is reported the same way)
        how = "openpi's serve_policy.py, or start-server --openpi-port" if protocol == "openpi" else "python -m agenthive start-server"
        raise SystemExit(f"--teacher {address}: no {'openpi ' if protocol == 'openpi' else ''}policy server answered there ({error}). "
                         f"Start one with `{how} ... --port {port}`.") from None


def teacher_loss(actor, minibatch, target: torch.Tensor, kind: str) -> torch.Tensor:
    """``L`` between the student ``actor`` on ``minibatch`` and the teacher's actions ``target`` (mean over the minibatch)."""
    dist = actor.get_dist(minibatch.select(*actor.in_keys).clone())
    if kind == "nll":
        low, high = dist.low, dist.high
        margin = 1e-4 * (high - low)  # the tanh-Gaussian has no density on its bounds
        return -dist.log_prob(target.clamp(low + margin, high - margin)).mean()
    mean = dist.deterministic_sample
    error = (mean - target).abs() if kind == "l1" else (mean - target).pow(2)
    return error.sum(-1).mean()


def evaluate_teacher(address: str, env_config, episodes: int, *, seed: int = 0, timeout: float = 30.0, instruction: str = "",
                     keys: dict[str, str] | None = None, protocol: str = "agenthive", view: dict | None = None) -> dict[str, float]:
    """The served teacher's success rates and mean return on ``episodes`` episodes of ``env_config`` (the student's evaluation rules).

    ``keys``: ``{teacher's observation name: env key}`` for every observation it reads (:attr:`Teacher.env_keys`);
    None: the env's keys of the same names. ``view``: more keywords for ``make_env`` (:func:`teacher_view`).
    """
    from agenthive.env_config import make_env
    from agenthive.evaluation.metrics import episode_records, run_episodes, success_rates
    from agenthive.modules import RemotePolicyModule

    host, port = parse_address(address)
    env = make_env(env_config, **(view or {}))
    in_keys = {env_key: name for name, env_key in keys.items()} if keys else None
    policy = RemotePolicyModule(host, port, in_keys=in_keys, timeout=timeout, instruction=instruction or None, protocol=protocol,
                                observation_spec=env.observation_spec, action_spec=env.action_spec)
    try:
        records = episode_records(run_episodes(env, policy, episodes, seed=seed), env_config.success_steps)
    finally:
        policy.close()
        env.close()
    return {**success_rates(records), "return": sum(r["return"] for r in records) / max(len(records), 1)}


def teacher_view(args) -> dict:
    """``make_env``'s keywords for the envs a teacher reads (``--teacher-camera``: its images under ``"teacher_image"``)."""
    if not (args.teacher and args.teacher_camera):
        return {}
    return {"teacher_camera": args.teacher_camera, "teacher_image_size": args.teacher_image_size}
