"""Compare the context manager's throughput under load at two git revisions, side by side.

Runs ``dyntaskmas.bench.context_load.run_load`` from a worktree of each
revision, alternating between them, so both see the same machine state.
Each measurement is its own Python process, with the revision's ``src``
first on the path, and Redis is emptied before each. Prints one row per
(store, agents) with the median commits per second and CPU milliseconds
per round of each side, and their ratio. A private redis-server on 127.0.0.1 serves the Redis rows.

Usage, from the repository root::

    .venv/bin/python scripts/bench_context_compare.py --before 838999f
    .venv/bin/python scripts/bench_context_compare.py --before HEAD~3 --after HEAD --repeats 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent

# Prints the commits per second and the process CPU seconds of one load run.
_MEASURE = """
import json, sys, time
from dyntaskmas.bench.context_load import run_load
store, agents, rounds, think_s, url = sys.argv[1:6]
cpu = time.process_time()
point = run_load(
    int(agents), store, rounds=int(rounds), think_s=float(think_s), redis_url=url or None
)
print(json.dumps({"commits_per_s": point.commits_per_s, "cpu_s": time.process_time() - cpu}))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="git revision to compare against")
    parser.add_argument("--after", default=None, help="git revision (default: the working tree)")
    parser.add_argument("--agents", default="16,64,256", help="agent counts (default: 16,64,256)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per agent (default: 5)")
    parser.add_argument(
        "--think-s",
        type=float,
        default=0.02,
        help="seconds each agent waits per round (default: 0.02)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs per side and row (default: 3)")
    parser.add_argument("--no-redis", action="store_true", help="measure the memory store only")
    args = parser.parse_args()
    agent_counts = [int(part) for part in args.agents.split(",")]

    sys.path.insert(0, str(REPOSITORY / "src"))
    from dyntaskmas.context.local_redis import local_redis, redis_available

    with tempfile.TemporaryDirectory(prefix="context-compare-") as scratch:
        trees = {
            "before": checkout(args.before, Path(scratch) / "before"),
            "after": checkout(args.after, Path(scratch) / "after") if args.after else REPOSITORY,
        }
        stores = ["memory"]
        use_redis = not args.no_redis and redis_available()
        if use_redis:
            stores.append("redis")
        try:
            with local_redis() if use_redis else _no_redis() as url:
                rows = measure_all(trees, stores, agent_counts, args, url or "")
        finally:
            for side in ("before", "after"):
                if trees[side] != REPOSITORY:
                    remove_worktree(trees[side])
    print_rows(rows, args)
    return 0


def checkout(revision: str, path: Path) -> Path:
    subprocess.run(
        ["git", "-C", str(REPOSITORY), "worktree", "add", "--detach", "-q", str(path), revision],
        check=True,
    )
    return path


def remove_worktree(path: Path) -> None:
    subprocess.run(
        ["git", "-C", str(REPOSITORY), "worktree", "remove", "--force", str(path)], check=False
    )


class _no_redis:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *_: object) -> None:
        return None


def measure_all(
    trees: dict[str, Path],
    stores: list[str],
    agent_counts: list[int],
    args: argparse.Namespace,
    url: str,
) -> list[dict[str, object]]:
    samples: dict[tuple[str, int, str], list[dict[str, float]]] = {}
    for _ in range(args.repeats):
        for store in stores:
            for agents in agent_counts:
                for side, tree in trees.items():
                    sample = measure(tree, store, agents, args, url)
                    samples.setdefault((store, agents, side), []).append(sample)
    rows = []
    for store in stores:
        for agents in agent_counts:
            row: dict[str, object] = {"store": store, "agents": agents}
            for side in trees:
                runs = samples[(store, agents, side)]
                row[f"{side}_commits_per_s"] = statistics.median(r["commits_per_s"] for r in runs)
                rounds = agents * args.rounds
                row[f"{side}_cpu_ms_per_round"] = statistics.median(
                    1000 * r["cpu_s"] / rounds for r in runs
                )
            rows.append(row)
    return rows


def measure(
    tree: Path, store: str, agents: int, args: argparse.Namespace, url: str
) -> dict[str, float]:
    if store == "redis":
        # Every run starts on an empty server: older revisions reuse one key
        # prefix per process, and would otherwise read earlier runs' entries.
        import redis

        client = redis.Redis.from_url(url)
        client.flushdb()
        client.close()
    environment = {**os.environ, "PYTHONPATH": str(tree / "src")}
    command = [
        sys.executable,
        "-c",
        _MEASURE,
        store,
        str(agents),
        str(args.rounds),
        str(args.think_s),
        url if store == "redis" else "",
    ]
    done = subprocess.run(command, env=environment, capture_output=True, text=True, check=True)
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def print_rows(rows: list[dict[str, object]], args: argparse.Namespace) -> None:
    print(
        f"median of {args.repeats} runs per cell; {args.rounds} rounds of {args.think_s} s "
        f"per agent; before = {args.before}, after = {args.after or 'working tree'}"
    )
    print(
        "| store | agents | commits/s before | commits/s after | ratio "
        "| CPU ms/round before | CPU ms/round after | ratio |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        commits_before = float(str(row["before_commits_per_s"]))
        commits_after = float(str(row["after_commits_per_s"]))
        cpu_before = float(str(row["before_cpu_ms_per_round"]))
        cpu_after = float(str(row["after_cpu_ms_per_round"]))
        print(
            f"| {row['store']} | {row['agents']} | {commits_before:.1f} | {commits_after:.1f} "
            f"| {commits_after / commits_before:.2f}x | {cpu_before:.3f} | {cpu_after:.3f} "
            f"| {cpu_before / cpu_after:.2f}x |"
        )


if __name__ == "__main__":
    raise SystemExit(main())
