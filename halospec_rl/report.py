"""HaloSpec's summary printout, the results CSV (write and read), and plots.

The CSV starts with HaloSpec's eight columns
``global_step,step,mode,phase,draft_length,success,latency_ms,tokens`` and adds ours after them.
A file written by HaloSpec itself (eight columns, several runs appended, ``global_step`` starting
again at 1 for each run) loads and summarises.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from halospec_rl.metrics import ModeStats, mode_stats

HALOSPEC_COLUMNS = (
    "global_step",
    "step",
    "mode",
    "phase",
    "draft_length",
    "success",
    "latency_ms",
    "tokens",
)
EXTRA_COLUMNS = ("drafted", "accepted", "domain", "load", "backend", "scenario", "seed", "error")
WARMUP_PHASE = "warmup"
BANNER = "=" * 30
HEADER = "mode steps s% fail avg median p95 min max stddev throughput score"
_WIDTHS = (-14, 5, 7, 4, 10, 8, 8, 8, 8, 10, 11, 9)  # negative: left-aligned
_FIXED_MODE = re.compile(r"^fixed_\d+$")


@dataclass
class RequestRecord:
    """One request as the results CSV holds it. Latency in ms; ``drafted``/``accepted`` are -1 when unknown."""

    global_step: int
    step: int
    mode: str
    phase: str
    draft_length: int
    success: bool
    latency_ms: float
    tokens: int
    drafted: int = -1
    accepted: int = -1
    domain: str = ""
    load: float = 0.0
    backend: str = ""
    scenario: str = ""
    seed: int = -1
    error: str = ""


_FIELD_TYPES = {f.name: f.type for f in fields(RequestRecord)}


class ResultsFileError(ValueError):
    """A results CSV that cannot be read; the message names the file, and the row and column if any."""


def is_fixed_mode(mode: str) -> bool:
    return bool(_FIXED_MODE.match(mode))


# --------------------------------------------------------------------------------------------- summary
def _ms0(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"


def _ms1(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"


def format_row(stats: ModeStats) -> str:
    """One summary row in HaloSpec's units and decimals (space separated, columns aligned)."""
    return _align(
        [
            stats.mode,
            str(stats.steps),
            f"{100.0 * stats.success_rate:.1f}%",
            str(stats.failures),
            _ms1(stats.avg_ms),
            _ms0(stats.median_ms),
            _ms0(stats.p95_ms),
            _ms0(stats.min_ms),
            _ms0(stats.max_ms),
            _ms1(stats.stddev_ms),
            "-" if stats.throughput_tok_s is None else f"{stats.throughput_tok_s:.1f} tok/s",
            "-" if stats.score is None else f"{stats.score:.1f}",
        ]
    )


def _align(cells: Sequence[str]) -> str:
    return " ".join(c.ljust(-w) if w < 0 else c.rjust(w) for c, w in zip(cells, _WIDTHS, strict=True))


def format_adaptive_line(stats: ModeStats) -> str:
    """HaloSpec's ``[Adaptive Behavior]`` line; modes other than ``adaptive`` are named in it."""
    who = "" if stats.mode == "adaptive" else f"{stats.mode}: "
    if stats.converged_at_step is None:
        tail = "no convergence within run (k=5)"
    else:
        tail = f"converged_at_step={stats.converged_at_step} (k=5)"
    return f"[Adaptive Behavior] {who}draft_length changes={stats.draft_length_changes} | {tail}"


def winner(all_stats: Sequence[ModeStats]) -> ModeStats | None:
    """The mode with the lowest score (first listed wins a tie), or None when no mode has one."""
    scored = [s for s in all_stats if s.score is not None]
    return min(scored, key=lambda s: s.score) if scored else None


