const autobahn = require("autobahn");

const connection = new autobahn.Connection({ url: "ws://localhost:8080/wamp", realm: "tantra" });

connection.onopen = async (session) => {
  // Every device's soilMoisture, starting with the last known readings (retained).
  await session.subscribe(
    "tantra.reading..soilMoisture",
    (args, kwargs, details) => console.log(details.topic, args[0].value, args[0].unit),
    { match: "wildcard", get_retained: true },
  );

  // Feed the hub like a device would: dashboards on ws://localhost:8080/ get it too.
  await session.publish(
    "tantra.reading.js-1.soilMoisture",
    [{ value: 40, unit: "%" }],
    {},
    { acknowledge: true, exclude_me: false },
  );

  console.log("latest:", await session.call("tantra.latest", [], { sensor: "soilMoisture" }));

  // Call a procedure another client offers (the Python example registers it).
  try {
    console.log("2 + 3 =", await session.call("com.example.add2", [2, 3]));
  } catch (error) {
    console.log("com.example.add2:", error.error); // wamp.error.no_such_procedure if nobody offers it
  }
};

connection.open();
