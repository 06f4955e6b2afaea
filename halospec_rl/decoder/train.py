"""Build the target/draft pair: train the target on the corpus, distil the draft from it, cache both.

Training runs a fixed number of steps from a fixed seed (never "for N minutes"), so every machine
with the same Python standard library and torch builds the same models. The ``full`` config takes
about 6 + 2.5 minutes on 2 CPU cores; ``tiny`` takes seconds and exists for tests.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from halospec_rl.backends.base import DOMAINS
from halospec_rl.decoder.cache import atomic_write_bytes, build_lock, cache_root
from halospec_rl.decoder.corpus import training_text
from halospec_rl.decoder.model import ByteTransformer, ModelConfig

FORMAT_VERSION = 2  # bump when the model code or the corpus changes meaning


@dataclass(frozen=True)
class BuildConfig:
    """Everything that determines the built models (it is hashed into the cache directory name).

    ``domain_chars``: training characters per domain (code, prose, random); ``domain_weights``: share
    of training windows drawn from each domain; ``seq_len`` in bytes.
    """

    name: str
    target: ModelConfig
    draft: ModelConfig
    target_steps: int
    draft_steps: int
    batch_size: int = 16
    seq_len: int = 256
    lr: float = 2e-3
    warmup_steps: int = 50
    domain_chars: tuple[int, int, int] = (12_000_000, 2_000_000, 500_000)
    domain_weights: tuple[float, float, float] = (0.5, 0.35, 0.15)
    seed: int = 0

    def key(self) -> str:
        """Short hash of the config, the format version and the Python minor version (the corpus)."""
        blob = json.dumps(
            [dataclasses.asdict(self), FORMAT_VERSION, sys.version_info[:2]], sort_keys=True
        ).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


CONFIGS: dict[str, BuildConfig] = {
    "full": BuildConfig(
        name="full",
        target=ModelConfig(n_layers=6, d_model=128, n_heads=4),
        draft=ModelConfig(n_layers=1, d_model=64, n_heads=2),
        target_steps=900,
        draft_steps=1000,
    ),
    "tiny": BuildConfig(
        name="tiny",
        target=ModelConfig(n_layers=2, d_model=32, n_heads=2),
        draft=ModelConfig(n_layers=1, d_model=16, n_heads=2),
        target_steps=150,
        draft_steps=100,
        batch_size=8,
        seq_len=64,
        lr=3e-3,
        warmup_steps=10,
        domain_chars=(300_000, 30_000, 30_000),
    ),
}


@dataclass
class DecoderModels:
    """A built target/draft pair in eval mode, and where it was loaded from."""

    config: BuildConfig
    target: ByteTransformer
    draft: ByteTransformer
    directory: Path
    meta: dict


def get_config(config: str | BuildConfig) -> BuildConfig:
    if isinstance(config, BuildConfig):
        return config
    if config not in CONFIGS:
        raise ValueError(f"unknown decoder config {config!r}; known: {', '.join(CONFIGS)}")
    return CONFIGS[config]


def model_dir(config: str | BuildConfig, cache_dir: str | os.PathLike | None = None) -> Path:
    cfg = get_config(config)
    return cache_root(cache_dir) / f"{cfg.name}-{cfg.key()}"


class _Windows:
    """Random training windows [B, seq_len + 1] of bytes, domains mixed by weight, from a seeded generator."""

    def __init__(self, cfg: BuildConfig, generator: torch.Generator):
        self.cfg = cfg
        self.generator = generator
        self.data = []
        for domain, chars in zip(DOMAINS, cfg.domain_chars, strict=True):
            raw = training_text(domain, chars, seed=cfg.seed).encode("utf-8", errors="replace")
            self.data.append(torch.frombuffer(bytearray(raw), dtype=torch.uint8))
        self.weights = torch.tensor(cfg.domain_weights, dtype=torch.float)

    def sample(self) -> torch.Tensor:
        n, length = self.cfg.batch_size, self.cfg.seq_len + 1
        domains = torch.multinomial(self.weights, n, replacement=True, generator=self.generator).tolist()
        rows = []
        for d in domains:
            start = int(torch.randint(0, len(self.data[d]) - length, (1,), generator=self.generator))
            rows.append(self.data[d][start : start + length])
        return torch.stack(rows).long()


def _lr_at(step: int, cfg: BuildConfig, total: int) -> float:
    """Linear warmup, then cosine decay to 10% of the peak."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps)
    return cfg.lr * (0.1 + 0.45 * (1 + math.cos(math.pi * progress)))


