"""Transports: bytes on the wire to readings and back (raw TCP/UDP, WebSocket dashboards)."""
