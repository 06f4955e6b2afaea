"""HaloSpec's summary printout and the results CSV (design.md section 3, issue 2).

The printed rows are checked against rows of HaloSpec's own output (shared/seed): latency lists were
solved offline so that their statistics print exactly as the seed's rows (integer milliseconds, like
HaloSpec's latencies, and 64-token requests with a token or two moved where the throughput needs it).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from halospec_rl.metrics import mode_stats
from halospec_rl.report import (
    HALOSPEC_COLUMNS,
    HEADER,
    RequestRecord,
    ResultsFileError,
    ResultsWriter,
    format_adaptive_line,
    format_row,
    format_summary,
    read_results,
    summarise,
    winner,
)

REPO = Path(__file__).resolve().parents[1]


def collapse(text: str) -> str:
    return " ".join(text.split())


def tokens_summing_to(n: int, total: int) -> list[int]:
    """n 64-token requests, the first or last moved by a token or two to reach ``total``."""
    tokens = [64] * n
    tokens[0 if total >= 64 * n else -1] += total - 64 * n
    return tokens


def stats_for(row: str, latencies: list[int], total_tokens: int, draft_lengths: list[int] | None = None):
    mode = row.split()[0]
    n = len(latencies)
    if draft_lengths is None:
        draft_lengths = [int(mode.split("_")[1])] * n if mode.startswith("fixed_") else [4] * n
    return mode_stats(mode, [True] * n, latencies, tokens_summing_to(n, total_tokens), draft_lengths)


# --------------------------------------------------------------------------------------- single rows
SEED_ROWS = [
    # 1st run without load
    ("fixed_4 10 100.0% 0 3829.8 ms 3816 ms 4064 ms 3727 ms 4064 ms 95.4 ms 16.7 tok/s 5880.9",
     [3850, 3768, 3818, 3752, 3848, 3913, 3727, 3816, 3742, 4064], 640),
    ("adaptive 15 100.0% 0 3498.1 ms 3434 ms 3731 ms 3393 ms 3731 ms 114.7 ms 18.3 tok/s 5386.5",
     [3544, 3677, 3684, 3434, 3393, 3435, 3419, 3393, 3433, 3404, 3731, 3396, 3431, 3499, 3598], 960),
    # 1st run with load (HALOSPEC_LOAD=1)
    ("fixed_3 10 100.0% 0 3464.4 ms 3452 ms 3515 ms 3418 ms 3515 ms 28.5 ms 18.5 tok/s 5227.6",
     [3475, 3441, 3470, 3503, 3418, 3452, 3451, 3439, 3515, 3480], 640),
]


@pytest.mark.parametrize(("row", "latencies", "total_tokens"), SEED_ROWS, ids=lambda v: str(v)[:12])
def test_format_row_reproduces_seed_rows(row, latencies, total_tokens):
    stats = stats_for(row, latencies, total_tokens)
    assert collapse(format_row(stats)) == row


def test_format_row_of_fixed_4_by_hand():
    # the statistics behind the seed's fixed_4 row, not only their printout
    stats = stats_for(*SEED_ROWS[0])
    assert stats.avg_ms == pytest.approx(3829.8)
    assert (stats.median_ms, stats.p95_ms, stats.min_ms, stats.max_ms) == (3816, 4064, 3727, 4064)
    assert stats.score == pytest.approx(stats.avg_ms + 0.5 * 4064 + 0.2 * stats.stddev_ms)
    assert round(stats.stddev_ms, 1) == 95.4 and round(stats.score, 1) == 5880.9
    assert stats.throughput_tok_s == pytest.approx(640 / 38.298)


def test_format_row_of_a_mode_without_successes_prints_dashes():
    stats = mode_stats("fixed_3", [False, False], [0, 0], [0, 0], [3, 3])
    assert collapse(format_row(stats)) == "fixed_3 2 0.0% 2 - - - - - - - -"


def test_format_row_columns_are_aligned():
    rows = [format_row(stats_for(*r)) for r in SEED_ROWS]
    assert len({len(r) for r in rows}) == 1


# ---------------------------------------------------------------------------------- whole summaries
SEED_RUN_2_NO_LOAD = """
==============================
HaloSpec Benchmark Summary
==============================

