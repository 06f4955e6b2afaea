"""Stable-baselines3 models as ``agents.base.Policy`` (the only module that imports SB3).

A model is saved as ``NAME.zip`` (SB3's own format) with a sidecar ``NAME.meta.json`` holding
``{"algorithm": "PPO", "max_draft_length": 8}``, so ``load_sb3`` knows which class to load with.
Without the sidecar it tries PPO, A2C and DQN in turn.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from halospec_rl.backends.base import RequestResult

FALLBACK_ALGORITHMS = ("PPO", "A2C", "DQN")
META_SUFFIX = ".meta.json"


def meta_path(model_path: str | Path) -> Path:
    """The sidecar of ``model_path``: ``runs/x/model.zip`` -> ``runs/x/model.meta.json``."""
    path = Path(model_path)
    return path.with_name(path.name.removesuffix(".zip") + META_SUFFIX)


class SB3Policy:
    """A trained SB3 model choosing ``action + 1`` deterministically; it does not learn online.

    ``max_draft_length`` defaults to the size of the model's ``Discrete`` action space.
    """

    def __init__(self, model: Any, max_draft_length: int | None = None, name: str | None = None):
        n_actions = getattr(model.action_space, "n", None)
        if n_actions is None:
            raise ValueError(f"SB3Policy needs a Discrete action space, got {model.action_space!r}")
        self.model = model
        self.max_draft_length = int(n_actions) if max_draft_length is None else max_draft_length
        if self.max_draft_length != int(n_actions):
            raise ValueError(
                f"max_draft_length {self.max_draft_length} does not match the model's {int(n_actions)} actions"
            )
        self.algorithm = type(model).__name__
        self.name = name or self.algorithm.lower()

    def config(self) -> dict[str, Any]:
        return {}

    def reset(self, seed: int | None = None) -> None:
        """Nothing to forget: predictions are deterministic and the model is frozen."""

    def act(self, observation: np.ndarray) -> int:
        action, _ = self.model.predict(np.asarray(observation, dtype=np.float32), deterministic=True)
        return int(np.asarray(action).reshape(-1)[0]) + 1

    def update(self, draft_length: int, result: RequestResult, observation: np.ndarray) -> None:
        """Frozen: SB3 models learn in ``experiments/train.py``, not during evaluation."""

    def state_dict(self) -> dict[str, Any]:
        """Empty: the weights live in the SB3 zip (``save``)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """The weights are loaded with ``load_sb3``."""

    def save(self, path: str | Path) -> Path:
        """Write ``path`` (a ``.zip``) and its sidecar; returns the zip path."""
        path = Path(path)
        if path.suffix != ".zip":
            raise ValueError(f"SB3 models are saved as .zip, got {str(path)!r}")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.model.save(path)
        meta = {"algorithm": self.algorithm, "max_draft_length": self.max_draft_length}
        meta_path(path).write_text(json.dumps(meta, indent=2) + "\n")
        return path


def algorithm_class(name: str) -> Any:
    """The stable-baselines3 class of an algorithm name ("ppo", "DQN", ...)."""
    import stable_baselines3

    cls = getattr(stable_baselines3, name.upper(), None)
    if cls is None:
        raise ValueError(f"unknown stable-baselines3 algorithm {name!r}")
    return cls


def load_sb3(path: str | Path, algorithm: str | None = None) -> SB3Policy:
    """Load an SB3 zip as a policy, on CPU.

    The algorithm is ``algorithm``, else the sidecar's, else the first of PPO, A2C, DQN that loads.
    Raises FileNotFoundError naming a missing path, ValueError when no algorithm can load it.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"SB3 model file not found: {str(path)!r}")
    sidecar = meta_path(path)
    if algorithm is None and sidecar.is_file():
        try:
            algorithm = json.loads(sidecar.read_text())["algorithm"]
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise ValueError(f"bad SB3 sidecar {str(sidecar)!r}: {error!r}") from error
    candidates = (algorithm,) if algorithm is not None else FALLBACK_ALGORITHMS
    errors = []
    for name in candidates:
        cls = algorithm_class(name)
        try:
            model = cls.load(path, device="cpu")
        except Exception as error:  # noqa: BLE001 - SB3 raises many types for a wrong class
            errors.append(f"{name}: {error!r}")
            continue
        return SB3Policy(model)
    raise ValueError(f"could not load {str(path)!r} with {', '.join(candidates)}: {'; '.join(errors)}")
