"""experiments/evaluate.py on the simulator: every mode in HaloSpec's table, the Winner line, the CSV,
summary.json and PNG files, repeats with intervals, trained models as modes, ``--from-csv``, and one
clear error for bad input."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # the repo's packages, also when it is not pip-installed
    sys.path.insert(0, str(REPO))

import agents  # noqa: E402
from halospec_rl.report import HALOSPEC_COLUMNS  # noqa: E402

FIXED = [f"fixed_{k}" for k in range(1, 9)]
ALL_MODES = [*FIXED, "adaptive", "hf_heuristic", *agents.BANDIT_NAMES]
WARMUP, STEPS, ADAPTIVE_STEPS = 1, 3, 4
SIM = [
    "--backend",
    "simulated",
    "--scenario",
    "steady",
    "--warmup",
    str(WARMUP),
    "--steps",
    str(STEPS),
    "--adaptive-steps",
    str(ADAPTIVE_STEPS),
]
STATISTICS = (
    "steps",
    "successes",
    "failures",
    "success_rate",
    "avg_ms",
    "median_ms",
    "p95_ms",
    "min_ms",
    "max_ms",
    "stddev_ms",
    "throughput_tok_s",
    "score",
    "draft_length_changes",
    "converged_at_step",
)
WINNER = re.compile(r"^Winner \(lowest SLO-aware score\): (\S+) at (\d+\.\d)$", re.MULTILINE)
PNGS = ("score_by_mode.png", "latency_and_draft_length_by_step.png")


def load_script(name: str):
    """Import ``experiments/<name>.py`` by path (experiments/ is not a package)."""
    path = REPO / "experiments" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_experiments_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


evaluate = load_script("evaluate")


def run(argv: list[str]) -> tuple[int, str]:
    """``evaluate.main(argv)`` and its stdout (usable in module-scoped fixtures, unlike capsys)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = evaluate.main(argv)
    return code, out.getvalue()


def table_rows(text: str, modes: list[str]) -> dict[str, str]:
    """The summary row of each mode (the line starting with the mode name and a step count)."""
    rows = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) > 2 and parts[0] in modes and parts[1].isdigit():
            assert parts[0] not in rows, f"{parts[0]} listed twice:\n{text}"
            rows[parts[0]] = line
    return rows


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out_dir = tmp_path_factory.mktemp("eval") / "out"
    code, text = run([*SIM, "--out-dir", str(out_dir), "--no-plots"])
    assert code == 0
    return out_dir, text


# ------------------------------------------------------------------------------------- table and files
def test_table_lists_every_mode_and_the_winner(plain_run: tuple[Path, str]) -> None:
    out_dir, text = plain_run
    assert "HaloSpec Benchmark Summary" in text
    rows = table_rows(text, ALL_MODES)
    assert list(rows) == ALL_MODES, text
    for mode, row in rows.items():
        expected = STEPS if mode in FIXED else ADAPTIVE_STEPS
        assert row.split()[1] == str(expected), row
    assert "[Adaptive Behavior]" in text

    match = WINNER.search(text)
    assert match, text
    modes = json.loads((out_dir / "summary.json").read_text())["runs"][0]["modes"]
    best = min(modes, key=lambda m: m["score"])
    assert match.group(1) == best["mode"]
    assert float(match.group(2)) == pytest.approx(best["score"], abs=0.05)


def test_writes_csv_and_summary_json_with_every_statistic(plain_run: tuple[Path, str]) -> None:
    out_dir, text = plain_run
    assert (out_dir / "results.csv").is_file()
    lines = (out_dir / "results.csv").read_text().splitlines()
    assert tuple(lines[0].split(",")[: len(HALOSPEC_COLUMNS)]) == HALOSPEC_COLUMNS
    expected_rows = sum(WARMUP + (STEPS if m in FIXED else ADAPTIVE_STEPS) for m in ALL_MODES)
    assert len(lines) - 1 == expected_rows

    summary = json.loads((out_dir / "summary.json").read_text())
    assert summary["config"]["backend"] == "simulated"
    assert len(summary["runs"]) == 1 and summary["runs"][0]["seed"] == 0
    modes = {m["mode"]: m for m in summary["runs"][0]["modes"]}
    assert list(modes) == ALL_MODES
    for mode, stats in modes.items():
        missing = [s for s in STATISTICS if s not in stats]
        assert not missing, (mode, missing)
        assert stats["steps"] == (STEPS if mode in FIXED else ADAPTIVE_STEPS)
        assert stats["score"] is not None and stats["score"] > 0
        assert stats["min_ms"] <= stats["median_ms"] <= stats["p95_ms"] <= stats["max_ms"]
        # the JSON holds what the table prints
        assert table_rows(text, [mode])[mode].split()[-1] == f"{stats['score']:.1f}"
    assert "repeats" not in summary
    assert not list(out_dir.glob("*.png"))  # --no-plots


