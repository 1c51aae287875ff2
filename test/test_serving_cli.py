"""``start-server``'s command line: --kwargs as JSON or Python literals, one-line keyword
errors, and policies that fail to load served with the reason (the ``agents`` project's
README commands, pasted as they are)."""
import re
import subprocess
import sys
import time

import pytest
import zmq

from agenthive.serving import PolicyClient, wire
from agenthive.serving.cli import parse_kwargs
from agenthive.serving.policies import PolicyArgumentError, make_policy
from agenthive.serving.policy import Policy
from helpers.servers import PolicyServerProcess

# the `agents` project's README commands, verbatim but for host and port
AGENTS_OCTO = '{"checkpoint_path": "hf://Juelg/octo-base-1.5-finetuned-maniskill", "checkpoint_step": None, "horizon": 1, "unnorm_key": []}'


def start_server(*args):
    return subprocess.run([sys.executable, "-m", "agenthive", "start-server", *args], capture_output=True, text=True, timeout=60)


def test_kwargs_are_json_or_python_literals_never_code():
    assert parse_kwargs(AGENTS_OCTO, example="{}") == {
        "checkpoint_path": "hf://Juelg/octo-base-1.5-finetuned-maniskill", "checkpoint_step": None, "horizon": 1, "unnorm_key": [],
    }
    assert parse_kwargs('{"a": true, "b": null}', example="{}") == {"a": True, "b": None}
    assert parse_kwargs("{'a': (1, 2), 'b': False}", example="{}") == {"a": (1, 2), "b": False}
    for text, match in [
        ("{'a': __import__('os').getpid()}", "neither JSON .* nor a Python literal"),
        ("{'a': open('/etc/passwd')}", "neither JSON .* nor a Python literal"),
        ("[1, 2]", "is a list: expected an object"),
        ("{1: 2}", "expected an object with string keys"),
    ]:
        with pytest.raises(SystemExit, match=match):
            parse_kwargs(text, example='{"obs_dim": 21}')


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        ('{"obs_dim": 3, "act_dim": 2}', "policy 'mlp' (MLPPolicy) takes no keyword 'act_dim'; it accepts: obs_dim, action_dim, chunk_length"),
        ('{"obs_dim": 3}', "policy 'mlp' (MLPPolicy) needs 'action_dim' in --kwargs; it accepts: obs_dim, action_dim"),
    ],
)
def test_a_keyword_mistake_is_one_line_naming_the_accepted_ones(kwargs, expected):
    out = start_server("mlp", "--port", "0", "--kwargs", kwargs)
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert out.stderr.count("\n") == 1 and out.stderr.startswith(expected), out.stderr


def test_unknown_policies_and_unparsable_kwargs_are_one_line_too():
    out = start_server("nope")
    assert out.returncode != 0 and out.stderr.startswith("unknown policy 'nope'") and "Traceback" not in out.stderr
    out = start_server("no_such_module:Policy")
    assert out.returncode != 0 and "policy 'no_such_module:Policy' cannot be imported: ModuleNotFoundError" in out.stderr
    out = start_server("mlp", "--kwargs", "{obs_dim: 3}")
    assert out.returncode != 0 and "--kwargs is neither JSON" in out.stderr and "Traceback" not in out.stderr


class RaisingConstructorPolicy(Policy):
    """Its constructor raises, as one that loads its checkpoint there would without network."""

    def __init__(self, checkpoint="hf://nowhere/model"):
        raise OSError(f"cannot fetch {checkpoint}: no network")


def health(port):
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.connect(f"tcp://127.0.0.1:{port}")
    sock.send_multipart(wire.encode({"v": wire.VERSION, "type": "health", "id": 1}))
    assert sock.poll(5000), "no health reply"
    reply = wire.decode(sock.recv_multipart())
    sock.close(linger=0)
    return reply


def assert_served_with_reason(server, reason):
    """The server stays up, health says why the policy is not ready, clients get that at once."""
    deadline = time.monotonic() + 30
    while (reply := health(server.port))["error"] is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert reply["ready"] is False and re.search(reason, reply["error"]), reply
    start = time.monotonic()
    with pytest.raises(RuntimeError, match=f"the policy on tcp://127.0.0.1:{server.port} failed to initialize: {reason}"):
        PolicyClient("127.0.0.1", server.port, timeout=5.0, ready_timeout=60.0)
    assert time.monotonic() - start < 5.0  # the reason, not a timeout


def test_the_agents_octo_command_starts_a_server_that_reports_why_loading_failed():
    # this venv has no Octo (and no network): loading fails, serving does not
    with PolicyServerProcess("octo", "--host", "localhost", kwargs=AGENTS_OCTO) as server:
        assert_served_with_reason(server, "ModuleNotFoundError: No module named '(jax|octo)'")


def test_a_constructor_that_raises_is_served_as_a_load_failure():
    with PolicyServerProcess("test_serving_cli:RaisingConstructorPolicy") as server:
        assert_served_with_reason(server, re.escape("OSError: cannot fetch hf://nowhere/model: no network"))


def test_keyword_aliases_rename_and_a_keyword_given_twice_is_refused():
    assert make_policy("lerobot", {"checkpoint_path": "/ckpt", "seed": 3}).policy_path == "/ckpt"  # the agents project's name
    with pytest.raises(PolicyArgumentError, match="policy 'lerobot' \\(LeRobotPolicy\\) got 'policy_path' twice \\(once as 'checkpoint_path'\\)"):
        make_policy("lerobot", {"policy_path": "/a", "checkpoint_path": "/b"})
    with pytest.raises(PolicyArgumentError, match="takes no keyword 'checkpoint'; it accepts: policy_path, device, seed, checkpoint_path"):
        make_policy("lerobot", {"checkpoint": "/a"})
