"""Streaming model: does the agent's bounded buffer keep an LTO-9 drive streaming?

A simulation of the real data path on the virtual clock (no files; about a minute and a half for
the full sweep with two worker processes):

* **producer** — the agent reading Exchange: 1 MiB reads (``reference/agent`` READ_SIZE) whose
  latency is bursty: a peak-rate transfer time plus log-normal jitter plus, now and then, a
  heavy-tailed (Pareto) stall; scaled so the mean rate is the swept value. Seeded through
  ``emulators.clock.SeedSequence`` (stream ``bench.streaming.producer.<rate>``). Each chunk goes
  through the real ``reference.transfer.LocalSession`` (``max_buffered`` = the agent buffer).
* **server** — the real pacing wrapper, ``reference.server.pacing.PacedSession``, with the
  profile the server picks for the drive (``pacing_for_timing``), or no wrapper (*unpaced*: the
  server before pacing, ``pacing: off``); the server task receives chunks, cuts tape blocks and
  writes them through ``Runtime.call`` as ``reference/server/server.py`` does.
* **drive** — the drive engineer's ``emulators.tape.timing.DriveTiming`` with the LTO-9 profiles
  (400 MB/s native, speed steps 408 … 177 MB/s, 1 GiB drive buffer, 2 s backhitch).

Swept: policy × agent buffer × block size × mean producer rate, each point 3 seeded jobs.
Reported per point: backhitches (per TB), drive utilisation (fraction of the elapsed time the
tape was moving data), delivered MB/s, mean speed step, producer wait; as rows,
``benchmarks/out/streaming.txt`` / ``.json`` and the plot ``benchmarks/out/streaming.png``.
docs/performance.md has the findings.

The claim under test (issue 10, item 5): with the default agent buffer there are zero
backhitches whenever the mean producer rate is above the lowest speed step (177 MB/s). When that
fails, the smallest swept buffer that achieves it (per policy) is reported.
"""

from __future__ import annotations

import json
import math
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from reference.server.pacing import PacingProfile

MiB = 1 << 20
KiB = 1 << 10
MB = 1_000_000
TB = 1_000_000_000_000
OUT_DIR = Path(os.environ.get("MAILTAPE_BENCH_OUT") or Path(__file__).resolve().parent / "out")
"""Where the plot and tables go (``MAILTAPE_BENCH_OUT`` overrides: tests keep the real ones)."""


@dataclass(frozen=True)
class ProducerProfile:
    """Exchange read behaviour seen by the agent. Chosen, not measured (see docs/performance.md)."""

    read_size: int = 1 * MiB
    peak_rate: float = 1000 * MB
    """Bytes/s of a read that does not stall (verified read from a warm disk)."""
    jitter_sigma: float = 1.0
    """Log-normal spread of the ordinary per-read latency."""
    stall_probability: float = 0.01
    """Chance that one read stalls (a checkpoint flush, a busy disk, a store lock)."""
    stall_alpha: float = 1.5
    """Pareto shape of stall lengths: below 2, infinite variance (the heavy tail)."""
    stall_share: float = 0.5
    """Part of the time above the peak-rate transfer that comes from stalls (the rest is jitter)."""
    stall_cap: float = 30.0
    """Longest stall, seconds (an agent would time out and fail the job beyond this)."""


@dataclass(frozen=True)
class Point:
    buffer_bytes: int
    block_size: int
    mean_rate: float
    volume: int
    seed: int = 10
    paced: bool = True
    """Server policy: the real server (``reference.server.pacing``), or unpaced (pacing off)."""


def read_durations(profile: ProducerProfile, mean_rate: float, count: int, seed: int) -> np.ndarray:
    """Seconds each of ``count`` reads takes, with the profile's bursts, mean rate ``mean_rate``."""
    from emulators.clock import SeedSequence

    rng = SeedSequence(seed).rng(f"bench.streaming.producer.{int(mean_rate)}")
    transfer = profile.read_size / profile.peak_rate
    extra = max(0.0, profile.read_size / mean_rate - transfer)
    jitter_mean = (1.0 - profile.stall_share) * extra
    sigma = profile.jitter_sigma
    jitter = rng.lognormal(math.log(jitter_mean) - sigma * sigma / 2, sigma, count) if jitter_mean > 0 else 0.0
    stall_mean = profile.stall_share * extra / profile.stall_probability
    alpha = profile.stall_alpha
    scale = stall_mean * (alpha - 1) / alpha  # Pareto x_m giving that mean
    stalls = np.where(rng.random(count) < profile.stall_probability,
                      np.minimum(scale * (1.0 + rng.pareto(alpha, count)), profile.stall_cap), 0.0)
    variable = jitter + stalls
    # Heavy tails make a sample's mean wander far from the model's; rescale the variable part so
    # every point runs at exactly the swept mean rate (the claim is about the mean).
    total_extra = float(np.sum(variable))
    if total_extra > 0:
        variable = variable * (extra * count / total_extra)
    return transfer + variable


