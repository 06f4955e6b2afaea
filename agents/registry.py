"""Policies by name, and saving/loading them.

Saved non-SB3 policies are JSON: ``{"name", "max_draft_length", "kwargs", "state"}``; SB3 models are
``.zip`` files (see ``agents.sb3``), loaded by extension.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from agents.bandits import BANDITS
from agents.base import Policy
from agents.baselines import FixedPolicy, HaloSpecAdaptive, HFHeuristic
from agents.model_based import SpeculationModelBandit

DEFAULT_MAX_DRAFT_LENGTH = 8
BANDIT_NAMES: tuple[str, ...] = (*BANDITS, SpeculationModelBandit.name)
"""``epsilon_greedy``, ``ucb1``, ``sw_ucb``, ``discounted_ucb``, ``thompson``, ``exp3``, ``linucb``,
and the structured ``model_based`` (``agents.model_based``)."""
HEURISTIC_NAMES: tuple[str, ...] = (HaloSpecAdaptive.name, HFHeuristic.name)


def fixed_names(max_draft_length: int = DEFAULT_MAX_DRAFT_LENGTH) -> tuple[str, ...]:
    """``fixed_1`` .. ``fixed_{max_draft_length}``."""
    return tuple(f"fixed_{k}" for k in range(1, max_draft_length + 1))


def policy_names(max_draft_length: int = DEFAULT_MAX_DRAFT_LENGTH) -> tuple[str, ...]:
    """Every name ``make_policy`` accepts for this maximum draft length."""
    return fixed_names(max_draft_length) + HEURISTIC_NAMES + BANDIT_NAMES


POLICY_NAMES: tuple[str, ...] = policy_names()
"""The names ``make_policy`` accepts with the default maximum draft length 8."""


def make_policy(name: str, max_draft_length: int = DEFAULT_MAX_DRAFT_LENGTH, **kwargs: Any) -> Policy:
    """A fresh policy by name with its hyperparameters as keyword arguments.

    Raises ValueError naming an unknown policy (and listing the known ones) or a bad argument.
    """
    known = policy_names(max_draft_length)
    if name not in known:
        raise ValueError(f"unknown policy {name!r}; known policies: {', '.join(known)}")
    try:
        if name.startswith("fixed_"):
            return FixedPolicy(int(name.removeprefix("fixed_")), max_draft_length, **kwargs)
        if name == HaloSpecAdaptive.name:
            return HaloSpecAdaptive(max_draft_length, **kwargs)
        if name == HFHeuristic.name:
            return HFHeuristic(max_draft_length, **kwargs)
        if name == SpeculationModelBandit.name:
            return SpeculationModelBandit(max_draft_length, **kwargs)
        return BANDITS[name](max_draft_length, **kwargs)
    except TypeError as error:
        # An unexpected keyword: name the policy so a YAML typo is easy to find.
        raise ValueError(f"bad arguments for policy {name!r}: {error}") from error


def save_policy(policy: Policy, path: str | Path) -> Path:
    """Save a policy: an SB3 model to ``path`` (``.zip``), anything else as JSON. Returns the path."""
    from agents.sb3 import SB3Policy  # SB3 (and torch) only when an SB3 model is involved

    path = Path(path)
    if isinstance(policy, SB3Policy):
        return policy.save(path)
    config = getattr(policy, "config", None)
    document = {
        "name": policy.name,
        "max_draft_length": policy.max_draft_length,
        "kwargs": config() if config is not None else {},
        "state": policy.state_dict(),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=1) + "\n")
    return path


def load_policy(path: str | Path) -> Policy:
    """Load what ``save_policy`` wrote: an SB3 ``.zip`` or a JSON policy (name, kwargs, state).

    Raises FileNotFoundError naming a missing path, ValueError naming a malformed file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"policy file not found: {str(path)!r}")
    if path.suffix == ".zip":
        from agents.sb3 import load_sb3

        return load_sb3(path)
    try:
        document = json.loads(path.read_text())
        name = document["name"]
        max_draft_length = int(document.get("max_draft_length", DEFAULT_MAX_DRAFT_LENGTH))
        kwargs = document.get("kwargs", {})
        state = document.get("state", {})
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as error:
        raise ValueError(
            f"{str(path)!r} is not a saved policy (JSON with name, kwargs, state): {error!r}"
        ) from error
    try:
        policy = make_policy(name, max_draft_length, **kwargs)
        policy.load_state_dict(state)
    except ValueError as error:
        raise ValueError(f"cannot load policy from {str(path)!r}: {error}") from error
    return policy
