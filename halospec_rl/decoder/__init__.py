"""The real speculative decoder: byte-level target/draft transformers, exact speculative sampling,
the offline corpus and the on-disk model cache.

Submodules: ``corpus`` (no torch), ``model``, ``speculative``, ``train`` (build and load), ``cache``.
This package does not import torch itself, so ``halospec_rl.decoder.corpus`` stays torch-free.
"""
