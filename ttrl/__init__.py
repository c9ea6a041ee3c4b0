"""ttrl: a test-time reinforcement-learning daemon (TTRL, Zuo et al. 2025)."""

__version__ = "0.1.0"
