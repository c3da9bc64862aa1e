"""How long reading a long comment's `/reviewers` commands holds up the event loop.

Prints figures; it is not a test and asserts nothing. Run from the repository root:

    .venv/bin/python benchmarks/long_comments.py [--chars 1000000] [--runs 5]

GitLab accepts a note of up to 1,000,000 characters. For a plain comment, one with a command at its end, and one
made of nested quotes, HTML comments and code spans, it prints the median time `parse_commands`
takes, then the longest the event loop went without running a 1 ms ticker while the note handler's reading
(`bot.handlers.notes._in_thread_if_long`) ran, against the same reading called on the loop (the way it was before
`PARSE_IN_THREAD`), measured in the same run. The baseline is the ticker's longest gap with nothing else running.
Last, the same for a webhook body of `--body-mb` MB (GitLab's cap is 25), which `bot.web` parses on the loop:
`parse_json` there against in a thread, which does not help (`json.loads` is C and holds the GIL throughout).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.commands import parse_commands  # noqa: E402
from bot.handlers.notes import PARSE_IN_THREAD, _in_thread_if_long  # noqa: E402
from bot.web import parse_json  # noqa: E402


def notes(chars: int) -> dict[str, str]:
    line = "Some context about the change, `a code span`, and a link https://example.com/x.\n"
    plain = (line * (chars // len(line) + 1))[:chars]
    crafted_line = "> > `a` <!-- b --> `c` > d\n"
    return {"plain": plain, "command at the end": plain[: chars - 20] + "\n/reviewers help\n",
            "nested quotes and spans": (crafted_line * (chars // len(crafted_line) + 1))[:chars]}


async def longest_gap(work, tick: float = 0.001) -> float:
    """The longest wait between ticks of a 1 ms ticker while `work()` runs (or for 0.2 s without it)."""
    gaps: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(tick)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0.01)
    if work is None:
        await asyncio.sleep(0.2)
    else:
        await work()
    done.set()
    await task
    return max(gaps)


async def measure(parse, read, runs: int) -> tuple[float, float, float]:
    """(median time of `parse()`, the loop's longest gap while it runs on the loop, while `read()` runs)."""
    async def on_loop() -> None:
        parse()

    took = statistics.median(_timed(parse) for _ in range(runs))
    before = statistics.median([await longest_gap(on_loop) for _ in range(runs)])
    now = statistics.median([await longest_gap(read) for _ in range(runs)])
    return took, before, now


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chars", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--body-mb", type=float, default=25.0)
    args = ap.parse_args()
    base = statistics.median([await longest_gap(None) for _ in range(args.runs)])
    print(f"{args.chars:,} characters a note; read in a thread above {PARSE_IN_THREAD:,}; "
          f"median of {args.runs} runs; baseline longest loop gap {base * 1000:.1f} ms")
    print(f"{'note':26s} {'parse':>9s} {'gap on the loop':>16s} {'gap now':>9s} {'now/baseline':>13s}")
    for name, text in notes(args.chars).items():
        parse, before, now = await measure(lambda: parse_commands(text, "reviewbot"),
                                           lambda: _in_thread_if_long(parse_commands, text, "reviewbot"), args.runs)
        print(f"{name:26s} {parse * 1000:7.0f}ms {before * 1000:14.0f}ms {now * 1000:7.1f}ms {now / base:12.1f}x")
    body = webhook_body(args.body_mb)
    parse, before, now = await measure(lambda: parse_json(body), lambda: asyncio.to_thread(parse_json, body),
                                       args.runs)
    name = f"webhook body {len(body) / 1e6:.0f} MB"
    print(f"{name:26s} {parse * 1000:7.0f}ms {before * 1000:14.0f}ms {now * 1000:7.1f}ms {now / base:12.1f}x "
          "(parsed on the loop; 'now' = if it were in a thread)")


def webhook_body(megabytes: float) -> bytes:
    """A merge request update whose description (and its previous version) fills `megabytes`."""
    line = "A line of the description, with `code` and a link https://example.com/x.\n"
    text = line * int(megabytes * 1e6 / (3 * len(line)))  # three copies: the description, previous, current
    body = {"object_kind": "merge_request", "object_attributes": {"iid": 1, "description": text},
            "changes": {"description": {"previous": text, "current": text}}}
    return json.dumps(body).encode()


if __name__ == "__main__":
    asyncio.run(main())
