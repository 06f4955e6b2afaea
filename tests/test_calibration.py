"""Fitting the simulator to a trace recovers the parameters that made it."""

from __future__ import annotations

import pytest

from halospec_rl.backends.base import Prompt
from halospec_rl.backends.simulated import SimulatedBackend, load_preset
from halospec_rl.calibration import fit
from halospec_rl.cli import main as cli_main
from halospec_rl.report import RequestRecord, ResultsWriter


@pytest.fixture(scope="module")
def gpu_trace(tmp_path_factory):
    """Fixed-k requests of the gpu-7b simulator, idle and loaded, every domain."""
    path = tmp_path_factory.mktemp("trace") / "trace.csv"
    backend = SimulatedBackend(preset="gpu-7b", seed=0)
    step = 0
    with ResultsWriter(path) as writer:
        for load in (0.0, 1.0):
            phase = "load" if load else "steady"
            backend.set_load(load, phase)
            for domain in ("code", "prose", "random"):
                for k in range(9):
                    for i in range(25):
                        r = backend.generate(Prompt(domain=domain, seed=i), k)
                        step += 1
                        writer.write(RequestRecord(step, i + 1, f"fixed_{k}", phase, k, True, r.latency_ms,
                                                   r.tokens, r.drafted, r.accepted, domain, load))
    return path


def test_fit_recovers_acceptance_costs_and_load(gpu_trace):
    truth = load_preset("gpu-7b")
    params, rows = fit(gpu_trace, load_preset("embedded-cpu"))  # start far from the truth
    for domain, alpha in truth.domain_alpha.items():
        assert params.domain_alpha[domain] == pytest.approx(alpha, abs=0.03)
    assert params.target_pass_ms == pytest.approx(truth.target_pass_ms, rel=0.1)
    assert params.load_slowdown == pytest.approx(truth.load_slowdown, abs=0.1)
    assert params.load_verify_slope == pytest.approx(truth.load_verify_slope, abs=0.08)
    assert params.noise_sigma == pytest.approx(truth.noise_sigma, rel=0.5)
    idle_errors = [abs(r.error_pct) for r in rows if not r.loaded]
    assert len(idle_errors) == 27 and sum(idle_errors) / len(idle_errors) < 5.0


def test_calibrate_command_reports_and_writes(gpu_trace, tmp_path, capsys, monkeypatch):
    written = {}
    monkeypatch.setattr("halospec_rl.backends.simulated.save_preset",
                        lambda name, params: written.setdefault(name, params) and tmp_path / f"{name}.json")
    assert cli_main(["calibrate", "--csv", str(gpu_trace), "--preset", "embedded-cpu", "--write"]) == 0
    out = capsys.readouterr().out
    assert "measured ms" in out and "idle: max |error|" in out
    assert written["embedded-cpu"].domain_alpha["code"] == pytest.approx(0.85, abs=0.03)


def test_calibrate_names_a_bad_file(tmp_path, capsys):
    missing = tmp_path / "missing.csv"
    assert cli_main(["calibrate", "--csv", str(missing)]) == 2
    assert str(missing) in capsys.readouterr().err
