"""The command benchmark's load model, and one tiny run of it end to end."""

from __future__ import annotations

import importlib.util
import random
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "telegram_commands.py"


def load_bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("telegram_commands_bench", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_users_send_in_order_at_the_offered_rate_with_the_mix_spread_out() -> None:
    bench = load_bench()
    rng = random.Random(3)
    scripts = [bench.session(rng) for _ in range(500)]
    times = bench.send_times(scripts, 250.0, random.Random(4))
    assert [len(t) for t in times] == [len(s) for s in scripts]
    assert all(t == sorted(t) for t in times)  # each user's commands keep their order
    every = sorted(at for user in times for at in user)
    assert 3000 / every[-1] == pytest.approx(250, rel=0.1)
    # No phase where everyone runs the same command: /digest comes all through the run.
    digests = [t[s.index("/digest")] for s, t in zip(scripts, times, strict=True)]
    quarters = [sum(1 for at in digests if q * every[-1] / 4 <= at < (q + 1) * every[-1] / 4)
                for q in range(4)]  # fmt: skip
    assert min(quarters) > 0 and max(quarters) < 0.6 * len(digests)
    # In the benchmark each user's commands come in a random order: the same mix all along.
    for script in scripts:
        rng.shuffle(script)
    times = bench.send_times(scripts, 250.0, random.Random(4))
    digests = [t[s.index("/digest")] for s, t in zip(scripts, times, strict=True)]
    quarters = [sum(1 for at in digests if q * every[-1] / 4 <= at < (q + 1) * every[-1] / 4)
                for q in range(4)]  # fmt: skip
    assert min(quarters) > 0.15 * len(digests) and max(quarters) < 0.35 * len(digests)
    assert bench.send_times(scripts[:2], None, rng) == [[None] * 6, [None] * 6]


@pytest.mark.slow
def test_the_benchmark_runs_end_to_end_and_reports_both_loads() -> None:
    run = subprocess.run(
        [sys.executable, str(BENCH), "12", "--rate", "40", "--concurrency", "4",
         "--papers", "30", "--baseline-users", "4"],
        capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    assert "at 40 commands/s offered by 12 users at once: 12 users, 72 commands" in run.stdout
    assert "at saturation (4 users at a time, no pauses)" in run.stdout
    assert run.stdout.count("failures 0, extra messages 0") == 3
    assert "ratio at saturation:" in run.stdout
