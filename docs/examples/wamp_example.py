from autobahn.twisted.component import Component, run
from autobahn.wamp.types import PublishOptions, SubscribeOptions

component = Component(transports="ws://localhost:8080/wamp", realm="tantra")


@component.on_join
async def joined(session, details):
    def on_reading(reading, details=None):
        print(f"{details.topic}: {reading['value']} {reading.get('unit', '')}")

    # Every sensor of farm-1, starting with its last known readings (retained).
    await session.subscribe(
        on_reading,
        "tantra.reading.farm-1.",
        options=SubscribeOptions(match="prefix", get_retained=True, details=True),
    )
    # Every device's soilMoisture: options=SubscribeOptions(match="wildcard", details=True)
    # with the topic "tantra.reading..soilMoisture".

    # Feed the hub like a device would: dashboards on ws://localhost:8080/ get it too.
    await session.publish(
        "tantra.reading.farm-1.soilMoisture",
        {"value": 42, "unit": "%"},
        options=PublishOptions(acknowledge=True, exclude_me=False),
    )

    print("latest:", await session.call("tantra.latest", device="farm-1"))
    print("sensors:", await session.call("tantra.sensors"))

    # Offer a procedure to other WAMP clients, and call it.
    await session.register(lambda a, b: a + b, "com.example.add2")
    print("2 + 3 =", await session.call("com.example.add2", 2, 3))


if __name__ == "__main__":
    run([component])
