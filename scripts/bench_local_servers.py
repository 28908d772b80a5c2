"""Measure embedded-model throughput: one server with all cores, or one per core.

llama-cpp-python's server runs one request at a time, so parallel agents
only gain from it if there are several server processes. This script sends
the same batch of short prompts through both layouts, side by side, and
prints the wall time of each and their ratio; it repeats the pair and
reports medians, because timings on a shared machine are noisy.

    .venv/bin/python scripts/bench_local_servers.py --prompts 8 --repeats 3
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import time

from dyntaskmas.llm.embedded import EmbeddedServer
from dyntaskmas.llm.endpoint import Endpoint
from dyntaskmas.llm.openai_backend import OpenAIChatModel
from dyntaskmas.llm.types import ChatMessage

PROMPTS = [
    "What is the deepest point of the Mariana Trench, in metres?",
    "How fast can a cheetah run, in km/h?",
    "What is the area of the Sahara Desert, in square kilometres?",
    "How tall is Mount Everest, in metres?",
    "How long is the Nile river, in kilometres?",
    "What is the population of Tokyo?",
    "How deep is the Puerto Rico Trench, in metres?",
    "How fast can a peregrine falcon dive, in km/h?",
]


async def timed_batch(servers: int, threads: int, prompts: list[str], max_tokens: int) -> float:
    """Return the seconds to answer ``prompts`` with ``servers`` processes."""
    async with contextlib.AsyncExitStack() as stack:
        models = []
        for index in range(servers):
            server = await stack.enter_async_context(EmbeddedServer(threads=threads))
            endpoint = Endpoint(
                server.base_url, model=server.model, name=f"embedded-{index}", concurrency=1
            )
            model = OpenAIChatModel(endpoint)
            stack.push_async_callback(model.aclose)
            models.append(model)

        queue: asyncio.Queue[str] = asyncio.Queue()
        for prompt in prompts:
            queue.put_nowait(prompt)

        async def worker(model: OpenAIChatModel) -> None:
            while not queue.empty():
                prompt = queue.get_nowait()
                await model.complete(
                    [ChatMessage("user", prompt)], max_tokens=max_tokens, temperature=0.0
                )

        started = time.monotonic()
        async with asyncio.TaskGroup() as group:
            for model in models:
                group.create_task(worker(model))
        return time.monotonic() - started


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=8, help="prompts per batch")
    parser.add_argument("--repeats", type=int, default=3, help="pairs of batches to run")
    parser.add_argument("--max-tokens", type=int, default=64, help="completion tokens per prompt")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    prompts = (PROMPTS * (args.prompts // len(PROMPTS) + 1))[: args.prompts]

    one, many = [], []
    for _ in range(args.repeats):
        one.append(await timed_batch(1, cores, prompts, args.max_tokens))
        many.append(await timed_batch(cores, 1, prompts, args.max_tokens))
    one_median = statistics.median(one)
    many_median = statistics.median(many)
    print(f"cores: {cores}; prompts per batch: {len(prompts)}; max_tokens: {args.max_tokens}")
    print(f"1 server x {cores} threads: median {one_median:.2f} s  runs {_fmt(one)}")
    print(f"{cores} servers x 1 thread: median {many_median:.2f} s  runs {_fmt(many)}")
    print(f"ratio (1 server / {cores} servers): {one_median / many_median:.2f}x")


def _fmt(values: list[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


if __name__ == "__main__":
    asyncio.run(main())