def format_summary(all_stats: Sequence[ModeStats], title: str = "HaloSpec Benchmark Summary") -> str:
    """The whole HaloSpec summary: banner, header, rows, adaptive lines, winner."""
    lines = [BANNER, title, BANNER, "", _align(HEADER.split())]
    lines += [format_row(s) for s in all_stats]
    adaptive = [format_adaptive_line(s) for s in all_stats if not is_fixed_mode(s.mode)]
    if adaptive:
        lines += ["", *adaptive]
    best = winner(all_stats)
    lines.append("")
    if best is None:
        lines.append("Winner (lowest SLO-aware score): none (no mode had a successful request)")
    else:
        lines.append(f"Winner (lowest SLO-aware score): {best.mode} at {best.score:.1f}")
    return "\n".join(lines)


def summarise(records: Iterable[RequestRecord]) -> list[ModeStats]:
    """Per-mode statistics of measured (non-warmup) records, modes in order of first appearance."""
    by_mode: dict[str, list[RequestRecord]] = {}
    for r in records:
        if r.phase != WARMUP_PHASE:
            by_mode.setdefault(r.mode, []).append(r)
    return [
        mode_stats(
            mode,
            [r.success for r in rows],
            [r.latency_ms for r in rows],
            [r.tokens for r in rows],
            [r.draft_length for r in rows],
        )
        for mode, rows in by_mode.items()
    ]


