"""Evaluate draft-length controllers against HaloSpec's fixed modes and print HaloSpec's summary.

    python experiments/evaluate.py                                # embedded decoder, every mode
    python experiments/evaluate.py --backend simulated --scenario load_spike --repeats 5
    python experiments/evaluate.py --model runs/ppo__domain_shift__0__*/model.zip
    python experiments/evaluate.py --backend http --base-url http://localhost:8000 --draft-field lemonade
    python experiments/evaluate.py --from-csv results.csv         # summarise a recorded run (ours or HaloSpec's)

Protocol (HaloSpec's, configurable): per mode, ``--warmup`` unscored requests then ``--steps``
measured requests for fixed modes and ``--adaptive-steps`` for the others. Every mode runs on the
same backend, scenario and seed, so it sees the same prompts, content and (on the simulator) noise:
common random numbers. ``HALOSPEC_LOAD=1`` selects the ``load_spike`` scenario, applied to every
mode alike. Writes ``results.csv``, ``summary.json`` and PNG plots to ``--out-dir``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

import agents
from agents.rollout import run_episode
from envs import HaloSpecEnv
from halospec_rl.backends import BACKEND_NAMES, make_backend
from halospec_rl.load import LOAD_ENV
from halospec_rl.report import (
    ResultsFileError,
    ResultsWriter,
    format_summary,
    is_fixed_mode,
    plot_results,
    read_results,
    summarise,
)
from halospec_rl.scenarios import SCENARIO_NAMES

DEFAULT_MODES = "fixed,adaptive,hf_heuristic,bandits"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--from-csv", metavar="FILE", help="only print the HaloSpec summary of every run in FILE")
    p.add_argument("--backend", default="embedded", choices=BACKEND_NAMES)
    p.add_argument("--preset", default="embedded-cpu", help="simulator preset (--backend simulated)")
    p.add_argument("--embedded-config", default="full", help="embedded model config: full or tiny")
    p.add_argument("--threads", type=int, default=1, help="torch threads of the embedded decoder")
    p.add_argument("--base-url", default="http://localhost:8000", help="server URL (--backend http)")
    p.add_argument("--path", default="/api/v1/chat/completions", help="chat completions path (--backend http)")
    p.add_argument("--draft-field", default="lemonade", help="draft-length field preset: lemonade or llama-server")
    p.add_argument("--model-name", default="Qwen3-0.6B-GGUF", help="model name sent to the server (--backend http)")
    p.add_argument("--replay-csv", help="recorded results to replay (--backend replay)")
    default_scenario = "load_spike" if os.environ.get(LOAD_ENV) == "1" else "steady"
    p.add_argument("--scenario", default=default_scenario, choices=SCENARIO_NAMES)
    p.add_argument("--load-start-step", type=int, default=6, help="load_spike: first loaded measured step")
    p.add_argument("--load-fraction", type=float, default=0.4,
                   help="load_spike: share of each mode's measured requests under load")
    p.add_argument("--modes", default=DEFAULT_MODES,
                   help="comma list of modes; 'fixed' = fixed_1..fixed_max, 'bandits' = every bandit")
    p.add_argument("--model", action="append", default=[], metavar="PATH",
                   help="a trained agent to evaluate (SB3 .zip or bandit .json); repeatable")
    p.add_argument("--warmup", type=int, default=5, help="unscored requests per mode")
    p.add_argument("--steps", type=int, default=10, help="measured requests per fixed mode")
    p.add_argument("--adaptive-steps", type=int, default=15, help="measured requests per other mode")
    p.add_argument("--max-draft-length", type=int, default=8)
    p.add_argument("--max-tokens", type=int, default=64, help="completion tokens per request")
    p.add_argument("--repeats", type=int, default=1, help="seeds to run (seed, seed+1, ...)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out-dir", type=Path, help="default: results/<backend>__<scenario>__<time>")
    p.add_argument("--no-plots", action="store_true")
    args = p.parse_args(argv)
    for name in ("warmup", "steps", "adaptive_steps", "repeats", "max_draft_length", "max_tokens"):
        value = getattr(args, name)
        if value < (0 if name == "warmup" else 1):
            p.error(f"--{name.replace('_', '-')} must be {'>= 0' if name == 'warmup' else '>= 1'}, got {value}")
    for path in args.model:
        if not Path(path).is_file():
            p.error(f"--model {path}: no such file")
    return args


def summarise_csv(path: str) -> int:
    """Print the HaloSpec summary of every run in a results CSV; exit status 2 on a bad file."""
    try:
        runs = read_results(path)
    except ResultsFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for i, records in enumerate(runs, start=1):
        title = "HaloSpec Benchmark Summary" + (f" (run {i} of {len(runs)})" if len(runs) > 1 else "")
        print(format_summary(summarise(records), title=title), end="\n\n")
    return 0


def build_backend(args: argparse.Namespace):
    kwargs: dict = {"max_draft_length": args.max_draft_length}
    if args.backend == "simulated":
        kwargs["preset"] = args.preset
    elif args.backend == "embedded":
        kwargs.update(config=args.embedded_config, num_threads=args.threads)
    elif args.backend == "http":
        kwargs.update(base_url=args.base_url, path=args.path, draft_field=args.draft_field, model=args.model_name)
    elif args.backend == "replay":
        if not args.replay_csv:
            raise SystemExit("error: --backend replay needs --replay-csv FILE")
        kwargs["path"] = args.replay_csv
    backend = make_backend(args.backend, **kwargs)
    if args.backend == "http":
        from halospec_rl.backends.http import ServerUnavailableError

        try:
            backend.health_check()  # fail once, clearly, rather than print a table of failures
        except ServerUnavailableError as exc:
            backend.close()
            print(f"error: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
    return backend


def mode_factories(args: argparse.Namespace) -> dict[str, Callable[[], agents.Policy]]:
    """Mode name -> a function building a fresh policy for one episode."""
    k_max = args.max_draft_length
    factories: dict[str, Callable[[], agents.Policy]] = {}
    for item in (m.strip() for m in args.modes.split(",") if m.strip()):
        names = {
            "fixed": [f"fixed_{k}" for k in range(1, k_max + 1)],
            "bandits": list(agents.BANDIT_NAMES),
        }.get(item, [item])
        for name in names:
            if name not in agents.POLICY_NAMES and not (name.startswith("fixed_") and name[6:].isdigit()):
                raise SystemExit(f"error: unknown mode {name!r}; known: fixed, bandits, {', '.join(agents.POLICY_NAMES)}")
            factories[name] = lambda name=name: agents.make_policy(name, max_draft_length=k_max)
    for path in args.model:
        try:
            name = agents.load_policy(path).name
        except (OSError, ValueError) as exc:
            raise SystemExit(f"error: --model {path}: {exc}") from None
        unique = name
        for i in range(2, 100):
            if unique not in factories:
                break
            unique = f"{name}_{i}"
        factories[unique] = lambda path=path: agents.load_policy(path)
    return factories


def repeats_table(scores: dict[str, list[float]]) -> tuple[str, list[dict]]:
    """Mean score with its 95% interval per mode and a paired t-test against the best fixed mode."""
    from scipy import stats as st

    fixed = {m: s for m, s in scores.items() if is_fixed_mode(m)}
    best_fixed = min(fixed, key=lambda m: np.mean(fixed[m])) if fixed else None
    n = len(next(iter(scores.values())))
    oracle = np.min(np.array(list(fixed.values())), axis=0) if fixed else None
    lines = [f"Repeats: {n} seeds; 95% t-interval of the mean score; paired t-test against {best_fixed}",
             f"{'mode':<16}{'mean score':>12}{'95% CI':>22}{'vs best fixed':>15}{'p':>9}{'regret':>10}"]
    rows = []
    for mode, values in scores.items():
        v = np.asarray(values, float)
        half = st.t.ppf(0.975, n - 1) * v.std(ddof=1) / math.sqrt(n) if n > 1 else float("nan")
        row = {"mode": mode, "mean_score": float(v.mean()), "ci95_low": float(v.mean() - half),
               "ci95_high": float(v.mean() + half)}
        diff_text, p_text = "", ""
        if best_fixed is not None and mode != best_fixed and n > 1:
            base = np.asarray(scores[best_fixed], float)
            d = v - base
            p_value = float(st.ttest_rel(v, base).pvalue) if np.any(d != d[0]) else (0.0 if d[0] != 0 else 1.0)
            row.update(diff_vs_best_fixed_pct=float(100 * d.mean() / base.mean()), p_value=p_value,
                       significant=p_value < 0.05)
            diff_text, p_text = f"{row['diff_vs_best_fixed_pct']:+.1f}%", f"{p_value:.3f}"
        if oracle is not None:
            row["regret_vs_oracle"] = float(np.mean(v - oracle))
        rows.append(row)
        ci = f"[{row['ci95_low']:.1f}, {row['ci95_high']:.1f}]" if n > 1 else "-"
        lines.append(f"{mode:<16}{row['mean_score']:>12.1f}{ci:>22}{diff_text:>15}{p_text:>9}"
                     f"{row.get('regret_vs_oracle', float('nan')):>10.1f}")
    if oracle is not None:
        lines.append(f"{'oracle (best fixed per seed)':<28}{oracle.mean():>12.1f}")
    return "\n".join(lines), rows


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.from_csv:
        return summarise_csv(args.from_csv)

    factories = mode_factories(args)
    scenario_kwargs = (
        {"start_step": args.load_start_step, "load_fraction": args.load_fraction}
        if args.scenario == "load_spike"
        else {}
    )
    stamp = time.strftime("%Y%m%d-%H%M%S")
    out_dir = args.out_dir or Path("results") / f"{args.backend}__{args.scenario}__{stamp}"
    backend = build_backend(args)
    out_dir.mkdir(parents=True, exist_ok=True)
    all_runs, scores = [], {mode: [] for mode in factories}
    try:
        with ResultsWriter(out_dir / "results.csv") as writer:
            for seed in range(args.seed, args.seed + args.repeats):
                run_records = []
                global_step = 0  # each seed is one run; HaloSpec's CSV restarts global_step at 1 per run
                for mode, factory in factories.items():
                    env = HaloSpecEnv(
                        backend=backend,
                        scenario=args.scenario,
                        episode_length=args.steps if is_fixed_mode(mode) else args.adaptive_steps,
                        max_draft_length=args.max_draft_length,
                        warmup_steps=args.warmup,
                        max_tokens=args.max_tokens,
                        scenario_kwargs=scenario_kwargs,
                    )
                    records = run_episode(env, factory(), seed, mode=mode, on_record=writer.write,
                                          global_step_start=global_step)
                    global_step += len(records)
                    run_records += records
                stats = summarise(run_records)
                for s in stats:
                    scores[s.mode].append(s.score if s.score is not None else math.nan)
                title = "HaloSpec Benchmark Summary" + (f" (seed {seed})" if args.repeats > 1 else "")
                print(format_summary(stats, title=title), end="\n\n", flush=True)
                all_runs.append((seed, stats, run_records))
    finally:
        backend.close()

    summary = {"config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
               "backend": getattr(backend, "name", args.backend),
               # what produced the numbers (models, torch threads, burners), where the backend says
               "backend_description": backend.describe() if hasattr(backend, "describe") else {},
               "runs": [{"seed": seed, "modes": [s.to_dict() for s in stats]} for seed, stats, _ in all_runs]}
    if args.repeats > 1:
        table, rows = repeats_table(scores)
        print(table)
        summary["repeats"] = rows
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    if not args.no_plots:
        seed, stats, records = all_runs[0]
        plot_results(stats, records, out_dir, title=f"{args.backend} / {args.scenario} / seed {seed}")
    print(f"\nResults: {out_dir}/ (results.csv, summary.json{'' if args.no_plots else ', *.png'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