mode steps s% fail avg median p95 min max stddev throughput score
fixed_1 10 100.0% 0 4403.3 ms 3685 ms 8556 ms 3624 ms 8556 ms 1460.5 ms 14.5 tok/s 8973.4
fixed_2 10 100.0% 0 3699.0 ms 3645 ms 4141 ms 3601 ms 4141 ms 151.7 ms 17.3 tok/s 5799.8
fixed_3 10 100.0% 0 3697.6 ms 3658 ms 4013 ms 3591 ms 4013 ms 114.9 ms 17.3 tok/s 5727.1
fixed_4 10 100.0% 0 3630.7 ms 3615 ms 3669 ms 3593 ms 3669 ms 26.9 ms 17.6 tok/s 5470.6
fixed_5 10 100.0% 0 3585.2 ms 3506 ms 3891 ms 3368 ms 3891 ms 204.0 ms 17.9 tok/s 5571.5
fixed_6 10 100.0% 0 3470.0 ms 3388 ms 3728 ms 3364 ms 3728 ms 120.1 ms 18.4 tok/s 5358.0
fixed_7 10 100.0% 0 3530.9 ms 3421 ms 3920 ms 3366 ms 3920 ms 169.1 ms 18.1 tok/s 5524.7
fixed_8 10 100.0% 0 4019.3 ms 3916 ms 4977 ms 3480 ms 4977 ms 400.4 ms 15.9 tok/s 6587.9
adaptive 15 100.0% 0 4017.5 ms 3996 ms 4642 ms 3647 ms 4642 ms 270.6 ms 15.9 tok/s 6392.6

[Adaptive Behavior] draft_length changes=4 | converged_at_step=9 (k=5)

Winner (lowest SLO-aware score): fixed_6 at 5358.0
"""
RUN_2_NO_LOAD_DATA = [
    [3624, 3926, 5282, 3685, 3959, 8556, 3685, 3678, 3960, 3678], 640,
    [3740, 4141, 3666, 3625, 3627, 3645, 3601, 3622, 3659, 3664], 640,
    [3725, 3666, 3760, 3658, 3644, 3591, 3665, 3629, 3625, 4013], 640,
    [3609, 3605, 3593, 3667, 3604, 3669, 3649, 3651, 3645, 3615], 640,
    [3408, 3506, 3720, 3372, 3890, 3891, 3368, 3370, 3557, 3770], 641,
    [3384, 3399, 3728, 3388, 3364, 3600, 3499, 3582, 3381, 3375], 639,
    [3421, 3730, 3421, 3550, 3920, 3420, 3420, 3434, 3627, 3366], 640,
    [3480, 3916, 4977, 4441, 3752, 3940, 3837, 3750, 3947, 4153], 640,
    [3996, 3697, 3929, 3805, 4016, 4642, 3746, 4414, 3647, 4154, 4075, 3910, 4035, 3836, 4360], 960,
]
# changes=4, the last 5 lengths first equal at step 9
RUN_2_NO_LOAD_ADAPTIVE = [4, 5, 6, 7, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6, 6]

SEED_RUN_2_LOAD = """
==============================
HaloSpec Benchmark Summary
==============================

mode steps s% fail avg median p95 min max stddev throughput score
fixed_1 10 100.0% 0 3648.6 ms 3644 ms 3893 ms 3491 ms 3893 ms 119.6 ms 17.5 tok/s 5619.0
fixed_2 10 100.0% 0 3529.6 ms 3475 ms 3705 ms 3416 ms 3705 ms 107.6 ms 18.1 tok/s 5403.6
fixed_3 10 100.0% 0 3767.3 ms 3621 ms 4592 ms 3552 ms 4592 ms 315.9 ms 17.0 tok/s 6126.5
fixed_4 10 100.0% 0 3893.5 ms 3560 ms 6141 ms 3518 ms 6141 ms 775.5 ms 16.4 tok/s 7119.1
fixed_5 10 100.0% 0 3445.6 ms 3387 ms 3695 ms 3344 ms 3695 ms 115.4 ms 18.6 tok/s 5316.2
fixed_6 10 100.0% 0 3684.7 ms 3676 ms 3901 ms 3434 ms 3901 ms 123.1 ms 17.4 tok/s 5659.8
fixed_7 10 100.0% 0 3867.1 ms 3724 ms 4569 ms 3521 ms 4569 ms 332.7 ms 16.5 tok/s 6218.1
fixed_8 10 100.0% 0 3727.3 ms 3660 ms 4101 ms 3541 ms 4101 ms 148.9 ms 17.2 tok/s 5807.6
adaptive 15 100.0% 0 3850.1 ms 3735 ms 4587 ms 3525 ms 4587 ms 334.2 ms 16.6 tok/s 6210.4

