"""Speed of the embedded speculative decoder per domain and draft length k = 0..8, idle and loaded.

    python benchmarks/decoder_speed.py [--repeats 8] [--domains code,prose,random] [--temperature 0]
                                       [--burners 2] [--threads 1] [--no-load] [--csv runs/decoder_speed.csv]

For each phase (idle, then loaded with ``--burners`` CPU burner processes) it sends ``--repeats``
requests of ``--tokens`` (64) new tokens per domain and k, interleaving the k values so drift in the
machine's background load hits every k alike. Per domain and k it prints the mean, median and p95
(nearest-rank) latency, tok/s, acceptance rate and tokens per target pass, then the best k (lowest
median latency: timing noise is 10-30%) and its speedup over k = 0, and the load factor (loaded mean
latency / idle mean latency). With ``--csv`` every request is also written as a results-CSV record
(mode ``fixed_<k>``, phase ``steady`` or ``load``, domain, drafted/accepted) for fitting the simulator.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
from collections import defaultdict
from dataclasses import dataclass, field

from halospec_rl.backends import DOMAINS, Prompt, RequestResult
from halospec_rl.backends.embedded import EmbeddedBackend
from halospec_rl.load import DEFAULT_BURNERS
from halospec_rl.metrics import nearest_rank, slo_score
from halospec_rl.report import RequestRecord, ResultsWriter

PHASES = {"steady": 0.0, "load": 1.0}  # phase name (as the results CSV has it) -> load level


@dataclass
class Cell:
    """The requests of one (phase, domain, k)."""

    results: list[RequestResult] = field(default_factory=list)

    @property
    def latencies(self) -> list[float]:
        return sorted(r.latency_ms for r in self.results if r.success)

    def row(self) -> dict[str, float]:
        ok = [r for r in self.results if r.success]
        lat = self.latencies
        drafted = sum(r.drafted for r in ok)
        return {
            "mean": statistics.fmean(lat),
            "median": nearest_rank(lat, 50),
            "p95": nearest_rank(lat, 95),
            "score": slo_score(lat),
            "tok_s": sum(r.tokens for r in ok) / (sum(lat) / 1000.0),
            "accept": sum(r.accepted for r in ok) / drafted if drafted else math.nan,
            "tok_round": sum(r.tokens for r in ok) / sum(r.rounds for r in ok),
        }


def measure(
    backend: EmbeddedBackend,
    domains: list[str],
    ks: list[int],
    repeats: int,
    tokens: int,
    phases: list[str],
    writer: ResultsWriter | None,
) -> dict[tuple[str, str, int], Cell]:
    cells: dict[tuple[str, str, int], Cell] = defaultdict(Cell)
    step_of_mode: dict[str, int] = defaultdict(int)
    global_step = 0
    for phase in phases:
        backend.set_load(PHASES[phase], phase)
        for domain in domains:  # warm up caches and allocator; not recorded
            backend.generate(Prompt(domain=domain, seed=10_000, max_tokens=tokens), max(ks))
        for rep in range(repeats):
            for domain in domains:
                # Rotate the k order each repeat so no k always runs first after a domain switch.
                for k in ks[rep % len(ks) :] + ks[: rep % len(ks)]:
                    result = backend.generate(Prompt(domain=domain, seed=rep, max_tokens=tokens), k)
                    cells[phase, domain, k].results.append(result)
                    global_step += 1
                    step_of_mode[f"fixed_{k}"] += 1
                    if writer is not None:
                        writer.write(
                            RequestRecord(
                                global_step=global_step,
                                step=step_of_mode[f"fixed_{k}"],
                                mode=f"fixed_{k}",
                                phase=phase,
                                draft_length=k,
                                success=result.success,
                                latency_ms=result.latency_ms,
                                tokens=result.tokens,
                                drafted=result.drafted,
                                accepted=result.accepted,
                                domain=domain,
                                load=result.load,
                                backend=backend.name,
                                scenario="decoder_speed",
                                seed=rep,
                                error=result.error,
                            )
                        )
    backend.set_load(0.0)
    return cells


def report(
    cells: dict[tuple[str, str, int], Cell], domains: list[str], ks: list[int], phases: list[str]
) -> str:
    lines = []
    best: dict[tuple[str, str], tuple[int, float, int]] = {}
    for phase in phases:
        for domain in domains:
            lines.append(f"\n[{phase}] {domain}")
            lines.append(
                f"{'k':>2} {'mean ms':>8} {'median':>8} {'p95':>8} {'score':>8} {'tok/s':>7} {'accept':>7} {'tok/round':>9} {'speedup':>8}"
            )
            rows = {k: cells[phase, domain, k].row() for k in ks}
            base = rows[ks[0]]["median"]
            for k, r in rows.items():
                lines.append(
                    f"{k:>2} {r['mean']:8.1f} {r['median']:8.1f} {r['p95']:8.1f} {r['score']:8.1f} {r['tok_s']:7.0f} "
                    f"{r['accept']:7.2f} {r['tok_round']:9.2f} {base / r['median']:7.2f}x"
                )
            k_best = min(rows, key=lambda k: rows[k]["median"])
            k_score = min(rows, key=lambda k: rows[k]["score"])
            best[phase, domain] = (k_best, base / rows[k_best]["median"], k_score)
    lines.append(f"\nbest k (lowest median latency) and its speedup over k={ks[0]} (ratio of medians);"
                 " best k by HaloSpec's score (what the agents minimise):")
    for (phase, domain), (k, speedup, k_score) in best.items():
        lines.append(f"  {phase:<6} {domain:<6} k={k}  {speedup:.2f}x   by score: k={k_score}")
    if len(phases) == 2:
        lines.append("load factor (loaded mean latency / idle mean latency, all k):")
        for domain in domains:
            idle = statistics.fmean(cells["steady", domain, k].row()["mean"] for k in ks)
            loaded = statistics.fmean(cells["load", domain, k].row()["mean"] for k in ks)
            lines.append(f"  {domain:<6} {loaded / idle:.2f}x")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="full", help="decoder models (full or tiny)")
    p.add_argument("--domains", default=",".join(DOMAINS))
    p.add_argument("--max-k", type=int, default=8, help="measure k = 0..max-k")
    p.add_argument("--repeats", type=int, default=8, help="requests per domain, k and phase")
    p.add_argument("--tokens", type=int, default=64, help="new tokens per request")
    p.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (HaloSpec's setting)")
    p.add_argument("--threads", type=int, default=1, help="torch threads of the decoder")
    p.add_argument("--burners", type=int, default=DEFAULT_BURNERS, help="CPU burner processes when loaded")
    p.add_argument("--no-load", action="store_true", help="idle phase only")
    p.add_argument("--csv", default=None, help="also append every request to this results CSV")
    args = p.parse_args(argv)

    domains = args.domains.split(",")
    ks = list(range(args.max_k + 1))
    phases = ["steady"] if args.no_load else list(PHASES)
    backend = EmbeddedBackend(
        config=args.config,
        temperature=args.temperature,
        num_threads=args.threads,
        max_draft_length=args.max_k,
        load_processes=args.burners,
    )
    print(backend.describe())
    print(
        f"cpus={os.cpu_count()} loadavg(1,5,15 min)={os.getloadavg()} repeats={args.repeats} tokens={args.tokens}"
    )
    writer = ResultsWriter(args.csv) if args.csv else None
    try:
        cells = measure(backend, domains, ks, args.repeats, args.tokens, phases, writer)
    finally:
        backend.close()
        if writer is not None:
            writer.close()
    print(report(cells, domains, ks, phases))
    print(f"loadavg after: {os.getloadavg()}")
    if args.csv:
        print(f"wrote {args.csv}")


if __name__ == "__main__":
    main()