def test_every_mode_sees_the_same_workload(plain_run: tuple[Path, str]) -> None:
    """Common random numbers: the fixed modes get the same prompt domains step by step."""
    out_dir, _ = plain_run
    header, *rows = (out_dir / "results.csv").read_text().splitlines()
    columns = header.split(",")
    domains: dict[str, list[str]] = {}
    for row in rows:
        record = dict(zip(columns, row.split(","), strict=True))
        domains.setdefault(record["mode"], []).append(record["domain"])
    assert len({tuple(domains[m]) for m in FIXED}) == 1


def test_plots_and_trained_models_as_modes(tmp_path: Path) -> None:
    from stable_baselines3 import PPO

    from agents.sb3 import SB3Policy
    from envs import HaloSpecEnv

    env = HaloSpecEnv(backend="simulated", scenario="steady", episode_length=10)
    ppo_path = SB3Policy(
        PPO("MlpPolicy", env, n_steps=16, batch_size=16, seed=0, policy_kwargs={"net_arch": [8]}), name="ppo"
    ).save(tmp_path / "ppo.zip")
    env.close()
    bandit = agents.make_policy("sw_ucb")
    bandit.reset(0)
    bandit_path = agents.save_policy(bandit, tmp_path / "sw_ucb.json")

    out_dir = tmp_path / "out"
    code, text = run(
        [
            *SIM,
            "--modes",
            "fixed,sw_ucb",
            "--model",
            str(ppo_path),
            "--model",
            str(bandit_path),
            "--out-dir",
            str(out_dir),
        ]
    )
    assert code == 0
    modes = [*FIXED, "sw_ucb", "ppo", "sw_ucb_2"]  # a loaded model never shadows a mode of the same name
    assert list(table_rows(text, modes)) == modes, text
    assert WINNER.search(text)
    summary = json.loads((out_dir / "summary.json").read_text())
    assert [m["mode"] for m in summary["runs"][0]["modes"]] == modes
    for name in PNGS:
        png = out_dir / name
        assert png.is_file(), sorted(p.name for p in out_dir.iterdir())
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert png.stat().st_size > 1000


def test_repeats_adds_intervals(tmp_path: Path) -> None:
    out_dir = tmp_path / "out"
    modes = [*FIXED, "adaptive", "ucb1"]
    code, text = run(
        [
            *SIM,
            "--modes",
            "fixed,adaptive,ucb1",
            "--repeats",
            "3",
            "--seed",
            "5",
            "--out-dir",
            str(out_dir),
            "--no-plots",
        ]
    )
    assert code == 0
    for seed in (5, 6, 7):
        assert f"HaloSpec Benchmark Summary (seed {seed})" in text
    assert len(WINNER.findall(text)) == 3
    assert "Repeats: 3 seeds" in text
    tail = text[text.index("Repeats: 3 seeds") :]
    assert "95% CI" in tail and "oracle" in tail
    for mode in modes:
        assert re.search(rf"^{mode}\s+\d+\.\d\s+\[\d+\.\d, \d+\.\d\]", tail, re.MULTILINE), (mode, tail)

    summary = json.loads((out_dir / "summary.json").read_text())
    assert [r["seed"] for r in summary["runs"]] == [5, 6, 7]
    rows = {r["mode"]: r for r in summary["repeats"]}
    assert list(rows) == modes
    best_fixed = min(FIXED, key=lambda m: rows[m]["mean_score"])
    for mode, row in rows.items():
        scores = [next(m["score"] for m in r["modes"] if m["mode"] == mode) for r in summary["runs"]]
        assert row["mean_score"] == pytest.approx(sum(scores) / 3)
        assert row["ci95_low"] <= row["mean_score"] <= row["ci95_high"]
        assert row["regret_vs_oracle"] >= -1e-9 or mode not in FIXED
        if mode != best_fixed:
            assert 0.0 <= row["p_value"] <= 1.0
            assert isinstance(row["significant"], bool)
            assert math.isfinite(row["diff_vs_best_fixed_pct"])


# ---------------------------------------------------------------------------------------------- from CSV
def test_from_csv_reproduces_the_summary(plain_run: tuple[Path, str], capsys) -> None:
    out_dir, text = plain_run
    assert evaluate.main(["--from-csv", str(out_dir / "results.csv")]) == 0
    again = capsys.readouterr().out
    assert table_rows(again, ALL_MODES) == table_rows(text, ALL_MODES)
    assert WINNER.search(again).group(0) == WINNER.search(text).group(0)


