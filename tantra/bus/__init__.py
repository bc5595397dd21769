"""MQTT: devices and MQTT clients through an existing broker, and hubs clustered over it.

``topics`` (pure: the topic layout and payload parsing), ``client`` (paho-mqtt
on Tantra's reactor), ``bridge`` (device topics in, readings and discovery
out), ``cluster`` (hub to hub), ``service`` (the part ``tantra.tap`` adds).
"""