def _train(
    model: ByteTransformer,
    windows: _Windows,
    steps: int,
    loss_fn,
    desc: str,
    progress: bool,
) -> float:
    """Run ``steps`` AdamW steps of ``loss_fn(model, batch)``; returns the mean loss of the last 10%."""
    cfg = windows.cfg
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.95), weight_decay=0.01)
    model.train()
    tail: list[float] = []
    bar = tqdm(range(steps), desc=desc, disable=not progress, unit="step")
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, cfg, steps)
        loss = loss_fn(model, windows.sample())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if step >= steps * 0.9:
            tail.append(loss.item())
        if step % 10 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
    model.eval()
    return sum(tail) / max(1, len(tail))


def _next_byte_loss(model: ByteTransformer, batch: torch.Tensor) -> torch.Tensor:
    logits = model(batch[:, :-1])
    return F.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten())


def _distill_loss(target: ByteTransformer):
    """KL(target || draft) per position: the draft learns the target's whole next-byte distribution,
    which is what speculative acceptance min(1, p/q) rewards."""

    def loss(draft: ByteTransformer, batch: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            log_p = F.log_softmax(target(batch[:, :-1]), dim=-1).flatten(0, 1)
        log_q = F.log_softmax(draft(batch[:, :-1]), dim=-1).flatten(0, 1)
        return F.kl_div(log_q, log_p, log_target=True, reduction="batchmean")

    return loss


def _save(model: ByteTransformer, path: Path) -> None:
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    atomic_write_bytes(path, buffer.getvalue())


def _load(model_config: ModelConfig, path: Path) -> ByteTransformer:
    model = ByteTransformer(model_config)
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval().requires_grad_(False)


def is_built(config: str | BuildConfig, cache_dir: str | os.PathLike | None = None) -> bool:
    return (model_dir(config, cache_dir) / "meta.json").exists()


def build(
    config: str | BuildConfig = "full",
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
    num_threads: int | None = None,
) -> Path:
    """Train and cache the models of ``config`` unless already cached (then a no-op). Returns the directory.

    ``num_threads``: torch threads while training, restored afterwards. Default 1: two threads are
    ~1.5x faster on an idle 2-core machine but several times slower when another process is busy.
    """
    cfg = get_config(config)
    directory = model_dir(cfg, cache_dir)
    with build_lock(directory):
        if is_built(cfg, cache_dir):
            return directory
        previous_threads = torch.get_num_threads()
        torch.set_num_threads(num_threads or 1)
        started = time.perf_counter()
        try:
            torch.manual_seed(cfg.seed)
            windows = _Windows(cfg, torch.Generator().manual_seed(cfg.seed))
            target = ByteTransformer(cfg.target)
            target_loss = _train(
                target, windows, cfg.target_steps, _next_byte_loss, f"{cfg.name} target", progress
            )
            target.requires_grad_(False)
            draft = ByteTransformer(cfg.draft)
            draft_loss = _train(
                draft, windows, cfg.draft_steps, _distill_loss(target), f"{cfg.name} draft", progress
            )
        finally:
            torch.set_num_threads(previous_threads)
        _save(target, directory / "target.pt")
        _save(draft, directory / "draft.pt")
        meta = {
            "config": dataclasses.asdict(cfg),
            "key": cfg.key(),
            "target_parameters": target.num_parameters(),
            "draft_parameters": draft.num_parameters(),
            "target_loss_nats_per_byte": target_loss,
            "draft_kl_nats_per_byte": draft_loss,
            "build_seconds": time.perf_counter() - started,
            "torch": torch.__version__,
            "python": sys.version.split()[0],
        }
        # meta.json is written last: its presence is what marks the build complete.
        atomic_write_bytes(directory / "meta.json", json.dumps(meta, indent=2).encode())
    return directory


def load_models(
    config: str | BuildConfig = "full",
    cache_dir: str | os.PathLike | None = None,
    build_if_missing: bool = True,
    progress: bool = True,
) -> DecoderModels:
    """Load the cached target/draft pair, building it first if missing (and allowed)."""
    cfg = get_config(config)
    if not is_built(cfg, cache_dir):
        if not build_if_missing:
            raise FileNotFoundError(
                f"decoder models {cfg.name!r} are not built under {model_dir(cfg, cache_dir)}; "
                f"run `halospec-rl build --config {cfg.name}`"
            )
        build(cfg, cache_dir, progress=progress)
    directory = model_dir(cfg, cache_dir)
    return DecoderModels(
        config=cfg,
        target=_load(cfg.target, directory / "target.pt"),
        draft=_load(cfg.draft, directory / "draft.pt"),
        directory=directory,
        meta=json.loads((directory / "meta.json").read_text()),
    )
