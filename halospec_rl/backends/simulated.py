"""A fast, calibrated model of speculative decoding on a virtual clock.

One request of ``N`` tokens is a sequence of rounds. In a round at position ``pos`` the draft
proposes ``k_eff = min(k, N - pos - 1)`` tokens; the target verifies ``k_eff + 1`` positions in one
pass; ``a`` drafted tokens are accepted, where token ``i`` of the output is "draftable" with
probability ``alpha`` (the request's acceptance rate), so ``a`` is the run of draftable tokens from
``pos`` capped at ``k_eff`` (truncated geometric); the round emits ``a + 1`` tokens (the accepted
ones plus the target's correction or bonus token). A request's latency is::

    (overhead_ms + m * (R * target_pass_ms + [k > 0] * R * draft_round_ms
                        + D * (verify_slope * target_pass_ms + draft_token_ms)))
        * lognormal(-noise_sigma**2 / 2, noise_sigma) * (spike_factor if spike else 1)

with ``R`` rounds, ``D`` drafted tokens, ``draft_round_ms`` the draft's per-round cost of catching up
on the token the target emitted (measured on the embedded decoder: plain decoding and speculation
rounds do not cost the same per target pass), and ``m = 1 + load * load_slowdown`` the contention
multiplier; under load the verify slope also becomes ``verify_slope + load * load_verify_slope``
(batched verification loses its parallel advantage when cores are contended), which moves the best
``k`` down under load. ``alpha`` is the domain's acceptance rate plus a per-request normal deviation
(``alpha_spread``), clipped to [0.01, 0.99].

The content stream (per-token draftability draws, per-request alpha deviations, noise, spikes) is
pre-drawn from the seed in blocks and consumed one request at a time, independent of the draft
lengths chosen, so two policies on the same seed see the same workload (common random numbers).

It is a model, not the truth: ``fit`` reports its error per ``k`` against a measured trace.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import asdict, dataclass, field, fields, replace
from importlib import resources
from pathlib import Path

import numpy as np

from halospec_rl.backends.base import DOMAINS, Prompt, RequestResult, check_draft_length

_BLOCK = 512  # requests drawn per refill of the content stream
_MAX_TOKENS_DRAWN = 256  # longest request the pre-drawn stream supports


@dataclass(frozen=True)
class SimulatorParams:
    """Parameters of the simulator (times in ms, rates in 0..1). ``source`` says where they come from."""

    overhead_ms: float
    target_pass_ms: float
    draft_token_ms: float
    verify_slope: float
    domain_alpha: dict[str, float]
    draft_round_ms: float = 0.0
    alpha_spread: float = 0.05
    noise_sigma: float = 0.03
    spike_prob: float = 0.0
    spike_factor: float = 2.0
    load_slowdown: float = 0.8
    load_verify_slope: float = 0.0
    source: str = ""

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            # presets are JSON: whole numbers arrive as int, so check every real number, not only floats
            if isinstance(value, (int, float)) and not isinstance(value, bool) and (
                not math.isfinite(value) or value < 0
            ):
                raise ValueError(f"simulator parameter {f.name} must be finite and >= 0, got {value}")
        if self.spike_prob > 1:
            raise ValueError(f"simulator parameter spike_prob must be a probability in [0, 1], got {self.spike_prob}")
        missing = [d for d in DOMAINS if d not in self.domain_alpha]
        if missing:
            raise ValueError(f"simulator domain_alpha lacks domain(s) {missing}; it needs {list(DOMAINS)}")
        for d, a in self.domain_alpha.items():
            if not 0 <= a < 1:
                raise ValueError(f"simulator domain_alpha[{d!r}] must be in [0, 1), got {a}")

    def mean_latency_ms(self, draft_length: int, alpha: float, max_tokens: int = 64, load: float = 0.0) -> float:
        """Expected latency (ms, noise and spikes included) at a fixed acceptance rate."""
        rounds, drafted = expected_rounds_drafted(draft_length, alpha, max_tokens)
        compute = self.compute_ms(rounds, drafted, draft_length > 0, load)
        spike_mean = 1 + self.spike_prob * (self.spike_factor - 1)
        return (self.overhead_ms + (1 + load * self.load_slowdown) * compute) * spike_mean

    def compute_ms(self, rounds: float, drafted: float, speculative: bool, load: float = 0.0) -> float:
        """Model compute time (ms) of ``rounds`` target passes and ``drafted`` draft tokens, before
        the contention multiplier, overhead and noise."""
        slope = self.verify_slope + load * self.load_verify_slope
        per_round = self.target_pass_ms + (self.draft_round_ms if speculative else 0.0)
        return rounds * per_round + drafted * (slope * self.target_pass_ms + self.draft_token_ms)


@functools.lru_cache(maxsize=65536)  # calibration and model_based ask for the same grid points often
def expected_rounds_drafted(draft_length: int, alpha: float, max_tokens: int) -> tuple[float, float]:
    """Exact expected (target passes, drafted tokens) of one request, by dynamic programming."""
    rounds = [0.0] * (max_tokens + 1)
    drafted = [0.0] * (max_tokens + 1)
    for pos in range(max_tokens - 1, -1, -1):
        k_eff = min(draft_length, max_tokens - pos - 1)
        r, d = 1.0, float(k_eff)
        for a in range(k_eff + 1):
            p = alpha**a * ((1 - alpha) if a < k_eff else 1.0)
            nxt = min(pos + a + 1, max_tokens)
            r += p * rounds[nxt]
            d += p * drafted[nxt]
        rounds[pos], drafted[pos] = r, d
    return rounds[0], drafted[0]


def _preset_dir() -> Path:
    return Path(str(resources.files("halospec_rl") / "presets"))


def preset_names() -> tuple[str, ...]:
    return tuple(sorted(p.stem for p in _preset_dir().glob("*.json")))


def load_preset(name: str) -> SimulatorParams:
    """Load a named preset from ``halospec_rl/presets/NAME.json``."""
    path = _preset_dir() / f"{name}.json"
    if not path.is_file():
        raise ValueError(f"unknown simulator preset {name!r}; known presets: {', '.join(preset_names())}")
    return SimulatorParams(**json.loads(path.read_text()))


def save_preset(name: str, params: SimulatorParams, directory: str | Path | None = None) -> Path:
    path = Path(directory or _preset_dir()) / f"{name}.json"
    path.write_text(json.dumps(asdict(params), indent=2) + "\n")
    return path


@dataclass
class _Stream:
    """Pre-drawn content and noise for a block of requests."""

    draftable_u: np.ndarray  # (block, _MAX_TOKENS_DRAWN) uniforms
    alpha_z: np.ndarray  # (block,) standard normals
    noise_z: np.ndarray  # (block,) standard normals
    spike_u: np.ndarray  # (block,) uniforms
    next_index: int = 0


@dataclass
class SimulatedBackend:
    """The simulator as a backend. ``preset`` names a file in ``halospec_rl/presets`` (or pass
    ``params``); ``max_draft_length`` bounds the accepted draft lengths."""

    preset: str = "halospec-lemonade"
    params: SimulatorParams | None = None
    max_draft_length: int = 8
    seed: int | None = None
    name: str = "simulated"
    clock_s: float = field(default=0.0, init=False)
    """Virtual time (s) served since the last reset."""

    def __post_init__(self) -> None:
        if self.params is None:
            self.params = load_preset(self.preset)
        if self.max_draft_length < 1:
            raise ValueError(f"max_draft_length must be >= 1, got {self.max_draft_length}")
        self._load = 0.0
        self._phase = "steady"
        self.reset(self.seed)

    def reset(self, seed: int | None = None) -> None:
        self._rng = np.random.default_rng(seed)
        self._stream = self._draw_block()
        self.clock_s = 0.0

    def set_load(self, level: float, phase: str = "steady") -> None:
        if not 0 <= level <= 1:
            raise ValueError(f"load level must be in [0, 1], got {level}")
        self._load, self._phase = float(level), phase

    def close(self) -> None:
        """Nothing to release."""

    def _draw_block(self) -> _Stream:
        rng = self._rng
        return _Stream(
            draftable_u=rng.random((_BLOCK, _MAX_TOKENS_DRAWN), dtype=np.float32),
            alpha_z=rng.standard_normal(_BLOCK),
            noise_z=rng.standard_normal(_BLOCK),
            spike_u=rng.random(_BLOCK),
        )

    def generate(self, prompt: Prompt, draft_length: int) -> RequestResult:
        k = check_draft_length(draft_length, self.max_draft_length)
        n = prompt.max_tokens
        if not 1 <= n <= _MAX_TOKENS_DRAWN:
            raise ValueError(f"max_tokens must be in 1..{_MAX_TOKENS_DRAWN} for the simulator, got {n}")
        p = self.params
        try:
            base_alpha = p.domain_alpha[prompt.domain]
        except KeyError:
            raise ValueError(f"unknown domain {prompt.domain!r}; known domains: {', '.join(DOMAINS)}") from None
        s = self._stream
        if s.next_index == _BLOCK:
            s = self._stream = self._draw_block()
        i = s.next_index
        s.next_index += 1

        alpha = min(max(base_alpha + p.alpha_spread * s.alpha_z[i], 0.01), 0.99)
        if k == 0:
            rounds, drafted, accepted = n, 0, 0
        else:
            rounds, drafted, accepted = _speculate(s.draftable_u[i, :n] < alpha, k)
        load = self._load
        compute = p.compute_ms(rounds, drafted, k > 0, load)
        latency = (p.overhead_ms + (1.0 + load * p.load_slowdown) * compute) * math.exp(
            p.noise_sigma * s.noise_z[i] - 0.5 * p.noise_sigma**2  # mean 1: costs are mean latencies
        )
        if s.spike_u[i] < p.spike_prob:
            latency *= p.spike_factor
        self.clock_s += latency / 1000.0
        return RequestResult(
            success=True,
            latency_ms=latency,
            tokens=n,
            draft_length=k,
            drafted=drafted,
            accepted=accepted,
            rounds=rounds,
            load=load,
            phase=self._phase,
        )


def _speculate(draftable: np.ndarray, k: int) -> tuple[int, int, int]:
    """(rounds, drafted, accepted) of one request given which output tokens the draft gets right."""
    n = draftable.shape[0]
    # run[i] = number of consecutive draftable tokens starting at i
    positions = np.arange(n)
    next_miss = np.where(draftable, n, positions)
    next_miss = np.minimum.accumulate(next_miss[::-1])[::-1]
    run = (next_miss - positions).tolist()
    pos = rounds = drafted = accepted = 0
    while pos < n:
        k_eff = min(k, n - pos - 1)
        a = min(run[pos], k_eff)
        pos += a + 1
        rounds += 1
        drafted += k_eff
        accepted += a
    return rounds, drafted, accepted


def with_overrides(params: SimulatorParams, **overrides) -> SimulatorParams:
    """A copy of ``params`` with some fields replaced (ValueError names an unknown field)."""
    known = {f.name for f in fields(SimulatorParams)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown simulator parameter(s) {unknown}; known: {sorted(known)}")
    return replace(params, **overrides)
