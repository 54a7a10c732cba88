"""Streaming model: does the agent's bounded buffer keep an LTO-9 drive streaming?

A pure simulation on the virtual clock (no files; about a minute for the full sweep on 2 cores):

* **producer** — the agent reading Exchange: 1 MiB reads (``reference/agent`` READ_SIZE) whose
  latency is bursty: a peak-rate transfer time plus log-normal jitter plus, now and then, a
  heavy-tailed (Pareto) stall; scaled so the mean rate is the swept value. Seeded through
  ``emulators.clock.SeedSequence`` (stream ``bench.streaming.producer.<rate>``).
* **agent buffer** — the bytes between agent and server (``LocalSession.max_buffered``): a read
  chunk enters when it fits (or the buffer is empty, as ``LocalSession.send`` allows), otherwise
  the producer waits.
* **server + drive** — the server takes one chunk at a time, cuts it into tape blocks and writes
  each through the drive engineer's timing model, ``emulators.tape.timing.DriveTiming`` with the
  LTO-9 profiles (400 MB/s native, speed steps 408 … 177 MB/s, 1 GiB drive buffer, backhitch).
  Two server policies: *as-is* (blocks written as soon as a chunk arrives, what
  reference/server does) and *paced* (blocks spaced at the producer rate the server measured).

Swept: policy × agent buffer × block size × mean producer rate, each point a few seeded jobs.
Reported per point: backhitches (per TB), drive utilisation (fraction of the elapsed time the
tape was moving data), delivered MB/s, mean speed step; as rows, ``benchmarks/out/streaming.txt``
/ ``.json`` and the plot ``benchmarks/out/streaming.png``. docs/performance.md has the findings.

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

import numpy as np

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
    paced: bool = False
    """Server policy: write tape blocks at the measured producer rate instead of as they come."""


PACE_WINDOW = 10.0
"""Seconds over which a pacing server averages the producer's rate (exponential window)."""
PACE_WARMUP = 2.0
"""Seconds at the start of a job during which a pacing server writes at the lowest speed step."""


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


