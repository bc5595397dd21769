"""Register ``tantra`` with twistd/twist; imports nothing heavy (no reactor)."""

from twisted.application.service import ServiceMaker

tantra = ServiceMaker(
    "Tantra telemetry hub",
    "tantra.tap",
    "Relay sensor readings from devices (TCP, UDP, WebSocket) to dashboards.",
    "tantra",
)