[Adaptive Behavior] draft_length changes=9 | no convergence within run (k=5)

Winner (lowest SLO-aware score): fixed_5 at 5316.2
"""
RUN_2_LOAD_DATA = [
    [3644, 3561, 3738, 3692, 3568, 3893, 3498, 3757, 3644, 3491], 639,
    [3418, 3635, 3475, 3680, 3705, 3460, 3420, 3490, 3597, 3416], 640,
    [3645, 3620, 3644, 4134, 3613, 3621, 4592, 3632, 3620, 3552], 640,
    [3560, 3600, 3600, 4237, 3518, 3601, 3559, 3559, 3560, 6141], 640,
    [3394, 3344, 3695, 3381, 3586, 3559, 3353, 3387, 3368, 3389], 640,
    [3901, 3637, 3676, 3791, 3765, 3735, 3546, 3686, 3676, 3434], 640,
    [3522, 4308, 3875, 3784, 3521, 4077, 3720, 3724, 3571, 4569], 639,
    [3790, 3690, 3662, 4101, 3660, 3660, 3657, 3541, 3651, 3861], 640,
    [3735, 3736, 3525, 4587, 3956, 3576, 3528, 3760, 3555, 4146, 3604, 3718, 4263, 3635, 4427], 960,
]
# changes=9 and never 5 equal lengths in a row
RUN_2_LOAD_ADAPTIVE = [4, 5, 6, 7, 8, 6, 7, 8, 6, 6, 6, 6, 5, 5, 5]


def seed_stats(seed_text: str, data: list, adaptive_lengths: list[int]):
    rows = [line for line in seed_text.splitlines() if line.startswith(("fixed_", "adaptive"))]
    out = []
    for i, row in enumerate(rows):
        latencies, total = data[2 * i], data[2 * i + 1]
        out.append(stats_for(row, latencies, total, adaptive_lengths if row.startswith("adaptive") else None))
    return out


@pytest.mark.parametrize(
    ("seed_text", "data", "adaptive_lengths"),
    [
        (SEED_RUN_2_NO_LOAD, RUN_2_NO_LOAD_DATA, RUN_2_NO_LOAD_ADAPTIVE),
        (SEED_RUN_2_LOAD, RUN_2_LOAD_DATA, RUN_2_LOAD_ADAPTIVE),
    ],
    ids=["2nd-run-no-load", "2nd-run-with-load"],
)
def test_format_summary_reproduces_a_whole_seed_run(seed_text, data, adaptive_lengths):
    text = format_summary(seed_stats(seed_text, data, adaptive_lengths))
    got = [collapse(line) for line in text.splitlines()]
    assert got == [collapse(line) for line in seed_text.strip("\n").splitlines()]


def test_format_summary_layout():
    stats = seed_stats(SEED_RUN_2_NO_LOAD, RUN_2_NO_LOAD_DATA, RUN_2_NO_LOAD_ADAPTIVE)
    lines = format_summary(stats).splitlines()
    assert lines[0] == lines[2] == "=" * 30
    assert lines[1] == "HaloSpec Benchmark Summary"
    assert lines[3] == ""
    assert collapse(lines[4]) == "mode steps s% fail avg median p95 min max stddev throughput score" == HEADER
    assert lines[-1] == "Winner (lowest SLO-aware score): fixed_6 at 5358.0"
    assert "[Adaptive Behavior] draft_length changes=4 | converged_at_step=9 (k=5)" in lines
    # header cells line up with the row cells: every row and the header have the same width
    assert len({len(line) for line in lines[4:13]}) == 1


def test_adaptive_lines_for_every_mode_that_is_not_fixed():
    a = mode_stats("adaptive", [True] * 6, [1] * 6, [1] * 6, [4, 4, 4, 4, 4, 4])
    h = mode_stats("hf_heuristic", [True] * 3, [1] * 3, [1] * 3, [4, 5, 6])
    f = mode_stats("fixed_2", [True] * 3, [1] * 3, [1] * 3, [2, 2, 2])
    assert format_adaptive_line(a) == "[Adaptive Behavior] draft_length changes=0 | converged_at_step=5 (k=5)"
    assert format_adaptive_line(h).endswith("draft_length changes=2 | no convergence within run (k=5)")
    lines = format_summary([f, a, h]).splitlines()
    assert sum(line.startswith("[Adaptive Behavior]") for line in lines) == 2


def test_winner_skips_modes_without_score_and_handles_none():
    none = mode_stats("fixed_1", [False], [0], [0], [1])
    some = mode_stats("fixed_2", [True], [100], [1], [2])
    assert winner([none, some]) is some
    assert winner([none]) is None
    assert format_summary([none]).splitlines()[-1].startswith("Winner (lowest SLO-aware score): none")
    # a tie goes to the first listed mode
    twin = mode_stats("fixed_3", [True], [100], [1], [3])
    assert winner([some, twin]) is some


# ---------------------------------------------------------------------------------------------- CSV
# A file as HaloSpec writes it: its eight columns, success 1/0, integer latency, failed requests with
# latency 0 and tokens 0, two runs appended (global_step starts again at 1).
HALOSPEC_CSV = """global_step,step,mode,phase,draft_length,success,latency_ms,tokens
1,1,fixed_1,steady,1,1,4000,64
2,2,fixed_1,steady,1,1,3000,64
3,3,fixed_1,steady,1,1,5000,64
4,1,fixed_2,steady,2,1,3500,64
5,2,fixed_2,steady,2,0,0,0
6,3,fixed_2,steady,2,1,4500,64
7,1,fixed_3,load,3,0,0,0
8,2,fixed_3,load,3,0,0,0
9,1,adaptive,load,4,1,3000,64
10,2,adaptive,recovery,5,1,3000,64
1,1,fixed_1,steady,1,1,2000,32
2,2,fixed_1,steady,1,1,2000,32
3,1,adaptive,warmup,4,1,9999,64
4,1,adaptive,steady,4,1,1000,64
5,2,adaptive,steady,4,1,1100,64
6,3,adaptive,steady,4,1,1200,64
7,4,adaptive,steady,4,1,1300,64
8,5,adaptive,steady,4,1,1400,64
"""
RUN_1_SUMMARY = """
==============================
HaloSpec Benchmark Summary
==============================

