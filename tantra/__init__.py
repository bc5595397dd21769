"""Tantra: a real-time telemetry hub on Twisted and Autobahn."""

__version__ = "0.1.0"