def simulate(point: Point, profile: ProducerProfile = ProducerProfile(), drive: str = "LTO-9") -> dict:
    """One run: ``point.volume`` bytes from the producer through the agent buffer to the drive."""
    from emulators.clock import VirtualClock
    from emulators.tape.profiles import drive_profile, media_profile
    from emulators.tape.timing import DriveTiming

    chunk = profile.read_size
    count = max(1, point.volume // chunk)
    durations = read_durations(profile, point.mean_rate, count, point.seed).tolist()
    clock = VirtualClock(0.0)
    timing = DriveTiming(clock, drive_profile(drive))
    timing.set_media(media_profile(drive))
    capacity, block = point.buffer_bytes, point.block_size

    produced = 0          # chunks that entered the agent buffer
    ready_at = durations[0]  # when the chunk being read is complete
    room_at = 0.0         # when the buffer last made room for a waiting chunk
    held = 0              # bytes in the agent buffer
    peak_held = 0
    producer_wait = 0.0
    in_hand = 0           # bytes the server took but has not written yet
    floor = min(media_profile(drive).speed_steps)
    rate_sum, rate_at = 0.0, 0.0  # pacing: exponentially weighted bytes/s of deposits
    next_write_at = 0.0

    def deposit(until: float) -> None:
        nonlocal produced, ready_at, held, peak_held, producer_wait, rate_sum, rate_at
        while produced < count and ready_at <= until:
            if held and held + chunk > capacity:
                return  # the producer waits for room (LocalSession.send)
            entered = max(ready_at, room_at)
            producer_wait += entered - ready_at
            rate_sum = rate_sum * math.exp(-(entered - rate_at) / PACE_WINDOW) + chunk
            rate_at = entered
            held += chunk
            peak_held = max(peak_held, held)
            produced += 1
            if produced < count:
                ready_at = entered + durations[produced]

    total = count * chunk
    written = 0
    while written < total:
        now = clock.now()
        deposit(now)
        while in_hand < block and held:
            blocked = produced < count and ready_at <= now
            held -= chunk
            in_hand += chunk
            if blocked:
                room_at = now
                deposit(now)
        if in_hand >= block or (in_hand and produced == count and not held):
            if point.paced and now < next_write_at and produced < count:  # the tail goes at full speed
                clock.sleep_until(next_write_at)
                continue
            n = min(block, in_hand)
            timing.write(n, n)
            in_hand -= n
            written += n
            if point.paced:
                t = clock.now()
                seen = max(t, 1e-9)
                estimate = (rate_sum * math.exp(-(t - rate_at) / PACE_WINDOW) / PACE_WINDOW
                            / (1.0 - math.exp(-seen / PACE_WINDOW)))  # unbiased while the window fills
                if t < PACE_WARMUP:
                    estimate = floor  # start slow: the window is too young to trust
                pace = max(floor, estimate) * (1.0 + held / max(capacity, chunk))  # catch up when full
                next_write_at = t + block / pace
        elif produced < count:
            clock.sleep_until(max(ready_at, room_at))
        else:  # pragma: no cover - nothing left anywhere, loop condition ends it
            break
    timing.flush()
    elapsed = clock.now()
    counters = timing.counters
    moving = sum(counters.seconds_at_step.values())
    mean_step = (sum(step * s for step, s in counters.seconds_at_step.items()) / moving) if moving else 0.0
    return {
        **asdict(point),
        "producer_rate_realised": total / float(sum(durations)),
        "backhitches": counters.backhitches,
        "backhitches_per_tb": counters.backhitches / (total / TB),
        "utilisation": moving / elapsed if elapsed else 0.0,
        "throughput": total / elapsed if elapsed else 0.0,
        "mean_step_mbs": mean_step,
        "lowest_step_share": counters.seconds_at_step.get(min(counters.seconds_at_step, default=0), 0.0)
        / moving if moving else 0.0,
        "host_wait_seconds": counters.host_wait_seconds,
        "producer_wait_seconds": producer_wait,
        "agent_buffer_peak": peak_held,
        "elapsed_seconds": elapsed,
    }


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


def plan(quick: bool) -> dict:
    """The sweep. The server as-is is swept over both block sizes (the drive's speed matching sees
    the block arrivals); pacing over the default block only (it spaces the blocks itself)."""
    default, block = default_agent_buffer(), default_block_size()
    if quick:
        return {"as_is": {"buffers": [0, default], "blocks": [1 * MiB]},
                "paced": {"buffers": [0, default], "blocks": [1 * MiB]},
                "rates": [150 * MB, 200 * MB, 300 * MB], "volume": 500_000_000, "seeds": [10]}
    return {"as_is": {"buffers": sorted({0, default, 1 << 30, 4 << 30}), "blocks": sorted({block, 1 * MiB})},
            "paced": {"buffers": sorted({0, 16 * MiB, default, 256 * MiB, 1 << 30, 4 << 30}), "blocks": [block]},
            "rates": [150 * MB, 185 * MB, 200 * MB, 250 * MB, 300 * MB, 400 * MB],
            "volume": 4_000_000_000, "seeds": [10, 11, 12]}


def points_for(setup: dict) -> list[Point]:
    return [Point(b, k, r, setup["volume"], seed, paced=(policy == "paced"))
            for policy in ("as_is", "paced") for b in setup[policy]["buffers"] for k in setup[policy]["blocks"]
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
            "backhitches_per_tb": backhitches / (volume / TB), "utilisation": moving / elapsed if elapsed else 0.0,
            "throughput": volume / elapsed if elapsed else 0.0,
            "mean_step_mbs": sum(m["mean_step_mbs"] * m["elapsed_seconds"] for m in members) / elapsed
            if elapsed else 0.0,
            "agent_buffer_peak": max(m["agent_buffer_peak"] for m in members),
            "producer_wait_seconds": sum(m["producer_wait_seconds"] for m in members),
            "host_wait_seconds": sum(m["host_wait_seconds"] for m in members),
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
        policy = "server paces writes at the measured producer rate" if paced else \
            "server writes blocks as chunks arrive (today)"
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
    lines = [f"{'server':>6} {'agent buffer':>12} {'block':>7} {'MB/s in':>7} {'jobs':>4} {'backhitches':>11} {'per TB':>7} "
             f"{'util':>5} {'MB/s out':>8} {'mean step':>9}"]
    for r in sorted(results, key=lambda r: (r["paced"], r["buffer_bytes"], r["block_size"], r["mean_rate"])):
        lines.append(f"{'paced' if r['paced'] else 'as-is':>6} {_size(r['buffer_bytes']):>12} "
                     f"{_size(r['block_size']):>7} {r['mean_rate'] / MB:>7.0f} {r['jobs']:>4} {r['backhitches']:>11} "
                     f"{r['backhitches_per_tb']:>7.0f} {r['utilisation']:>5.2f} {r['throughput'] / MB:>8.0f} "
                     f"{r['mean_step_mbs']:>9.0f}")
    return "\n".join(lines)


def run(quick: bool = False, out_dir: Path | None = None, workers: int | None = None) -> list[dict]:
    out_dir = Path(out_dir or (OUT_DIR / "quick" if quick else OUT_DIR))  # a smoke run keeps the real plot
    setup = plan(quick)
    default, floor, block = default_agent_buffer(), lowest_step(), default_block_size()
    workers = workers if workers is not None else (1 if quick else min(2, os.cpu_count() or 1))
    results = combine(sweep(points_for(setup), workers))
    as_is = [r for r in results if not r["paced"]]
    paced = [r for r in results if r["paced"]]
    needed = {"as_is": needed_buffer(as_is, floor), "paced": needed_buffer(paced, floor)}

    out_dir.mkdir(parents=True, exist_ok=True)
    plot(results, out_dir / "streaming.png", default, floor, block if block in setup["paced"]["blocks"]
         else setup["paced"]["blocks"][0])
    (out_dir / "streaming.txt").write_text(table(results) + "\n", encoding="utf-8")
    (out_dir / "streaming.json").write_text(json.dumps({
        "producer": asdict(ProducerProfile()), "pace_window_seconds": PACE_WINDOW, "default_agent_buffer": default,
        "lowest_step": floor, "needed_buffer": needed, "points": results}, indent=1) + "\n", encoding="utf-8")

    def worst(rows, size):
        return max((r["backhitches_per_tb"] for r in rows if r["buffer_bytes"] == size and r["mean_rate"] > floor),
                   default=float("nan"))

    mid = min(setup["rates"], key=lambda r: abs(r - 250 * MB))

    def util(rows):
        return _mean(r["utilisation"] for r in rows if r["buffer_bytes"] == default and r["mean_rate"] == mid)

    largest = max(setup["as_is"]["buffers"] + setup["paced"]["buffers"])
    rows = [
        {"name": f"streaming (server as-is): worst backhitches/TB above {floor / MB:.0f} MB/s, default agent "
                 f"buffer {_size(default)} (baseline: no agent buffer)",
         "value": round(worst(as_is, default), 1), "unit": "per TB", "baseline": round(worst(as_is, 0), 1),
         "ratio": _ratio(worst(as_is, default), worst(as_is, 0)), "target": "value <= 0"},
        {"name": f"streaming (server paces writes): worst backhitches/TB above {floor / MB:.0f} MB/s, default "
                 f"buffer (baseline: server as-is)",
         "value": round(worst(paced, default), 1), "unit": "per TB", "baseline": round(worst(as_is, default), 1),
         "ratio": _ratio(worst(paced, default), worst(as_is, default)), "target": "value <= 0"},
        {"name": f"streaming: drive utilisation at {mid / MB:.0f} MB/s, default buffer, paced (baseline: as-is)",
         "value": round(util(paced), 3), "unit": "fraction", "baseline": round(util(as_is), 3),
         "ratio": _ratio(util(paced), util(as_is)), "target": "ratio >= 1"},
    ]
    for policy, label in (("as_is", "as-is"), ("paced", "paced")):
        size = needed[policy]
        rows.append({
            "name": f"streaming (server {label}): smallest agent buffer with zero backhitches above the lowest step"
                    + ("" if size is not None else f" (none up to {_size(largest)}: value = that bound)"),
            "value": round((size if size is not None else largest) / MiB, 1), "unit": "MiB",
            "baseline": round(default / MiB, 1), "ratio": _ratio(size if size is not None else math.inf, default),
            "target": "ratio <= 1"})
    return rows


def _mean(values) -> float:
    values = list(values)
    return sum(values) / len(values) if values else float("nan")


def _ratio(a: float, b: float) -> float:
    if b == 0 or math.isnan(a) or math.isnan(b):
        return 1.0 if a == b else float("inf") if b == 0 else float("nan")
    return round(a / b, 3)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    for row in run(quick="--quick" in sys.argv):
        print(row)
    print((OUT_DIR / "streaming.txt").read_text())
