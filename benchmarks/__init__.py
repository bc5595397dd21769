"""Tantra's benchmark suite: Tantra against the seed's Node.js relay.

Run ``python -m benchmarks --quick`` (see benchmarks/README.md).
"""
