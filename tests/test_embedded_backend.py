"""The embedded backend on the tiny models: request accounting, greedy invariance, load, errors."""

from __future__ import annotations

import pytest
import torch

from halospec_rl.backends import Backend, Prompt, make_backend
from halospec_rl.backends.embedded import EmbeddedBackend


@pytest.fixture(scope="module")
def backend(tiny_model_cache):
    cache = tiny_model_cache
    previous = torch.get_num_threads()
    with make_backend(
        "embedded", config="tiny", cache_dir=cache, build_if_missing=False, load_processes=1
    ) as b:
        yield b
    torch.set_num_threads(previous)


def test_is_a_backend_and_describes_itself(backend):
    assert isinstance(backend, Backend) and backend.name == "embedded" and backend.max_draft_length == 8
    info = backend.describe()
    assert info["config"] == "tiny" and info["num_threads"] == 1 == torch.get_num_threads()
    assert info["temperature"] == 0.0 and info["context"] == 256


@pytest.mark.parametrize("domain", ["code", "prose", "random"])
def test_requests_are_exact_length_and_accounted(backend, domain):
    texts = set()
    for k in (0, 1, 5, 8):
        result = backend.generate(Prompt(domain=domain, seed=3, max_tokens=32), k)
        assert result.success and result.error == "" and result.latency_ms > 0
        assert result.tokens == 32 and result.draft_length == k
        assert 0 <= result.accepted <= result.drafted and result.tokens == result.accepted + result.rounds
        if k == 0:
            assert (result.drafted, result.rounds) == (0, 32)
        texts.add(result.text)
    assert len(texts) == 1  # greedy: the draft length changes the cost, never the text


def test_given_text_long_prompts_and_context_fill(backend):
    result = backend.generate(Prompt(text="x = 1\n" * 100, max_tokens=64), 4)  # prompt cut to fit
    assert result.success and result.tokens == 64
    result = backend.generate(Prompt(text="abc", max_tokens=400), 3)  # more than the context holds
    assert result.success and result.tokens == 256


def test_sampling_is_seeded_per_prompt(tiny_model_cache):
    cache = tiny_model_cache
    with EmbeddedBackend(config="tiny", temperature=1.0, cache_dir=cache, build_if_missing=False) as b:
        first = b.generate(Prompt(domain="prose", seed=1, max_tokens=16), 3)
        assert first.text == b.generate(Prompt(domain="prose", seed=1, max_tokens=16), 3).text
        b.reset(seed=99)
        assert first.text != b.generate(Prompt(domain="prose", seed=1, max_tokens=16), 3).text


def test_set_load_starts_and_stops_burners(backend):
    backend.set_load(1.0, "load")
    pids = backend._pool.pids
    assert len(pids) == 1
    result = backend.generate(Prompt(max_tokens=8), 2)
    assert (result.load, result.phase) == (1.0, "load")
    backend.set_load(0.0, "recovery")
    assert not backend._pool.running
    assert backend.generate(Prompt(max_tokens=8), 2).phase == "recovery"


def test_bad_arguments_raise_and_runtime_failures_return(backend, monkeypatch):
    for bad in (-1, 9, 2.5, True):
        with pytest.raises(ValueError, match="draft_length"):
            backend.generate(Prompt(), bad)
    with pytest.raises(ValueError, match="max_tokens"):
        backend.generate(Prompt(max_tokens=0), 2)
    with pytest.raises(ValueError, match="poetry"):
        backend.generate(Prompt(domain="poetry"), 2)

    def broken(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(backend.decoder, "generate", broken)
    result = backend.generate(Prompt(), 2)
    assert not result.success and "out of memory" in result.error and result.tokens == 0
