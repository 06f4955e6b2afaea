"""halospec-rl: choose the draft length of speculative decoding online, scored by HaloSpec's SLO score."""

__version__ = "0.1.0"