mode steps s% fail avg median p95 min max stddev throughput score
fixed_1 3 100.0% 0 4000.0 ms 4000 ms 5000 ms 3000 ms 5000 ms 816.5 ms 16.0 tok/s 6663.3
fixed_2 3 66.7% 1 4000.0 ms 3500 ms 4500 ms 3500 ms 4500 ms 500.0 ms 16.0 tok/s 6350.0
fixed_3 2 0.0% 2 - - - - - - - -
adaptive 2 100.0% 0 3000.0 ms 3000 ms 3000 ms 3000 ms 3000 ms 0.0 ms 21.3 tok/s 4500.0

[Adaptive Behavior] draft_length changes=1 | no convergence within run (k=5)

Winner (lowest SLO-aware score): adaptive at 4500.0
"""
RUN_2_SUMMARY = """
==============================
HaloSpec Benchmark Summary
==============================

mode steps s% fail avg median p95 min max stddev throughput score
fixed_1 2 100.0% 0 2000.0 ms 2000 ms 2000 ms 2000 ms 2000 ms 0.0 ms 16.0 tok/s 3000.0
adaptive 5 100.0% 0 1200.0 ms 1200 ms 1400 ms 1000 ms 1400 ms 141.4 ms 53.3 tok/s 1928.3

[Adaptive Behavior] draft_length changes=0 | converged_at_step=5 (k=5)

