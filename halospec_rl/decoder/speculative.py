"""Exact speculative decoding (Leviathan et al. 2023; Chen et al. 2023) with a target and a draft model.

One round with draft length k: the draft proposes x_1..x_k autoregressively (distributions q_i); the
target scores all k+1 positions in ONE forward pass over [last token, x_1..x_k] (distributions p_i);
x_i is accepted with probability min(1, p_i(x_i) / q_i(x_i)) until the first rejection, where a
replacement is drawn from norm(max(0, p_i - q_i)); when all k are accepted a bonus token is drawn
from p_{k+1}. The emitted tokens are distributed exactly as target-only sampling. At temperature 0
both models are argmax and a draft token is accepted iff it is the target's argmax, so the output is
exactly the target's greedy output. k = 0 is plain target decoding.

Cache invariant between rounds: the target cache holds every token but the last one emitted (which
is fed at the start of the next round); the draft cache holds a prefix of the sequence and catches
up lazily (the tokens it lacks are fed in one forward pass). After a round both caches are truncated
to the accepted prefix, which rolls back the rejected draft tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from halospec_rl.decoder.model import ByteTransformer


@dataclass(frozen=True)
class Generation:
    """New tokens of one request and how speculation went.

    ``drafted``/``accepted``: draft tokens proposed/accepted; ``rounds``: target forward passes
    after the prefill (one per round).
    """

    tokens: list[int]
    drafted: int
    accepted: int
    rounds: int


class SpeculativeDecoder:
    """Generates from ``target`` with ``draft`` speculation. ``temperature`` 0 means greedy.

    The KV caches are allocated once and reused by every request (:attr:`target_cache`,
    :attr:`draft_cache` hold the state of the last request).
    """

    def __init__(self, target: ByteTransformer, draft: ByteTransformer, temperature: float = 0.0):
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        if target.config.context != draft.config.context:
            raise ValueError("target and draft must have the same context length")
        self.target = target
        self.draft = draft
        self.temperature = temperature
        self.context = target.config.context
        self.target_cache = target.new_cache()
        self.draft_cache = draft.new_cache()

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    def _probs(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits / self.temperature, dim=-1)

    def generate(
        self,
        prompt: list[int],
        max_new_tokens: int,
        draft_length: int,
        generator: torch.Generator | None = None,
    ) -> Generation:
        """Generate ``max_new_tokens`` bytes after ``prompt`` (byte ids), no early stop.

        Stops early only when the context is full (prompt + new tokens = context + 1: the last token
        is emitted from the last position and never fed). Near the end a round drafts fewer than
        ``draft_length`` tokens so that no more than ``max_new_tokens`` are produced.
        ``generator`` seeds sampling (unused when greedy).
        """
        if not prompt:
            raise ValueError("prompt must contain at least one token")
        if len(prompt) > self.context:
            raise ValueError(f"prompt of {len(prompt)} tokens exceeds the context of {self.context}")
        if draft_length < 0:
            raise ValueError(f"draft_length must be >= 0, got {draft_length}")
        seq = list(prompt)
        self.target_cache.truncate(0)
        self.draft_cache.truncate(0)
        drafted = accepted = rounds = 0
        with torch.inference_mode():
            if len(seq) > 1:
                self.target.step(torch.tensor(seq[:-1]), self.target_cache)
            while len(seq) - len(prompt) < max_new_tokens and len(seq) <= self.context:
                remaining = max_new_tokens - (len(seq) - len(prompt))
                k = max(0, min(draft_length, remaining - 1, self.context - len(seq)))
                new = self._round(seq, k, generator)
                seq.extend(new)
                drafted += k
                accepted += len(new) - 1
                rounds += 1
                self.target_cache.truncate(len(seq) - 1)
                self.draft_cache.truncate(min(self.draft_cache.length, len(seq) - 1))
        return Generation(tokens=seq[len(prompt) :], drafted=drafted, accepted=accepted, rounds=rounds)

    def _round(self, seq: list[int], k: int, generator: torch.Generator | None) -> list[int]:
        """One speculation round after ``seq``; returns the accepted draft tokens plus one target token."""
        proposal: list[int] = []
        q_rows: list[torch.Tensor] = []
        feed = seq[self.draft_cache.length :]
        for _ in range(k):
            logits = self.draft.step(torch.tensor(feed), self.draft_cache)[-1]
            if self.greedy:
                token = int(logits.argmax())
            else:
                q = self._probs(logits)
                token = int(torch.multinomial(q, 1, generator=generator))
                q_rows.append(q)
            proposal.append(token)
            feed = [token]
        logits = self.target.step(torch.tensor([seq[-1], *proposal]), self.target_cache)  # [k+1, 256]

        if self.greedy:
            best = logits.argmax(dim=-1).tolist()
            n = 0
            while n < k and best[n] == proposal[n]:
                n += 1
            return proposal[:n] + [best[n]]

        p = self._probs(logits)
        n = k
        if k:
            q = torch.stack(q_rows)
            rows, xs = torch.arange(k), torch.tensor(proposal)
            u = torch.rand(k, generator=generator)
            # u < p/q written as u*q < p; q(x) > 0 because x was drawn from q.
            rejected = (u * q[rows, xs] >= p[rows, xs]).tolist()
            n = rejected.index(True) if True in rejected else k
        if n < k:
            residual = (p[n] - q[n]).clamp_min(0.0)
            # A rejection implies p != q, so the residual has mass; the fallback guards float underflow.
            dist = residual if float(residual.sum()) > 0 else p[n]
        else:
            dist = p[k]  # all accepted (or k = 0): bonus token from the target
        return proposal[:n] + [int(torch.multinomial(dist, 1, generator=generator))]