def simulate(point: Point, profile: ProducerProfile = ProducerProfile(), drive: str = "LTO-9",
             pacing: "PacingProfile | None" = None) -> dict:
    """One job: ``point.volume`` bytes from the producer through the agent buffer to the drive.

    The real data path on the virtual clock: a producer task sends each read chunk through
    ``reference.transfer.LocalSession`` (``max_buffered`` = the point's agent buffer), wrapped in
    ``reference.server.pacing.PacedSession`` when the point is paced (the server's own choice of
    profile, :func:`pacing_for_timing`, unless ``pacing`` overrides it); a server task receives,
    cuts tape blocks and writes them through ``DriveTiming`` via ``Runtime.call`` as
    ``reference/server/server.py`` does.
    """
    import asyncio

    from emulators.clock import VirtualClock
    from emulators.tape.profiles import drive_profile, media_profile
    from emulators.tape.timing import DriveTiming
    from reference.runtime import Runtime
    from reference.server.pacing import PacedSession, pacing_for_timing
    from reference.transfer import CommitReceipt, LocalSession

    chunk = profile.read_size
    count = max(1, point.volume // chunk)
    durations = read_durations(profile, point.mean_rate, count, point.seed).tolist()
    clock = VirtualClock(0.0)
    runtime = Runtime(clock)
    timing = DriveTiming(clock, drive_profile(drive))
    timing.set_media(media_profile(drive))
    timing.wait_in_place = False  # the server task awaits the drive's timeline (Runtime.call)
    block = point.block_size
    payload = bytes(chunk)  # LocalSession.send's bytes() of a bytes object is that object: no copy
    waited = [0.0]
    sessions = []
    async def producer(session) -> None:
        for seconds in durations:
            await asyncio.sleep(seconds)  # one Exchange read
            before = clock.now()
            await session.send(payload)
            waited[0] += clock.now() - before
        await session.finish(None)

    def write_blocks(carry: int, size: int) -> int:
        carry += size
        while carry >= block:
            timing.write(block, block)
            carry -= block
        return carry

    async def server(session) -> None:
        carry = 0
        while True:
            data = await session.receive()
            if data is None:
                break
            carry = await runtime.call(write_blocks, carry, len(data), timeline=timing.timeline)
        if carry:
            await runtime.call(timing.write, carry, carry, timeline=timing.timeline)
        await runtime.call(timing.flush, timeline=timing.timeline)
        session.commit(CommitReceipt(0, (), count * chunk))

    async def job() -> None:
        session = LocalSession(1, point.buffer_bytes)
        if point.paced:
            session = PacedSession(session, clock, pacing or pacing_for_timing(timing))
        sessions.append(session)
        await asyncio.gather(producer(session), server(session))

    runtime.run(job())
    session = sessions[0]
    total = count * chunk
    elapsed = clock.now()
    counters = timing.counters
    moving = sum(counters.seconds_at_step.values())
    mean_step = (sum(step * s for step, s in counters.seconds_at_step.items()) / moving) if moving else 0.0
    return {
        **asdict(point),
        "producer_rate_realised": total / float(sum(durations)),
        "backhitches": counters.backhitches,
        "backhitches_per_tb": counters.backhitches / (total / TB),
        "backhitches_unavoidable": unavoidable_backhitches(
            durations, chunk, timing.media.speed_steps, timing.drive.speed_margin, timing.drive.buffer_bytes,
            point.buffer_bytes, timing.drive.restart_fill, timing.drive.backhitch_seconds),
        "utilisation": moving / elapsed if elapsed else 0.0,
        "throughput": total / elapsed if elapsed else 0.0,
        "mean_step_mbs": mean_step,
        "lowest_step_share": counters.seconds_at_step.get(min(counters.seconds_at_step, default=0), 0.0)
        / moving if moving else 0.0,
        "host_wait_seconds": counters.host_wait_seconds,
        "producer_wait_seconds": waited[0],
        "agent_buffer_peak": session.peak_buffered,
        "held_seconds": getattr(session, "held_seconds", 0.0),
        "elapsed_seconds": elapsed,
    }


def unavoidable_backhitches(durations: list[float], chunk: int, steps: tuple[float, ...], margin: float,
                            drive_buffer: int, agent_buffer: int, restart_fill: float,
                            backhitch_seconds: float, dt: float = 0.002) -> int:
    """Backhitches of an *ideal* server fed by the same reads, on a speed-matching drive: the tape
    always runs at its lowest step (the slowest drain, so the most reserve); while it moves, the
    server feeds the drive no faster than the drive still answers with that step (the next step
    up over the margin, 203 / 0.95 = 214 MB/s on LTO-9); while it is stopped, as fast as there is
    room; the agent buffer holds the rest and the producer waits when it is full; the drive
    restarts as the real one does. An approximation, not a bound: the real drive measures over a
    2 s window, so a short burst above that rate after a slower stretch is possible. What the real
    path shows above this count is the server's and the agent's."""
    floor = min(steps)
    above = [x for x in steps if x > floor]
    cap = min(above) / margin if above else math.inf
    restart = restart_fill * drive_buffer
    agent_buffer = max(agent_buffer, chunk)  # with no agent buffer, one chunk is still in flight
    drive = agent = t = resume = 0.0
    streaming = False
    count = 0

    def advance(h: float) -> None:
        nonlocal drive, agent, t, resume, streaming, count
        moved = min(agent, drive_buffer - drive, cap * h if streaming else math.inf)
        agent -= moved
        drive += moved
        if not streaming and drive >= restart:
            streaming, resume = True, max(resume, t)
        if streaming and t >= resume:
            drive -= floor * h
            if drive <= 0:
                drive, streaming, count = 0.0, False, count + 1
                resume = t + backhitch_seconds
        t += h

    for seconds in durations:
        end = t + seconds
        while t < end:
            advance(min(dt, end - t))
        while agent + chunk > agent_buffer:  # the producer waits for room
            advance(dt)
        agent += chunk
    return count


def default_agent_buffer() -> int:
    """The agent→server buffer the product uses today (BackupServer's ``max_buffered``)."""
    import inspect

    from reference.server.server import BackupServer

    return int(inspect.signature(BackupServer).parameters["max_buffered"].default)


def default_block_size() -> int:
    from reference.server.media import DEFAULT_BLOCK_SIZE

    return int(DEFAULT_BLOCK_SIZE)


def lowest_step(drive: str = "LTO-9") -> float:
    from emulators.tape.profiles import media_profile

    return min(media_profile(drive).speed_steps)


def sweep(points: list[Point], workers: int) -> list[dict]:
    if workers <= 1 or len(points) < 4:
        return [simulate(p) for p in points]
    # Longest first (small blocks = most writes) so the two workers finish together.
    order = sorted(range(len(points)), key=lambda i: points[i].volume / points[i].block_size, reverse=True)
    with ProcessPoolExecutor(max_workers=workers) as pool:
        done = list(pool.map(simulate, [points[i] for i in order], chunksize=1))
    results: list[dict] = [{}] * len(points)
    for i, r in zip(order, done):
        results[i] = r
    return results


POLICIES = ("unpaced", "paced")


def plan(quick: bool) -> dict:
    """The sweep. Unpaced, every agent buffer gives the same result (the buffer never holds more
    than a chunk while the drive buffer has room), so it is swept over three sizes only."""
    default, block = default_agent_buffer(), default_block_size()
    if quick:
        return {"buffers": {"unpaced": [0, default], "paced": [0, default]}, "blocks": [1 * MiB],
                "rates": [150 * MB, 185 * MB, 300 * MB], "volume": 500_000_000, "seeds": [10]}
    return {"buffers": {"unpaced": sorted({0, default, 1 << 30}),
                        "paced": sorted({0, 16 * MiB, default, 256 * MiB, 1 << 30})},
            "blocks": sorted({block, 1 * MiB}), "rates": [150 * MB, 185 * MB, 200 * MB, 250 * MB, 300 * MB, 400 * MB],
            "volume": 4_000_000_000, "seeds": [10, 11, 12]}


def points_for(setup: dict) -> list[Point]:
    return [Point(b, k, r, setup["volume"], seed, paced=(policy == "paced"))
            for policy in POLICIES for b in setup["buffers"][policy] for k in setup["blocks"]
            for r in setup["rates"] for seed in setup["seeds"]]


def combine(runs: list[dict]) -> list[dict]:
    """One row per (policy, buffer, block, rate): the seeds' runs added up as one longer job mix."""
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        groups.setdefault((r["paced"], r["buffer_bytes"], r["block_size"], r["mean_rate"]), []).append(r)
    rows = []
    for (paced, buffer, block, rate), members in groups.items():
        volume = sum(m["volume"] for m in members)
        elapsed = sum(m["elapsed_seconds"] for m in members)
        moving = sum(m["utilisation"] * m["elapsed_seconds"] for m in members)
        backhitches = sum(m["backhitches"] for m in members)
        rows.append({
            "paced": paced, "buffer_bytes": buffer, "block_size": block, "mean_rate": rate, "volume": volume,
            "jobs": len(members), "seeds": [m["seed"] for m in members], "backhitches": backhitches,
            "jobs_with_backhitches": sum(1 for m in members if m["backhitches"]),
            "backhitches_per_tb": backhitches / (volume / TB), "utilisation": moving / elapsed if elapsed else 0.0,
            "throughput": volume / elapsed if elapsed else 0.0,
            "mean_step_mbs": sum(m["mean_step_mbs"] * m["elapsed_seconds"] for m in members) / elapsed
            if elapsed else 0.0,
            "agent_buffer_peak": max(m["agent_buffer_peak"] for m in members),
            "producer_wait_seconds": sum(m["producer_wait_seconds"] for m in members),
            "host_wait_seconds": sum(m["host_wait_seconds"] for m in members),
            "held_seconds": sum(m["held_seconds"] for m in members),
        })
    return rows


def needed_buffer(results: list[dict], floor: float) -> int | None:
    """Smallest buffer with zero backhitches at every block size and every rate above ``floor``."""
    sizes = sorted({r["buffer_bytes"] for r in results})
    for size in sizes:
        rows = [r for r in results if r["buffer_bytes"] == size and r["mean_rate"] > floor]
        if rows and all(r["backhitches"] == 0 for r in rows):
            return size
    return None


def plot(results: list[dict], path: Path, default: int, floor: float, block: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(13, 8.5), sharex=True)
    shown = [r for r in results if r["block_size"] == block] or results
    for row, paced in enumerate((False, True)):
        for size in sorted({r["buffer_bytes"] for r in shown}):
            rows = sorted((r for r in shown if r["buffer_bytes"] == size and r["paced"] == paced),
                          key=lambda r: r["mean_rate"])
            if not rows:
                continue
            rates = [r["mean_rate"] / MB for r in rows]
            label = f"{_size(size)}{' (default)' if size == default else ''}"
            style = dict(marker="o", linewidth=2.4 if size == default else 1.2)
            axes[row][0].plot(rates, [r["backhitches_per_tb"] for r in rows], label=label, **style)
            axes[row][1].plot(rates, [r["utilisation"] for r in rows], label=label, **style)
        policy = "server paces writes (reference/server/pacing.py)" if paced else \
            "unpaced: blocks written as chunks arrive (pacing off)"
        axes[row][0].set_title(f"backhitches per TB — {policy}", fontsize=9)
        axes[row][1].set_title(f"drive utilisation — {policy}", fontsize=9)
        axes[row][0].set_ylabel("backhitches per TB")
        axes[row][0].set_yscale("symlog", linthresh=10)
        axes[row][1].set_ylabel("tape moving / elapsed")
        axes[row][1].set_ylim(0, 1.05)
        axes[row][0].legend(title="agent buffer", fontsize=7)
    for ax in axes.flat:
        ax.axvline(floor / MB, color="grey", linestyle="--", linewidth=1)
        ax.grid(alpha=0.3)
    for ax in axes[1]:
        ax.set_xlabel("mean producer rate (MB/s)")
    fig.suptitle(f"LTO-9 streaming model, {_size(block)} tape blocks, bursty Exchange reads "
                 f"(dashed: lowest speed step {floor / MB:.0f} MB/s)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _size(n: int) -> str:
    if n == 0:
        return "none"
    return f"{n / (1 << 30):g} GiB" if n >= 1 << 30 else f"{n / MiB:g} MiB" if n >= MiB else f"{n / KiB:g} KiB"


def table(results: list[dict]) -> str:
    """The sweep as fixed-width text (what docs/performance.md quotes)."""
    lines = [f"{'server':>8} {'agent buffer':>12} {'block':>7} {'MB/s in':>7} {'jobs':>4} {'backhitches':>11} "
             f"{'per TB':>7} {'util':>5} {'MB/s out':>8} {'mean step':>9} {'prod. wait s':>12}"]
    for r in sorted(results, key=lambda r: (r["paced"], r["buffer_bytes"], r["block_size"], r["mean_rate"])):
        lines.append(f"{'paced' if r['paced'] else 'unpaced':>8} {_size(r['buffer_bytes']):>12} "
                     f"{_size(r['block_size']):>7} {r['mean_rate'] / MB:>7.0f} {r['jobs']:>4} {r['backhitches']:>11} "
                     f"{r['backhitches_per_tb']:>7.0f} {r['utilisation']:>5.2f} {r['throughput'] / MB:>8.0f} "
                     f"{r['mean_step_mbs']:>9.0f} {r['producer_wait_seconds']:>12.1f}")
    return "\n".join(lines)


def run(quick: bool = False, out_dir: Path | None = None, workers: int | None = None) -> list[dict]:
    from reference.server.pacing import PacingProfile

    out_dir = Path(out_dir or (OUT_DIR / "quick" if quick else OUT_DIR))  # a smoke run keeps the real plot
    setup = plan(quick)
    default, floor, block = default_agent_buffer(), lowest_step(), default_block_size()
    workers = workers if workers is not None else (1 if quick else min(2, os.cpu_count() or 1))
    results = combine(sweep(points_for(setup), workers))
    unpaced = [r for r in results if not r["paced"]]
    paced = [r for r in results if r["paced"]]
    needed = {"unpaced": needed_buffer(unpaced, floor), "paced": needed_buffer(paced, floor)}

    out_dir.mkdir(parents=True, exist_ok=True)
    plot(results, out_dir / "streaming.png", default, floor, block if block in setup["blocks"] else setup["blocks"][0])
    (out_dir / "streaming.txt").write_text(table(results) + "\n", encoding="utf-8")
    (out_dir / "streaming.json").write_text(json.dumps({
        "producer": asdict(ProducerProfile()), "pacing": {k: v for k, v in asdict(PacingProfile(steps=(floor,))).items()
                                                          if k != "steps"},
        "default_agent_buffer": default, "lowest_step": floor, "needed_buffer": needed, "points": results},
        indent=1) + "\n", encoding="utf-8")

    def worst(rows, size):
        return max((r["backhitches_per_tb"] for r in rows if r["buffer_bytes"] == size and r["mean_rate"] > floor),
                   default=float("nan"))

    mid = min(setup["rates"], key=lambda r: abs(r - 250 * MB))

    def at_mid(rows, key):
        return _mean(r[key] for r in rows if r["buffer_bytes"] == default and r["mean_rate"] == mid)

    largest = max(max(sizes) for sizes in setup["buffers"].values())
    rows = [
        {"name": f"streaming (server paces writes): worst backhitches/TB above {floor / MB:.0f} MB/s, default "
                 f"agent buffer {_size(default)} (baseline: unpaced)",
         "value": round(worst(paced, default), 1), "unit": "per TB", "baseline": round(worst(unpaced, default), 1),
         "ratio": _ratio(worst(paced, default), worst(unpaced, default)), "target": "value <= 0"},
        {"name": f"streaming (unpaced): worst backhitches/TB above {floor / MB:.0f} MB/s, default agent buffer "
                 f"(baseline: no agent buffer)",
         "value": round(worst(unpaced, default), 1), "unit": "per TB", "baseline": round(worst(unpaced, 0), 1),
         "ratio": _ratio(worst(unpaced, default), worst(unpaced, 0)), "target": ""},
        {"name": f"streaming: drive utilisation at {mid / MB:.0f} MB/s, default buffer, paced (baseline: unpaced)",
         "value": round(at_mid(paced, "utilisation"), 3), "unit": "fraction",
         "baseline": round(at_mid(unpaced, "utilisation"), 3),
         "ratio": _ratio(at_mid(paced, "utilisation"), at_mid(unpaced, "utilisation")), "target": "ratio >= 0.9"},
        {"name": f"streaming: delivered MB/s at {mid / MB:.0f} MB/s in, default buffer, paced (baseline: unpaced)",
         "value": round(at_mid(paced, "throughput") / MB, 1), "unit": "MB/s",
         "baseline": round(at_mid(unpaced, "throughput") / MB, 1),
         "ratio": _ratio(at_mid(paced, "throughput"), at_mid(unpaced, "throughput")), "target": "ratio >= 0.9"},
    ]
    for policy in POLICIES:
        size = needed[policy]
        rows.append({
            "name": f"streaming ({policy}): smallest agent buffer with zero backhitches above the lowest step"
                    + ("" if size is not None else f" (none up to {_size(largest)}: value = that bound)"),
            "value": round((size if size is not None else largest) / MiB, 1), "unit": "MiB",
            "baseline": round(default / MiB, 1), "ratio": _ratio(size if size is not None else math.inf, default),
            "target": "ratio <= 1" if policy == "paced" else ""})  # unpaced: the baseline, information
    return rows


def robustness(seeds: int = 30, rates=(185, 200, 215, 250, 300, 400), workers: int = 2, first_seed: int = 10,
               show_jobs: bool = False) -> str:
    """Jobs with a backhitch out of ``seeds`` 4 GB jobs per rate (seeds ``first_seed``,
    ``first_seed`` + 1, ...), default buffer and block, unpaced and paced: how far the sweep's
    three seeds generalise (``python benchmarks/bench_streaming.py --robustness [--seeds 100-129]``;
    about a minute). ``show_jobs``: a last line per policy naming the backhitching jobs
    (rate/seed), so a change can be checked for new ones, not only for counts."""
    default, block = default_agent_buffer(), default_block_size()
    points = [Point(default, block, rate * MB, 4_000_000_000, seed, paced=paced)
              for rate in rates for paced in (False, True) for seed in range(first_seed, first_seed + seeds)]
    runs = sweep(points, workers)
    lines = [f"{'MB/s in':>7} {'server':>8} {'jobs':>4} {'with backhitches':>16} {'backhitches':>11} "
             f"{'ideal server':>12} {'above ideal':>11} {'MB/s out':>8}"]
    for rate in rates:
        for paced in (False, True):
            mine = [r for r in runs if r["mean_rate"] == rate * MB and r["paced"] == paced]
            total = sum(r["backhitches"] for r in mine)
            excused = sum(r["backhitches_unavoidable"] for r in mine)
            lines.append(f"{rate:>7} {'paced' if paced else 'unpaced':>8} {len(mine):>4} "
                         f"{sum(1 for r in mine if r['backhitches']):>16} {total:>11} {excused:>12} "
                         f"{total - excused:>11} {_mean(r['throughput'] for r in mine) / MB:>8.0f}")
    if show_jobs:
        for paced in (False, True):
            bad = [f"{r['mean_rate'] / MB:.0f}/{r['seed']}" for r in runs if r["paced"] == paced and r["backhitches"]]
            lines.append(f"{'paced' if paced else 'unpaced'} jobs with backhitches (MB/s in/seed): "
                         + (" ".join(bad) or "none"))
    return "\n".join(lines)


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values) if values else float("nan")


def _ratio(a: float, b: float) -> float:
    if b == 0 or math.isnan(a) or math.isnan(b):
        return 1.0 if a == b else float("inf") if b == 0 else float("nan")
    return round(a / b, 3)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    if "--robustness" in sys.argv:
        first, count = 10, 30
        if "--seeds" in sys.argv:  # --seeds 100-129: the seed range (inclusive), to check beyond 10-39
            given = sys.argv[sys.argv.index("--seeds") + 1] if sys.argv.index("--seeds") + 1 < len(sys.argv) else ""
            low, _, high = given.partition("-")
            if not (low.isdigit() and (high or low).isdigit() and int(high or low) >= int(low)):
                sys.exit(f"bench_streaming: --seeds wants a range FIRST-LAST such as 100-129, not {given!r}")
            first, count = int(low), int(high or low) - int(low) + 1
        print(robustness(seeds=count, first_seed=first, show_jobs=True))
        sys.exit(0)
    for row in run(quick="--quick" in sys.argv):
        print(row)
    print((OUT_DIR / "streaming.txt").read_text())
