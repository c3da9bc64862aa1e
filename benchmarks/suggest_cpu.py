"""The learned ranking's CPU per suggestion, against another commit in the same run, and a check that both
rank and explain alike.

Prints figures; it is not a test. Run from the repository root:

    .venv/bin/python benchmarks/suggest_cpu.py [--base 9c94203] [--data /work/shared/data/u-boot.jsonl.gz]
        [--learn 1500] [--queries 100] [--rounds 6] [--check 300] [--profile]

`--data synthetic:N` takes `warm_start.py`'s synthetic history of N changes instead of a file. A base whose
explanations differ on purpose (`847bb18`: no hand-set terms, no figures beside the signals) is compared for
time alone (`--check 0`).

Each side (this work tree, and `--base` checked out in a temporary `git worktree`) runs in its own process,
importing its own `graph`, and builds the same state: the bot's default recommender takes the history but its
last `--learn + --check + --queries` changes by bulk ingest, then replays the `--learn` next ones as the bot
would see them (`recommend` with the first place counted, the team's labels: the first suggested taken when
they reviewed, passed over when not, the real reviewers taken; then the merge), refitting as it goes. So the
hand-set terms (spreading, rejection streaks, people on duty) and the feedback columns are all at work.

1. **check** (`--check N`): each side goes on over the next N changes: `suggest` with k=3 (and every tenth
   change k=25, past the model's shortlist), then the same labels and merge. Every suggestion's name, score,
   reasons, contributions (words, effect, the two figures) and basis are written out; the two sides must be
   identical, floats compared exactly (their `repr`).
2. **CPU**: the last `--queries` changes, as open merge requests a day after their time, are ranked
   (`suggest(q, 3)`) by each side in turn, `--rounds` times (alternated: the machine is shared and noisy); the
   CPU time of each ranking (`time.thread_time`) is kept. Printed: each side's p50 / p99, and the ratio of the
   p50s of each pair of rounds.
With `--profile`, this tree's side also prints a `cProfile` of one round.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("OMP_NUM_THREADS", "1")


# -- one side ---------------------------------------------------------------------------------------------------
def _labels(rec, change, shown: list[str]) -> None:
    """The team's answer to `shown` on `change`, then its merge."""
    truth = change.truth()
    if shown:
        first = shown[0]
        rec.learn(change, first, "accepted" if first in truth else "passed_over", time=change.time - 3600)
    for person in sorted(truth):
        rec.learn(change, person, "assigned", time=change.time - 1800)
    rec.observe(change)


def _said(out) -> list:
    return [[s.person, repr(s.score), list(s.reasons),
             [[c.signal, repr(c.effect), c.value, c.others] for c in s.contributions], s.basis] for s in out]


def worker(args: argparse.Namespace) -> None:
    """Build the state, then answer the parent's commands on stdin ("check", "round", "profile", "quit")."""
    sys.path.insert(0, args.repo)
    from threadpoolctl import threadpool_limits

    from bot.history_files import read_changes
    from graph.model import Change
    from graph.recommend import make_recommender

    threadpool_limits(1)
    if args.data.startswith("synthetic:"):  # as warm_start.py generates it
        from graph.synthetic import synthetic_history

        changes = list(synthetic_history(int(args.data.split(":")[1]), 60_000, 4_000, seed=0))
    else:
        changes = list(read_changes(args.data))
    tail = args.learn + args.check + args.queries
    cut = len(changes) - tail
    rec = make_recommender("default")
    rec.og.add_changes(changes[:cut], allow_author=rec.allow_author)
    for change in changes[cut:cut + args.learn]:
        shown = rec.recommend(change, 3)
        _labels(rec, change, shown)
    checked = changes[cut + args.learn:cut + args.learn + args.check]
    queries = [Change(f"q{i}", c.time + 86400, c.author, (), c.files)
               for i, c in enumerate(changes[len(changes) - args.queries:])]
    rec.og.warm_blocks()
    print("ready", flush=True)
    for line in sys.stdin:
        command = line.split()
        if command[0] == "check":
            with open(command[1], "w") as fh:
                for n, change in enumerate(checked):
                    out = rec.suggest(change, 25 if n % 10 == 9 else 3)
                    fh.write(json.dumps([change.id, _said(out)]) + "\n")
                    _labels(rec, change, [s.person for s in out[:1]])
            print("done", flush=True)
        elif command[0] == "round":
            cpu = []
            for q in queries:
                started = time.thread_time()
                rec.suggest(q, 3)
                cpu.append(1000 * (time.thread_time() - started))
            print(json.dumps(cpu), flush=True)
        elif command[0] == "profile":
            import cProfile
            import pstats

            profile = cProfile.Profile()
            profile.enable()
            for q in queries:
                rec.suggest(q, 3)
            profile.disable()
            pstats.Stats(profile, stream=sys.stderr).sort_stats("cumulative").print_stats(35)
            print("done", flush=True)
        else:
            return


