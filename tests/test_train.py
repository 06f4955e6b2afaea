"""experiments/train.py: a short PPO run and a bandit run write loadable models and TensorBoard
events with every chart; bad flags and bad YAML give one clear error and no traceback."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # the repo's packages, also when it is not pip-installed
    sys.path.insert(0, str(REPO))

import agents  # noqa: E402
from envs import HaloSpecEnv  # noqa: E402

CHART_TAGS = (
    "charts/episodic_return",
    "charts/slo_score",
    "charts/latency_ms",
    "charts/latency_p95_ms",
    "charts/draft_length",
    "charts/acceptance_rate",
    "charts/throughput_tok_s",
)
PPO_TIMESTEPS = 2048
PPO_EPISODE_LENGTH = 64
PPO_YAML = {
    "agent": "ppo",
    "backend": "simulated",
    "preset": "embedded-cpu",
    "scenario": "domain_shift",
    "episode_length": PPO_EPISODE_LENGTH,
    "timesteps": 50_000,  # overridden by --timesteps
    "seed": 0,
    "hyperparameters": {
        "policy": "MlpPolicy",
        "n_steps": 256,
        "batch_size": 64,
        "n_epochs": 2,
        "policy_kwargs": {"net_arch": [16, 16]},
    },
}


def load_script(name: str):
    """Import ``experiments/<name>.py`` by path (experiments/ is not a package)."""
    path = REPO / "experiments" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_experiments_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


train = load_script("train")


def read_events(run_dir: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "tensors": 0})
    accumulator.Reload()
    return accumulator


def an_observation(scenario: str = "domain_shift") -> np.ndarray:
    env = HaloSpecEnv(
        backend="simulated", scenario=scenario, episode_length=10, backend_kwargs={"preset": "embedded-cpu"}
    )
    try:
        observation, _ = env.reset(seed=0)
    finally:
        env.close()
    return observation


# ------------------------------------------------------------------------------------------- PPO run
@pytest.fixture(scope="module")
def ppo_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("ppo")
    config = root / "ppo_small.yaml"
    config.write_text(yaml.safe_dump(PPO_YAML))
    run_dir = root / "run"
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny MLP: extra threads only contend on a busy 2-core machine (8x slower)
    try:
        code = train.main(
            [
                "--config",
                str(config),
                "--timesteps",
                str(PPO_TIMESTEPS),
                "--run-dir",
                str(run_dir),
                "--no-progress",
            ]
        )
    finally:
        torch.set_num_threads(threads)
    assert code == 0
    return run_dir


def test_ppo_run_writes_resolved_config(ppo_run: Path) -> None:
    config = yaml.safe_load((ppo_run / "config.yaml").read_text())
    assert config["agent"] == "ppo"
    assert config["timesteps"] == PPO_TIMESTEPS  # the flag overrides the YAML
    assert config["episode_length"] == PPO_EPISODE_LENGTH  # the YAML fills what no flag gave
    assert config["hyperparameters"]["n_steps"] == 256
    assert config["backend"] == "simulated"


def test_ppo_model_loads_and_acts(ppo_run: Path) -> None:
    model_path = ppo_run / "model.zip"
    assert model_path.is_file()
    assert (ppo_run / "model.meta.json").is_file()
    policy = agents.load_policy(model_path)
    assert policy.name == "ppo"
    assert policy.max_draft_length == 8
    policy.reset(0)
    draft_length = policy.act(an_observation())
    assert isinstance(draft_length, int)
    assert 1 <= draft_length <= 8


def test_ppo_tensorboard_has_charts_train_and_hyperparameters(ppo_run: Path) -> None:
    events = read_events(ppo_run)
    scalars = set(events.Tags()["scalars"])
    missing = [tag for tag in CHART_TAGS if tag not in scalars]
    assert not missing, f"missing TensorBoard tags {missing}; have {sorted(scalars)}"
    assert any(tag.startswith("train/") for tag in scalars), sorted(scalars)

    episodes = PPO_TIMESTEPS // PPO_EPISODE_LENGTH  # charts/* once per finished episode
    for tag in CHART_TAGS:
        points = events.Scalars(tag)
        assert len(points) == episodes, (tag, len(points))
        assert all(math.isfinite(p.value) for p in points), tag
        steps = [p.step for p in points]
        assert steps == sorted(steps) and steps[-1] <= PPO_TIMESTEPS
    draft = [p.value for p in events.Scalars("charts/draft_length")]
    assert all(1.0 <= v <= 8.0 for v in draft)
    acceptance = [p.value for p in events.Scalars("charts/acceptance_rate")]
    assert all(0.0 <= v <= 1.0 for v in acceptance)
    for tag in ("charts/latency_ms", "charts/latency_p95_ms", "charts/throughput_tok_s", "charts/slo_score"):
        assert all(p.value > 0 for p in events.Scalars(tag)), tag

    text_tags = [t for t in events.Tags()["tensors"] if t.startswith("hyperparameters")]
    assert text_tags, events.Tags()["tensors"]
    assert events.SummaryMetadata(text_tags[0]).plugin_data.plugin_name == "text"
    text = events.Tensors(text_tags[0])[0].tensor_proto.string_val[0].decode()
    assert "|agent|ppo|" in text
    assert f"|timesteps|{PPO_TIMESTEPS}|" in text
    assert "|hyperparameters.n_steps|256|" in text


# ----------------------------------------------------------------------------------------- bandit run
def test_bandit_run_writes_model_json_that_loads(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    code = train.main(
        [
            "--agent",
            "sw_ucb",
            "--scenario",
            "steady",
            "--timesteps",
            "300",
            "--episode-length",
            "50",
            "--seed",
            "3",
            "--run-dir",
            str(run_dir),
            "--no-progress",
        ]
    )
    assert code == 0
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert (config["agent"], config["scenario"], config["timesteps"], config["seed"]) == (
        "sw_ucb",
        "steady",
        300,
        3,
    )
    assert not (run_dir / "model.zip").exists()

    policy = agents.load_policy(run_dir / "model.json")
    assert policy.name == "sw_ucb"
    assert 1 <= policy.act(an_observation("steady")) <= 8
    # what was learned is in the file: a fresh bandit's state differs from the loaded one
    fresh = agents.make_policy("sw_ucb")
    fresh.reset(3)
    assert str(policy.state_dict()) != str(fresh.state_dict())

    events = read_events(run_dir)
    scalars = set(events.Tags()["scalars"])
    assert set(CHART_TAGS) <= scalars, sorted(scalars)
    assert len(events.Scalars("charts/slo_score")) == 300 // 50
    assert any(t.startswith("hyperparameters") for t in events.Tags()["tensors"])


# ------------------------------------------------------------------------------------------ bad input
def error_text(exc: pytest.ExceptionInfo[SystemExit], capsys: pytest.CaptureFixture[str]) -> str:
    """What the user sees: stderr, plus the message of ``SystemExit("error: ...")``."""
    captured = capsys.readouterr()
    code = exc.value.code
    return captured.err + (code if isinstance(code, str) else "")


def assert_one_clear_error(text: str, *needles: str) -> None:
    assert "Traceback" not in text, text
    error_lines = [line for line in text.splitlines() if "error:" in line]
    assert len(error_lines) == 1, text
    for needle in needles:
        assert needle in error_lines[0], (needle, error_lines[0])


@pytest.mark.parametrize(
    ("flags", "needles"),
    [
        (["--agent", "nosuchagent"], ["'nosuchagent'", "unknown agent"]),
        (["--timesteps", "-5"], ["timesteps", "-5"]),
        (["--timesteps", "0"], ["timesteps", "0"]),
        (["--episode-length", "0"], ["episode_length", "0"]),
        (["--scenario", "nosuchscenario"], ["'nosuchscenario'", "--scenario"]),
        (["--backend", "nosuchbackend"], ["'nosuchbackend'", "--backend"]),
        (["--timesteps", "many"], ["'many'", "--timesteps"]),
        (["--config", "no/such/config.yaml"], ["no/such/config.yaml", "no such file"]),
    ],
)
def test_bad_flags_give_one_clear_error(tmp_path: Path, capsys, flags: list[str], needles: list[str]) -> None:
    run_dir = tmp_path / "run"
    with pytest.raises(SystemExit) as exc:
        train.main([*flags, "--run-dir", str(run_dir), "--no-progress"])
    assert exc.value.code == 2
    assert_one_clear_error(error_text(exc, capsys), *needles)
    assert not run_dir.exists()


@pytest.mark.parametrize(
    ("document", "needles"),
    [
        ("agent: [ppo\n  timesteps: : 3\n", ["broken.yaml", "not valid YAML"]),
        ("- just\n- a list\n", ["broken.yaml", "mapping"]),
        ("agent: nosuchagent\n", ["'nosuchagent'"]),
        ("agent: sw_ucb\ntimesteps: -10\n", ["timesteps", "-10"]),
        ("agent: sw_ucb\ntimesteps: 10\nhyperparameters: [1, 2]\n", ["hyperparameters"]),
        ("agent: sw_ucb\ntimesteps: 10\nscenario: nosuchscenario\n", ["'nosuchscenario'"]),
    ],
)
def test_bad_yaml_gives_one_clear_error(tmp_path: Path, capsys, document: str, needles: list[str]) -> None:
    config = tmp_path / "broken.yaml"
    config.write_text(document)
    run_dir = tmp_path / "run"
    with pytest.raises(SystemExit) as exc:
        train.main(["--config", str(config), "--run-dir", str(run_dir), "--no-progress"])
    assert exc.value.code == 2
    assert_one_clear_error(error_text(exc, capsys), *needles)
    assert not run_dir.exists()


@pytest.mark.parametrize(
    ("document", "needles"),
    [
        ("agent: sw_ucb\ntimesteps: 10\nhyperparameters: {windw: 5}\n", ["sw_ucb", "windw"]),
        ("agent: ppo\ntimesteps: 10\nhyperparameters: {n_stepz: 5}\n", ["ppo", "n_stepz"]),
    ],
)
def test_bad_hyperparameters_give_one_clear_error(
    tmp_path: Path, capsys, document: str, needles: list[str]
) -> None:
    config = tmp_path / "typo.yaml"
    config.write_text(document)
    with pytest.raises(SystemExit) as exc:
        train.main(["--config", str(config), "--run-dir", str(tmp_path / "run"), "--no-progress"])
    assert exc.value.code not in (0, None)
    assert_one_clear_error(error_text(exc, capsys), *needles)
