"""``python -m agenthive <command> ...``: the command-line entry point.

Each command lives in its own module and is imported only when called, so commands
that must run without torch (``start-server``) never import it.
"""
import importlib
import sys

# command -> (module, function, one-line help). The function takes the remaining argv.
COMMANDS = {
    "setup-robohive": (
        "agenthive.envs.robohive_assets",
        "main",
        "make RoboHive's simulation assets (simhive) available to robohive",
    ),
    "start-server": ("agenthive.serving.cli", "main", "serve a policy to RemotePolicyModule clients (no torch needed)"),
    "serve-env": ("agenthive.remote_env.server", "main", "serve an environment to RemoteEnv clients (one instance per client)"),
    "collect-worker": ("agenthive.distributed", "main", "join a learner's distributed collector as a collection worker (docs/multi_host.md)"),
    "eval": ("agenthive.evaluation.cli", "main", "evaluate a checkpoint, a served policy or a range of checkpoints; summary, plot, videos"),
}


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        width = max(map(len, COMMANDS))
        lines = [f"  {name:<{width}}  {help_}" for name, (_, _, help_) in COMMANDS.items()]
        msg = "usage: python -m agenthive <command> [args...]\n\ncommands:\n" + "\n".join(lines)
        if argv and argv[0] not in ("-h", "--help"):
            print(f"unknown command {argv[0]!r}\n\n{msg}", file=sys.stderr)
            return 2
        print(msg)
        return 0
    module, function, _ = COMMANDS[argv[0]]
    return getattr(importlib.import_module(module), function)(argv[1:]) or 0


if __name__ == "__main__":
    sys.exit(main())
