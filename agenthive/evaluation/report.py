"""The summary files of an evaluation: CSVs, plots, and the table printed for many checkpoints."""
from __future__ import annotations

import csv
from pathlib import Path


def write_csv(path: Path, rows: list[dict]) -> None:
    """``rows`` as a CSV whose columns are every key of any row, in the order first seen."""
    fields = list(dict.fromkeys(k for row in rows for k in row))
    with open(path, "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_envs(summary: dict, path: Path) -> None:
    """Bars of success rate, return and episode length of one policy, per env config."""
    plt = _pyplot()
    envs = summary["envs"]
    names = [e["name"] for e in envs]
    fig, axes = plt.subplots(1, 3, figsize=(4 + 1.2 * len(envs), 3.5))
    for ax, key, title in zip(axes, ("success_rate", "return_mean", "length_mean"), ("success rate", "return", "episode length")):
        ax.bar(names, [e[key] for e in envs], yerr=[e["return_std"] for e in envs] if key == "return_mean" else None)
        ax.set_title(title)
        ax.tick_params(axis="x", rotation=20)
    axes[0].set_ylim(0, 1.05)
    fig.suptitle(f"{summary['policy']}: {envs[0]['episodes']} episodes per env", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_steps(results: list[dict], failed: list[dict], path: Path, title: str) -> None:
    """Success rate and return (mean ± std) over training frames, one line per env config; failed workers in red."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for name in dict.fromkeys(r["name"] for r in results):
        rows = sorted((r for r in results if r["name"] == name), key=lambda r: r["step"])
        steps = [r["step"] for r in rows]
        axes[0].plot(steps, [r["success_rate"] for r in rows], "o-", label=name)
        mean = [r["return_mean"] for r in rows]
        std = [r["return_std"] for r in rows]
        axes[1].plot(steps, mean, "o-", label=name)
        axes[1].fill_between(steps, [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)], alpha=0.2)
    for i, f in enumerate(failed):
        axes[0].axvline(f["step"], color="red", ls=":", label="worker failed" if i == 0 else None)
    axes[0].set(xlabel="training frames", ylabel="success rate", ylim=(-0.02, 1.02))
    axes[1].set(xlabel="training frames", ylabel="return (mean ± std)")
    axes[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def print_table(results: list[dict], failed: list[dict]) -> None:
    """One line per (checkpoint, env config), then one per failed worker."""
    print(f"{'step':>10}  {'env':<28} {'success':>8} {'return':>16} {'length':>7}")
    for r in sorted(results, key=lambda r: (r["step"], r["name"])):
        ret = f"{r['return_mean']:.2f} ± {r['return_std']:.2f}"
        print(f"{r['step']:>10}  {r['name']:<28} {r['success_rate']:>8.2f} {ret:>16} {r['length_mean']:>7.1f}")
    for f in failed:
        last = f["output_tail"][-1] if f["output_tail"] else ""
        print(f"{f['step']:>10}  FAILED (exit code {f['returncode']}) {f['checkpoint']}: {last}")
