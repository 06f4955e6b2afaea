"""The embedded backend: the project's real speculative decoder, in-process, on the CPU.

One request = a prompt (given, or drawn from the corpus for its domain and seed), ``max_tokens`` new
bytes (exactly that many: no early stop), wall-clock latency of prefill + decode. Models are loaded
from the cache (built on first use unless ``build_if_missing=False``). Contention comes from
:class:`halospec_rl.load.BurnerPool` child processes started by :meth:`EmbeddedBackend.set_load`.
"""

from __future__ import annotations

import os
import time
import zlib
from typing import Any

import torch

from halospec_rl.backends.base import Prompt, RequestResult, check_draft_length
from halospec_rl.decoder.corpus import DEFAULT_PROMPT_CHARS, prompt_text
from halospec_rl.decoder.speculative import SpeculativeDecoder
from halospec_rl.decoder.train import load_models
from halospec_rl.load import DEFAULT_BURNERS, BurnerPool, pool_for_level


class EmbeddedBackend:
    """Serves requests with the cached target/draft pair of ``config`` ("full" or "tiny").

    ``temperature`` 0 (default) is greedy, as HaloSpec; above 0 exact speculative sampling, seeded
    per request from (``reset`` seed, prompt domain, prompt seed) so every draft length sees the same
    random stream. ``num_threads`` sets torch's (process-wide) intra-op threads; 1 is fastest on
    small models and most robust to a busy neighbour. ``load_processes`` burners run at load level 1.
    ``prompt_chars``: length of corpus prompts. The prompt is cut from the left so that prompt +
    ``max_tokens`` fit the context (256 bytes); a request asking for more than the context can hold
    stops when it is full.
    """

    name = "embedded"

    def __init__(
        self,
        config: str = "full",
        temperature: float = 0.0,
        num_threads: int = 1,
        max_draft_length: int = 8,
        load_processes: int = DEFAULT_BURNERS,
        cache_dir: str | os.PathLike | None = None,
        build_if_missing: bool = True,
        prompt_chars: int = DEFAULT_PROMPT_CHARS,
        seed: int = 0,
    ):
        if num_threads < 1:
            raise ValueError(f"num_threads must be >= 1, got {num_threads}")
        if max_draft_length < 0:
            raise ValueError(f"max_draft_length must be >= 0, got {max_draft_length}")
        self.models = load_models(config, cache_dir, build_if_missing=build_if_missing)
        torch.set_num_threads(num_threads)
        self.num_threads = num_threads
        self.max_draft_length = max_draft_length
        self.load_processes = load_processes
        self.prompt_chars = prompt_chars
        self.decoder = SpeculativeDecoder(self.models.target, self.models.draft, temperature)
        self._seed = seed
        self._pool = BurnerPool(0)
        self._load = 0.0
        self._phase = "steady"

    def describe(self) -> dict[str, Any]:
        """What produced the numbers: models, sampling, threads, load settings."""
        meta = self.models.meta
        return {
            "backend": self.name,
            "config": self.models.config.name,
            "model_key": meta["key"],
            "model_dir": str(self.models.directory),
            "target_parameters": meta["target_parameters"],
            "draft_parameters": meta["draft_parameters"],
            "context": self.decoder.context,
            "temperature": self.decoder.temperature,
            "num_threads": self.num_threads,
            "torch_threads_now": torch.get_num_threads(),
            "max_draft_length": self.max_draft_length,
            "load_processes": self.load_processes,
            "prompt_chars": self.prompt_chars,
        }

    def reset(self, seed: int | None = None) -> None:
        if seed is not None:
            self._seed = seed

    def set_load(self, level: float, phase: str = "steady") -> None:
        """Run ``ceil(level * load_processes)`` burners from now on (0 stops them)."""
        self._pool = pool_for_level(self._pool, level, self.load_processes)
        self._load = float(level)
        self._phase = phase

    def prompt_bytes(self, prompt: Prompt) -> list[int]:
        """The prompt's byte ids as fed to the models (drawn from the corpus if ``prompt.text`` is empty)."""
        text = prompt.text or prompt_text(prompt.domain, prompt.seed, self.prompt_chars)
        room = max(1, self.decoder.context - prompt.max_tokens)
        return list(text.encode("utf-8"))[-room:]

    def generate(self, prompt: Prompt, draft_length: int) -> RequestResult:
        k = check_draft_length(draft_length, self.max_draft_length)
        if prompt.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {prompt.max_tokens}")
        tokens = self.prompt_bytes(prompt)
        generator = None
        if not self.decoder.greedy:
            key = f"{self._seed}:{prompt.domain}:{prompt.seed}".encode()
            generator = torch.Generator().manual_seed(zlib.crc32(key))
        started = time.perf_counter()
        try:
            out = self.decoder.generate(tokens, prompt.max_tokens, k, generator)
        except Exception as error:  # a runtime failure is a failed request, never an exception
            return RequestResult(
                success=False,
                latency_ms=(time.perf_counter() - started) * 1000.0,
                tokens=0,
                draft_length=k,
                error=f"{type(error).__name__}: {error}",
                load=self._load,
                phase=self._phase,
            )
        latency_ms = (time.perf_counter() - started) * 1000.0
        return RequestResult(
            success=True,
            latency_ms=latency_ms,
            tokens=len(out.tokens),
            draft_length=k,
            drafted=out.drafted,
            accepted=out.accepted,
            rounds=out.rounds,
            text=bytes(out.tokens).decode("utf-8", errors="replace"),
            load=self._load,
            phase=self._phase,
        )

    def close(self) -> None:
        self._pool.stop()

    def __enter__(self) -> EmbeddedBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