Winner (lowest SLO-aware score): adaptive at 1928.3
"""


def lines_of(text: str) -> list[str]:
    return [collapse(line) for line in text.strip("\n").splitlines()]


@pytest.fixture
def halospec_csv(tmp_path: Path) -> Path:
    path = tmp_path / "halospec_results.csv"
    path.write_text(HALOSPEC_CSV)
    return path


def test_reads_a_halospec_file_into_runs(halospec_csv):
    runs = read_results(halospec_csv)
    assert [len(r) for r in runs] == [10, 8]
    first = runs[0][0]
    assert first == RequestRecord(1, 1, "fixed_1", "steady", 1, True, 4000.0, 64)
    failed = runs[0][4]
    assert (failed.mode, failed.success, failed.latency_ms, failed.tokens) == ("fixed_2", False, 0.0, 0)
    assert runs[1][0].global_step == 1 and runs[1][-1].global_step == 8
    assert {r.drafted for run in runs for r in run} == {-1}  # unknown in HaloSpec's file


def test_summarises_each_run_of_a_halospec_file(halospec_csv):
    run_1, run_2 = read_results(halospec_csv)
    assert lines_of(format_summary(summarise(run_1))) == lines_of(RUN_1_SUMMARY)
    # the warmup request (9999 ms) is not scored
    assert lines_of(format_summary(summarise(run_2))) == lines_of(RUN_2_SUMMARY)


def test_results_writer_round_trip(halospec_csv, tmp_path):
    runs = read_results(halospec_csv)
    extra = RequestRecord(
        3, 1, "ppo", "load", 7, False, 60000.0, 0, drafted=12, accepted=5, domain="code", load=1.0,
        backend="simulated", scenario="load_spike", seed=7, error="timeout, after 3 attempts",
    )
    path = tmp_path / "ours.csv"
    with ResultsWriter(path) as writer:
        for record in runs[0]:
            writer.write(record)
    with ResultsWriter(path) as writer:  # a second run appended to the same file: no second header
        for record in [*runs[1], extra]:
            writer.write(record)
    text = path.read_text()
    assert text.splitlines()[0].startswith(",".join(HALOSPEC_COLUMNS) + ",")
    assert text.count("global_step") == 1
    again = read_results(path)
    assert again[0] == runs[0]
    assert again[1] == [*runs[1], extra]
    assert [collapse(format_row(s)) for s in summarise(again[0])] == [
        collapse(format_row(s)) for s in summarise(runs[0])
    ]


def test_results_writer_flushes_every_row(tmp_path):
    path = tmp_path / "live.csv"
    writer = ResultsWriter(path)
    try:
        writer.write(RequestRecord(1, 1, "fixed_1", "steady", 1, True, 12.5, 64))
        # readable before close: a crash would lose nothing
        assert read_results(path) == [[RequestRecord(1, 1, "fixed_1", "steady", 1, True, 12.5, 64)]]
    finally:
        writer.close()


def test_reads_a_file_with_extra_columns_in_any_order(tmp_path):
    path = tmp_path / "extra.csv"
    path.write_text(
        "global_step,step,mode,phase,draft_length,success,latency_ms,tokens,accepted,notes,drafted\n"
        "1,1,fixed_2,steady,2,true,10.5,64,3,whatever,4\n"
    )
    (run,) = read_results(path)
    assert (run[0].drafted, run[0].accepted, run[0].latency_ms) == (4, 3, 10.5)


HEADER_LINE = ",".join(HALOSPEC_COLUMNS)


@pytest.mark.parametrize(
    ("content", "needles"),
    [
        ("", ["empty"]),
        (HEADER_LINE + "\n", ["no data rows"]),
        ("global_step,step,mode,phase,draft_length,success,tokens\n1,1,fixed_1,steady,1,1,64\n",
         ["missing column", "latency_ms"]),
        (HEADER_LINE + "\n1,1,fixed_1,steady,1,1,4000,64\n2,2,fixed_1,steady,1,1,4000,lots\n",
         ["row 3", "column tokens", "'lots'"]),
        (HEADER_LINE + "\n1,1,fixed_1,steady,1,1,fast,64\n", ["row 2", "column latency_ms", "'fast'"]),
        (HEADER_LINE + "\n1,1,fixed_1,steady,2.5,1,4000,64\n", ["row 2", "column draft_length"]),
        (HEADER_LINE + "\n1,1,fixed_1,steady,1,maybe,4000,64\n", ["row 2", "column success", "'maybe'"]),
        (HEADER_LINE + "\n1,1,fixed_1,steady,1,1,4000,64\n2,2,fixed_1,steady,1\n",
         ["row 3", "column success"]),
        (HEADER_LINE + "\n1,1,fixed_1,steady,1,1,,64\n", ["row 2", "column latency_ms"]),
    ],
    ids=["empty", "header-only", "missing-column", "non-numeric-tokens", "non-numeric-latency",
         "non-integer-draft-length", "bad-success", "short-row", "blank-latency"],
)
def test_malformed_files_raise_naming_file_row_and_column(tmp_path, content, needles):
    path = tmp_path / "bad.csv"
    path.write_text(content)
    with pytest.raises(ResultsFileError) as info:
        read_results(path)
    message = str(info.value)
    assert str(path) in message
    for needle in needles:
        assert needle in message, (needle, message)
    assert isinstance(info.value, ValueError)


def test_reads_a_file_saved_on_windows_with_bom_and_crlf(tmp_path):
    path = tmp_path / "powershell.csv"
    path.write_bytes(HALOSPEC_CSV.replace("\n", "\r\n").encode("utf-8-sig"))
    runs = read_results(path)
    assert [len(r) for r in runs] == [10, 8]
    assert lines_of(format_summary(summarise(runs[0]))) == lines_of(RUN_1_SUMMARY)


def test_undecodable_file_raises_results_file_error(tmp_path):
    path = tmp_path / "utf16.csv"
    path.write_bytes(HALOSPEC_CSV.encode("utf-16"))  # what Windows PowerShell 5.1's ">" writes
    with pytest.raises(ResultsFileError, match="not UTF-8") as info:
        read_results(path)
    assert str(path) in str(info.value)


def test_row_numbers_are_file_lines_past_blank_lines(tmp_path):
    path = tmp_path / "gappy.csv"
    path.write_text(HEADER_LINE + "\n1,1,fixed_1,steady,1,1,4000,64\n\n2,2,fixed_1,steady,1,1,x,64\n")
    with pytest.raises(ResultsFileError, match="row 4, column latency_ms"):
        read_results(path)


def test_missing_file_raises_naming_it(tmp_path):
    path = tmp_path / "nowhere.csv"
    with pytest.raises(ResultsFileError, match="no such file") as info:
        read_results(path)
    assert str(path) in str(info.value)


# --------------------------------------------------------------------------- evaluate.py --from-csv
EVALUATE = REPO / "experiments" / "evaluate.py"


def run_evaluate(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    return subprocess.run(
        [sys.executable, str(EVALUATE), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.skipif(not EVALUATE.is_file(), reason="experiments/evaluate.py not written yet")
def test_evaluate_from_csv_prints_one_summary_per_run_and_fails_cleanly(halospec_csv, tmp_path):
    done = run_evaluate("--from-csv", str(halospec_csv), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.count("Winner (lowest SLO-aware score):") == 2
    assert sum(collapse(line) == HEADER for line in out.splitlines()) == 2
    assert "Winner (lowest SLO-aware score): adaptive at 4500.0" in out
    assert "Winner (lowest SLO-aware score): adaptive at 1928.3" in out
    assert "fixed_3 2 0.0% 2 - - - - - - - -" in [collapse(line) for line in out.splitlines()]

    bad = tmp_path / "bad.csv"
    bad.write_text(HEADER_LINE + "\n1,1,fixed_1,steady,1,1,4000,64\n2,2,fixed_1,steady,1,1,4000,lots\n")
    done = run_evaluate("--from-csv", str(bad), cwd=tmp_path)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert str(bad) in lines[0] and "row 3" in lines[0] and "tokens" in lines[0]
