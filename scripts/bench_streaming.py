"""Measure what streaming costs or saves: N chat calls streamed and not, side by side.

Starts ``dyntaskmas serve-sim`` as a separate process on 127.0.0.1, so that
the CPU time measured here is the client's alone (the openai SDK parses one
chunk per token when streaming). Then it sends the same batch of calls
through :class:`~dyntaskmas.llm.openai_backend.OpenAIChatModel` with the
endpoint's ``stream`` off and on, alternating the two modes, and prints per
mode the medians over repeats of the batch's wall time and client CPU time,
and the median per-call latency and time to first token.

    .venv/bin/python scripts/bench_streaming.py --calls 32 --concurrency 8 --repeats 5
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import signal
import statistics
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from dyntaskmas.llm.endpoint import Endpoint
from dyntaskmas.llm.openai_backend import OpenAIChatModel
from dyntaskmas.llm.types import ChatMessage

PROMPT = [ChatMessage("user", "Summarise the history of the printing press in a paragraph.")]


@dataclass(frozen=True)
class BatchResult:
    wall_s: float
    cpu_s: float
    latencies_s: list[float]
    ttfts_s: list[float]


@contextlib.asynccontextmanager
async def serve_sim(speedup: float) -> AsyncIterator[str]:
    """Run ``dyntaskmas serve-sim`` on a free loopback port; yield its base URL."""
    # The console script installed beside this interpreter.
    command = os.path.join(os.path.dirname(sys.executable), "dyntaskmas")
    process = await asyncio.create_subprocess_exec(
        command,
        "serve-sim",
        "--host",
        "127.0.0.1",
        "--speedup",
        str(speedup),
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), timeout=30)
        base_url = line.decode().strip()
        if not base_url.startswith("http://127.0.0.1:"):
            raise RuntimeError(f"serve-sim printed {base_url!r} instead of its base URL")
        yield base_url
    finally:
        process.send_signal(signal.SIGTERM)
        await process.wait()


async def run_batch(
    base_url: str, *, stream: bool, calls: int, concurrency: int, max_tokens: int
) -> BatchResult:
    """Send ``calls`` calls, ``concurrency`` at a time, and time them."""
    endpoint = Endpoint(
        base_url, model="sim-8b", concurrency=concurrency, stream=stream, name="sim"
    )
    async with OpenAIChatModel(endpoint, rng=random.Random(0)) as model:
        # One call first, so that connection setup is not timed.
        await model.complete(PROMPT, max_tokens=8)
        cpu_started = time.process_time()
        started = time.perf_counter()
        completions = await asyncio.gather(
            *(model.complete(PROMPT, max_tokens=max_tokens) for _ in range(calls))
        )
        wall_s = time.perf_counter() - started
        cpu_s = time.process_time() - cpu_started
    for completion in completions:
        if completion.usage.completion_tokens != max_tokens:
            raise RuntimeError(
                f"a call returned {completion.usage.completion_tokens} tokens, "
                f"expected {max_tokens}"
            )
    return BatchResult(
        wall_s=wall_s,
        cpu_s=cpu_s,
        latencies_s=[c.latency_s for c in completions],
        ttfts_s=[c.time_to_first_token_s for c in completions if c.time_to_first_token_s],
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=32, help="calls per batch (default: 32)")
    parser.add_argument(
        "--concurrency", type=int, default=8, help="calls in flight at once (default: 8)"
    )
    parser.add_argument(
        "--max-tokens", type=int, default=256, help="completion tokens per call (default: 256)"
    )
    parser.add_argument(
        "--speedup",
        type=float,
        default=10.0,
        help="serve-sim runs its simulated latencies this many times faster (default: 10)",
    )
    parser.add_argument("--repeats", type=int, default=5, help="batches per mode (default: 5)")
    args = parser.parse_args()

    results: dict[bool, list[BatchResult]] = {False: [], True: []}
    async with serve_sim(args.speedup) as base_url:
        for _ in range(args.repeats):
            for stream in (False, True):
                results[stream].append(
                    await run_batch(
                        base_url,
                        stream=stream,
                        calls=args.calls,
                        concurrency=args.concurrency,
                        max_tokens=args.max_tokens,
                    )
                )

    print(
        f"{args.calls} calls, {args.concurrency} in flight, {args.max_tokens} tokens each, "
        f"speedup {args.speedup:g}, {args.repeats} batches per mode, {os.cpu_count()} CPUs"
    )
    print("| mode | batch wall time | client CPU per call | call latency | time to first token |")
    print("|---|---|---|---|---|")
    medians: dict[bool, float] = {}
    for stream, batches in results.items():
        wall = statistics.median(b.wall_s for b in batches)
        medians[stream] = wall
        cpu_ms = statistics.median(b.cpu_s for b in batches) / args.calls * 1000
        latency = statistics.median(x for b in batches for x in b.latencies_s)
        ttfts = [x for b in batches for x in b.ttfts_s]
        ttft = f"{statistics.median(ttfts):.3f} s" if ttfts else "not measured"
        name = "streamed" if stream else "not streamed"
        print(f"| {name} | {wall:.3f} s | {cpu_ms:.2f} ms | {latency:.3f} s | {ttft} |")
    print(f"streamed / not streamed, batch wall time: {medians[True] / medians[False]:.3f}")


if __name__ == "__main__":
    asyncio.run(main())
