"""Draft-length controllers: fixed baselines, HaloSpec's and transformers' heuristics, bandits, SB3.

Every one follows ``agents.base.Policy``; build them by name with ``make_policy`` and persist them
with ``save_policy`` / ``load_policy``. SB3 (and torch) load only when an SB3 model is involved.
"""

from agents.bandits import BANDITS, Bandit
from agents.base import Policy
from agents.baselines import FixedPolicy, HaloSpecAdaptive, HFHeuristic
from agents.registry import (
    BANDIT_NAMES,
    POLICY_NAMES,
    load_policy,
    make_policy,
    policy_names,
    save_policy,
)

__all__ = [
    "BANDITS",
    "BANDIT_NAMES",
    "POLICY_NAMES",
    "Bandit",
    "FixedPolicy",
    "HFHeuristic",
    "HaloSpecAdaptive",
    "Policy",
    "load_policy",
    "make_policy",
    "policy_names",
    "save_policy",
]