def test_from_csv_script_entry_point(plain_run: tuple[Path, str], tmp_path: Path) -> None:
    """``python experiments/evaluate.py --from-csv FILE`` as a user runs it, from another directory."""
    out_dir, text = plain_run
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    done = subprocess.run(
        [
            sys.executable,
            str(REPO / "experiments" / "evaluate.py"),
            "--from-csv",
            str(out_dir / "results.csv"),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert table_rows(done.stdout, ALL_MODES) == table_rows(text, ALL_MODES)
    assert WINNER.search(done.stdout)

    bad = tmp_path / "bad.csv"
    bad.write_text(
        ",".join(HALOSPEC_COLUMNS)
        + "\n1,1,fixed_1,steady,1,true,12.5,64\n2,2,fixed_1,steady,1,true,oops,64\n"
    )
    done = subprocess.run(
        [sys.executable, str(REPO / "experiments" / "evaluate.py"), "--from-csv", str(bad)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().count("\n") == 0, done.stderr
    assert str(bad) in done.stderr and "row 3" in done.stderr and "latency_ms" in done.stderr


@pytest.mark.parametrize(
    ("content", "needles"),
    [
        (
            ",".join(HALOSPEC_COLUMNS)
            + "\n1,1,fixed_1,steady,1,true,12.5,64\n1,2,fixed_1,steady,1,maybe,12.5,64\n",
            ["row 3", "column success", "'maybe'"],
        ),
        (
            ",".join(HALOSPEC_COLUMNS) + "\n1,1,fixed_1,steady,1.5,true,12.5,64\n",
            ["row 2", "column draft_length"],
        ),
        (",".join(HALOSPEC_COLUMNS) + "\n1,1,fixed_1,steady,1,true,nan,64\n", ["row 2", "column latency_ms"]),
        ("global_step,step,mode\n1,1,fixed_1\n", ["missing column", "phase"]),
        ("", ["empty"]),
    ],
)
def test_malformed_csv_gives_one_line_and_exit_2(
    tmp_path: Path, capsys, content: str, needles: list[str]
) -> None:
    path = tmp_path / "malformed.csv"
    path.write_text(content)
    assert evaluate.main(["--from-csv", str(path)]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert str(path) in lines[0]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert "Traceback" not in captured.err


# ------------------------------------------------------------------------------------------ bad flags
@pytest.mark.parametrize(
    ("flags", "needles"),
    [
        (["--model", "no/such/model.zip"], ["no/such/model.zip", "no such file"]),
        (["--scenario", "nosuchscenario"], ["'nosuchscenario'", "--scenario"]),
        (["--backend", "nosuchbackend"], ["'nosuchbackend'", "--backend"]),
        (["--steps", "-1"], ["--steps", "-1"]),
        (["--repeats", "0"], ["--repeats", "0"]),
        (["--warmup", "-2"], ["--warmup", "-2"]),
    ],
)
def test_bad_flags_give_one_clear_error(tmp_path: Path, capsys, flags: list[str], needles: list[str]) -> None:
    out_dir = tmp_path / "out"
    with pytest.raises(SystemExit) as exc:
        evaluate.main(["--backend", "simulated", *flags, "--out-dir", str(out_dir)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    error_lines = [line for line in err.splitlines() if "error:" in line]
    assert len(error_lines) == 1, err
    for needle in needles:
        assert needle in error_lines[0], (needle, error_lines[0])
    assert not out_dir.exists()


@pytest.mark.parametrize(
    ("flags", "needles"),
    [
        (["--modes", "fixed,nosuchmode"], ["'nosuchmode'"]),
        (["--model", "{model}"], ["{model}", "not a saved policy"]),
    ],
)
def test_bad_mode_or_model_file_gives_one_clear_error(
    tmp_path: Path, capsys, flags: list[str], needles: list[str]
) -> None:
    model = tmp_path / "not_a_policy.json"
    model.write_text('{"nam": "sw_ucb"}')
    out_dir = tmp_path / "out"
    with pytest.raises(SystemExit) as exc:
        evaluate.main([*SIM, *(f.format(model=model) for f in flags), "--out-dir", str(out_dir)])
    message = exc.value.code
    assert isinstance(message, str) and message.startswith("error:"), message
    assert "\n" not in message
    for needle in needles:
        assert needle.format(model=model) in message, (needle, message)
    assert "Traceback" not in capsys.readouterr().err
    assert not out_dir.exists()


def test_http_backend_with_nothing_listening_names_the_url(tmp_path: Path, capsys) -> None:
    out_dir = tmp_path / "never"
    with pytest.raises(SystemExit) as exc:
        evaluate.main(["--backend", "http", "--base-url", "http://127.0.0.1:9", "--out-dir", str(out_dir)])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nothing is listening at http://127.0.0.1:9" in err[0]
    assert not out_dir.exists()