# ------------------------------------------------------------------------------------------------- CSV
class ResultsWriter:
    """Appends records to a results CSV, one flushed row per request so a crash loses nothing."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new_file = not self.path.exists() or self.path.stat().st_size == 0
        self._file = self.path.open("a", newline="", encoding="utf-8")
        self._writer = csv.writer(self._file)
        if new_file:
            self._writer.writerow(HALOSPEC_COLUMNS + EXTRA_COLUMNS)
            self._file.flush()

    def write(self, record: RequestRecord) -> None:
        row = asdict(record)
        row["success"] = "true" if record.success else "false"
        row["latency_ms"] = repr(float(record.latency_ms))  # exact: a re-read summary prints the same digits
        self._writer.writerow([row[c] for c in HALOSPEC_COLUMNS + EXTRA_COLUMNS])
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> ResultsWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_TRUE = {"true", "1", "yes", "ok", "success"}
_FALSE = {"false", "0", "no", "fail", "failed", "error"}


def _parse(path: Path, row_no: int, column: str, raw: str):
    kind = _FIELD_TYPES[column]
    text = raw.strip()
    if kind == "bool":
        if text.lower() in _TRUE:
            return True
        if text.lower() in _FALSE:
            return False
        raise ResultsFileError(f"{path}: row {row_no}, column {column}: {raw!r} is not true/false")
    if kind in ("int", "float"):
        try:
            value = float(text)
        except ValueError:
            raise ResultsFileError(f"{path}: row {row_no}, column {column}: {raw!r} is not a number") from None
        if not math.isfinite(value):
            raise ResultsFileError(f"{path}: row {row_no}, column {column}: {raw!r} is not a finite number")
        if kind == "int":
            if value != int(value):
                raise ResultsFileError(f"{path}: row {row_no}, column {column}: {raw!r} is not an integer")
            return int(value)
        return value
    return text


def read_results(path: str | Path) -> list[list[RequestRecord]]:
    """Read a results CSV (ours or HaloSpec's) into runs; ``global_step`` returning to 1 starts a run.

    Raises ResultsFileError naming the file (and row, column) for a missing, empty or malformed file.
    """
    path = Path(path)
    if not path.is_file():
        raise ResultsFileError(f"{path}: no such file")
    try:
        runs = _read_runs(path)
    except UnicodeDecodeError as exc:  # e.g. UTF-16, as Windows PowerShell 5.1 redirects text
        raise ResultsFileError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except csv.Error as exc:
        raise ResultsFileError(f"{path}: not a CSV file ({exc})") from None
    except OSError as exc:
        raise ResultsFileError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not runs:
        raise ResultsFileError(f"{path}: no data rows after the header")
    return runs


def _read_runs(path: Path) -> list[list[RequestRecord]]:
    """The runs of ``path``; "row N" in errors is the file's line N (header = row 1).

    utf-8-sig: a file saved by Excel or Windows PowerShell (HaloSpec runs there) starts with a BOM.
    """
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames
        if not header:
            raise ResultsFileError(f"{path}: empty file (expected the header {','.join(HALOSPEC_COLUMNS)})")
        header = [h.strip() for h in header]
        missing = [c for c in HALOSPEC_COLUMNS if c not in header]
        if missing:
            raise ResultsFileError(f"{path}: missing column(s) {', '.join(missing)}")
        reader.fieldnames = header
        known = [c for c in header if c in _FIELD_TYPES]
        runs: list[list[RequestRecord]] = []
        for row in reader:
            row_no = reader.line_num  # counts blank lines and quoted newlines too, as an editor does
            values = {}
            for c in known:
                raw = row.get(c)
                if raw is None:
                    if c in HALOSPEC_COLUMNS:
                        raise ResultsFileError(f"{path}: row {row_no}, column {c}: value missing")
                    continue
                if raw.strip() == "" and c not in HALOSPEC_COLUMNS:
                    continue
                if raw.strip() == "" and c not in ("phase", "mode"):
                    raise ResultsFileError(f"{path}: row {row_no}, column {c}: value missing")
                values[c] = _parse(path, row_no, c, raw)
            record = RequestRecord(**values)
            if not runs or (record.global_step == 1 and runs[-1]):
                runs.append([])
            runs[-1].append(record)
    return runs


# ----------------------------------------------------------------------------------------------- plots
_PHASE_COLOURS = {"steady": "tab:blue", "load": "tab:red", "recovery": "tab:green", "warmup": "tab:gray",
                  "code": "tab:purple", "prose": "tab:blue", "random": "tab:orange"}


def plot_results(all_stats: Sequence[ModeStats], records: Sequence[RequestRecord], out_dir: str | Path,
                 title: str = "") -> list[Path]:
    """Write ``score_by_mode.png`` and ``latency_and_draft_length_by_step.png`` (the controllers and
    the best fixed mode, points coloured by phase) into ``out_dir``; returns the paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    scored = [s for s in all_stats if s.score is not None]
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(scored)), 4))
    colours = ["tab:gray" if is_fixed_mode(s.mode) else "tab:orange" for s in scored]
    ax.bar([s.mode for s in scored], [s.score for s in scored], color=colours)
    ax.set_ylabel("SLO-aware score (ms, lower is better)")
    ax.set_title(f"Score by mode {title}".strip())
    ax.tick_params(axis="x", rotation=60)
    fig.tight_layout()
    paths = [out_dir / "score_by_mode.png"]
    fig.savefig(paths[0], dpi=110)
    plt.close(fig)

    # Every fixed mode's flat line would bury the controllers: show those and the best fixed mode.
    best_fixed = winner([s for s in all_stats if is_fixed_mode(s.mode)])
    modes = [m for m in dict.fromkeys(r.mode for r in records)
             if not is_fixed_mode(m) or (best_fixed is not None and m == best_fixed.mode)]
    fig, axes = plt.subplots(2, 1, figsize=(10, 6), sharex=True)
    for i, mode in enumerate(modes):
        rows = [r for r in records if r.mode == mode and r.phase != WARMUP_PHASE and r.success]
        if not rows:
            continue
        steps = [r.step for r in rows]
        axes[0].plot(steps, [r.latency_ms for r in rows], color=f"C{i % 10}", alpha=0.5, label=mode)
        axes[1].plot(steps, [r.draft_length + 0.04 * (i - len(modes) / 2) for r in rows], color=f"C{i % 10}",
                     alpha=0.5)
        for ax, values in ((axes[0], [r.latency_ms for r in rows]), (axes[1], [r.draft_length for r in rows])):
            ax.scatter(steps, values, c=[_PHASE_COLOURS.get(r.phase, "black") for r in rows], s=10, zorder=3)
    axes[0].set_ylabel("latency (ms)")
    axes[1].set_ylabel("draft length")
    axes[1].set_xlabel("measured step (points coloured by phase)")
    axes[0].set_title(f"Latency and draft length by step {title}".strip())
    axes[0].legend(fontsize=7, ncol=4)
    fig.tight_layout()
    paths.append(out_dir / "latency_and_draft_length_by_step.png")
    fig.savefig(paths[1], dpi=110)
    plt.close(fig)
    return paths
