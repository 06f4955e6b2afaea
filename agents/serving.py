"""Adaptive serving: a trained agent choosing the draft length inside ``halospec-rl serve``."""

from __future__ import annotations

from pathlib import Path

from agents.base import Policy
from agents.registry import load_policy
from envs.observation import ObservationTracker
from halospec_rl.backends.base import RequestResult


class ServingPolicy:
    """A trained agent choosing the draft length of requests that set none.

    Implements ``halospec_rl.server.DraftLengthChooser``. The agent sees the environment's
    observation (``envs.observation``) of the stream of served requests, as in training. Serving is
    one endless episode: the ``progress`` feature counts requests over ``episode_length`` (the env's
    default, 100) and stays at 1 after that. Every served request shapes the observation; the agent
    learns (``update``) only from the requests it chose.
    """

    def __init__(self, agent: Policy, episode_length: int = 100):
        self.agent = agent
        self.name = str(getattr(agent, "name", type(agent).__name__))
        self.max_draft_length = int(agent.max_draft_length)
        self._tracker = ObservationTracker(self.max_draft_length, episode_length)

    def choose(self) -> int:
        """The agent's draft length for the next request."""
        return int(self.agent.act(self._tracker.observation()))

    def observe(self, result: RequestResult, chosen: bool) -> None:
        """Account for a served request; ``chosen``: its draft length came from this policy."""
        self._tracker.update(result, result.load)
        if chosen:
            self.agent.update(result.draft_length, result, self._tracker.observation())


def load_serving_policy(path: str | Path) -> ServingPolicy:
    """A saved agent (``agents.save_policy``: bandit JSON or SB3 zip) ready to serve."""
    return ServingPolicy(load_policy(path))