# -- the parent ---------------------------------------------------------------------------------------------------
class Side:
    def __init__(self, name: str, repo: str, args: argparse.Namespace) -> None:
        self.name = name
        cmd = [sys.executable, __file__, "--worker", "--repo", repo, "--data", args.data, "--learn", str(args.learn),
               "--check", str(args.check), "--queries", str(args.queries)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.cpu: list[list[float]] = []

    def ask(self, command: str) -> str:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline()
        if not answer:
            raise SystemExit(f"{self.name}: the worker stopped on {command!r} (its error is above)")
        return answer

    def ready(self) -> None:
        if self.proc.stdout.readline().strip() != "ready":
            raise SystemExit(f"{self.name}: the worker failed (see above)")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
        self.proc.wait()


def percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def compare(a: Path, b: Path) -> tuple[int, int, list[str]]:
    """(suggestions compared, changes that differ, the first differences, field by field)."""
    la, lb = a.read_text().splitlines(), b.read_text().splitlines()
    n = sum(len(json.loads(line)[1]) for line in la)
    diff = []
    for x, y in zip(la, lb):
        if x != y:
            (cid, xs), (_, ys) = json.loads(x), json.loads(y)
            fields = [f"{cid[:10]} {u[0]}: {u_f!r} != {v_f!r}" for u, v in zip(xs, ys)
                      for u_f, v_f in zip([*u[:3], *u[3], u[4]], [*v[:3], *v[3], v[4]]) if u_f != v_f]
            diff.append("\n".join(fields[:2]) or f"{cid[:10]}: {len(xs)} suggestions against {len(ys)}")
    if len(la) != len(lb):
        diff.append(f"{len(la)} changes against {len(lb)}")
    return n, len(diff), diff[:3]


def parent(args: argparse.Namespace) -> None:
    tmp = tempfile.TemporaryDirectory()
    tree = Path(tmp.name) / "base"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(tree), args.base], check=True)
    sides: list[Side] = []
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "graph"], capture_output=True,
                               text=True).stdout.strip()
        started = time.perf_counter()
        sides += [Side(f"this tree ({head}{', modified' if dirty else ''})", str(ROOT), args),
                  Side(f"base ({args.base})", str(tree), args)]
        for side in sides:
            side.ready()
        print(f"{Path(args.data).name}: both sides ready in {time.perf_counter() - started:.0f} s "
              f"(learn {args.learn}, check {args.check}, queries {args.queries}); load "
              f"{os.getloadavg()[0]:.1f}", flush=True)
        if args.profile:
            sides[0].ask("profile")
        for r in range(args.rounds):
            for side in sides if r % 2 == 0 else sides[::-1]:
                side.cpu.append(json.loads(side.ask("round")))
        for side in sides:
            flat = [ms for round_ in side.cpu for ms in round_]
            p50s = ", ".join(f"{percentile(r, 0.5):.2f}" for r in side.cpu)
            print(f"{side.name}: CPU per suggestion p50 {percentile(flat, 0.5):.2f} ms, p99 "
                  f"{percentile(flat, 0.99):.2f} ms (rounds' p50s: {p50s})")
        ratios = [percentile(a, 0.5) / percentile(b, 0.5) for a, b in zip(sides[0].cpu, sides[1].cpu)]
        print(f"ratio of p50s, this tree / base, per pair of rounds: {', '.join(f'{x:.2f}' for x in ratios)}; "
              f"median {sorted(ratios)[len(ratios) // 2]:.2f}; load {os.getloadavg()[0]:.1f}")
        if args.check:
            files = [Path(tmp.name) / f"check{i}.jsonl" for i in range(2)]
            for side, path in zip(sides, files):
                side.ask(f"check {path}")
            n, bad, first = compare(*files)
            print(f"check: {args.check} changes, {n} suggestions: "
                  + ("identical" if not bad else f"{bad} changes DIFFER"))
            for d in first:
                print(d)
    finally:
        for side in sides:
            side.close()
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=False)
        tmp.cleanup()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--base", default="9c94203", help="the commit to compare with")
    p.add_argument("--data", default="/work/shared/data/u-boot.jsonl.gz",
                   help="a history file, or synthetic:N for warm_start.py's synthetic history of N changes")
    p.add_argument("--learn", type=int, default=1500)
    p.add_argument("--queries", type=int, default=100)
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--check", type=int, default=300)
    p.add_argument("--profile", action="store_true")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--repo", help=argparse.SUPPRESS)
    args = p.parse_args()
    worker(args) if args.worker else parent(args)


if __name__ == "__main__":
    main()
