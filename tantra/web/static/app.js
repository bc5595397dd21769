// The hub's built-in dashboard: every sensor's latest value and a chart of
// its last hour, live from the WebSocket at "/" of this same origin, the
// history from /api/v1/aggregate when the hub keeps one, and the counters
// from /stats. Plain browser JavaScript (no build step); charts by the
// vendored uPlot. Nothing is fetched from anywhere but this origin.
"use strict";
(() => {
  const HOUR_MS = 3600e3;
  const MAX_CARDS = 120;      // cards (and charts) on the page at once; filters pick the rest
  const MAX_POINTS = 3600;    // points a chart keeps (the last hour; older ones drop off)
  const MAX_DEVICES_LISTED = 1000;
  const STALE_FACTOR = 3;     // stale: no reading for 3x the sensor's usual period...
  const MIN_STALE_MS = 5000;  // ...and at least 5 s
  const HISTORY_CONCURRENCY = 4;
  const RENDER_EVERY_MS = 250;

  // The auth hook: every request goes through it. A page embedding the
  // dashboard may set window.tantraAuth before this file runs; otherwise the
  // token comes from the login form (shown when the hub answers 401, i.e.
  // it runs with --auth) and is kept in this browser's localStorage. The
  // WebSocket carries it as ?token= (browsers cannot set its headers), fetch
  // as "Authorization: Bearer".
  const TOKEN_KEY = "tantra.token";
  function storedToken() {
    try { return localStorage.getItem(TOKEN_KEY) || ""; } catch (error) { return ""; }
  }
  const auth = window.tantraAuth || {
    headers: () => {
      const token = storedToken();
      return token ? { Authorization: "Bearer " + token } : {};
    },
    socketUrl: (url) => {
      const token = storedToken();
      return token ? url + "?token=" + encodeURIComponent(token) : url;
    },
  };

  const $ = (id) => document.getElementById(id);
  const stateEl = $("state");
  const historyEl = $("history");
  const grid = $("sensors");
  const deviceFilter = $("filter-device");
  const sensorFilter = $("filter-sensor");
  const shownEl = $("shown");

  const sensors = new Map();  // "device\u0000sensor" -> entry
  const devices = new Set();
  let history = "unknown";    // "unknown" | "available" | "unavailable"
  let layoutDirty = true;
  let renderPending = false;
  let shown = [];
  const historyQueue = [];
  let historyRunning = 0;

  function setText(el, text, cls) {
    el.textContent = text;
    if (cls !== undefined) el.className = cls;
  }

  function numeric(value) {
    if (typeof value === "boolean") return value ? 1 : 0;
    return typeof value === "number" ? value : null;
  }

  // -- readings ---------------------------------------------------------------

  function entryFor(reading) {
    const key = reading.device + "\u0000" + reading.sensor;
    let entry = sensors.get(key);
    if (!entry) {
      entry = {
        key, device: reading.device, sensor: reading.sensor, unit: "", value: null, ts: 0,
        period: 0, xs: [], ys: [], card: null, chart: null, dirty: true, historyAsked: false,
      };
      sensors.set(key, entry);
      if (!devices.has(reading.device) && devices.size < MAX_DEVICES_LISTED) {
        devices.add(reading.device);
        const option = document.createElement("option");
        option.value = option.textContent = reading.device;
        deviceFilter.append(option);
      }
      layoutDirty = true;
    }
    return entry;
  }

  function addPoint(entry, ts, value) {
    const x = ts / 1000;
    const xs = entry.xs;
    if (value === null || (xs.length && x <= xs[xs.length - 1])) return;  // uPlot wants x sorted
    xs.push(x);
    entry.ys.push(value);
    const oldest = (Date.now() - HOUR_MS) / 1000;
    let drop = 0;
    while (drop < xs.length && (xs[drop] < oldest || xs.length - drop > MAX_POINTS)) drop++;
    if (drop) { xs.splice(0, drop); entry.ys.splice(0, drop); }
  }

  function onReading(reading) {
    const entry = entryFor(reading);
    if (entry.ts && reading.ts > entry.ts) {
      const gap = reading.ts - entry.ts;  // the sensor's usual period, smoothed
      entry.period = entry.period ? entry.period * 0.8 + gap * 0.2 : gap;
    }
    entry.value = reading.value;
    entry.unit = reading.unit || "";
    entry.ts = Math.max(entry.ts, reading.ts || 0);
    addPoint(entry, reading.ts, numeric(reading.value));
    entry.dirty = true;
    scheduleRender();
  }

  // -- signing in ---------------------------------------------------------------

  const loginForm = $("login");
  const loginToken = $("login-token");
  const loginError = $("login-error");
  const logoutButton = $("logout");
  let signedOut = false;  // the hub refused our token (or we have none): wait for the form

  // Does the hub take our token? Any guarded request answers 401 when it
  // does not; /api/v1/openapi.json is guarded, small, and there even
  // without a store. Network errors count as "yes": the reconnect handles them.
  async function tokenAccepted() {
    try {
      const response = await fetch("/api/v1/openapi.json", { headers: auth.headers() });
      return response.status !== 401;
    } catch (error) {
      return true;
    }
  }

  function needLogin(message) {
    if (window.tantraAuth) return;  // the embedding page handles its own sign-in
    signedOut = true;
    loginForm.hidden = false;
    logoutButton.hidden = true;
    if (loginError) loginError.textContent = message || "";
    setText(stateEl, "sign in with a token", "bad");
    loginToken.focus();
  }

  loginForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    const token = loginToken.value.trim();
    if (!token) return;
    try { localStorage.setItem(TOKEN_KEY, token); } catch (error) { /* private mode: this tab only */ }
    loginToken.value = "";
    if (!(await tokenAccepted())) {
      try { localStorage.removeItem(TOKEN_KEY); } catch (error) { /* */ }
      needLogin("the hub refused this token");
      return;
    }
    start();
  });

  logoutButton.addEventListener("click", () => {
    try { localStorage.removeItem(TOKEN_KEY); } catch (error) { /* */ }
    location.reload();
  });

  // -- the live connection ----------------------------------------------------

  let backoff = 500;
  let socketOpen = false;
  function connect() {
    if (signedOut) return;
    const scheme = location.protocol === "https:" ? "wss://" : "ws://";
    const socket = new WebSocket(auth.socketUrl(scheme + location.host + "/"));
    let opened = false;
    socket.onopen = () => {
      opened = socketOpen = true;
      backoff = 500;
      setText(stateEl, "open", "ok");
    };
    socket.onmessage = (event) => {
      let message;
      try { message = JSON.parse(event.data); } catch (error) { return; }
      if (message && typeof message === "object" && "sensor" in message) onReading(message);
    };
    socket.onclose = async (event) => {
      socketOpen = false;
      // Refused before opening, or closed for a revoked token (4003): ask
      // the hub whether our token still counts before trying again.
      if ((!opened || event.code === 4003) && !(await tokenAccepted())) {
        needLogin(storedToken() ? "the hub refused the saved token" : "");
        return;
      }
      setText(stateEl, `closed, reconnecting in ${(backoff / 1000).toFixed(1)} s`, "bad");
      setTimeout(connect, backoff);
      backoff = Math.min(backoff * 2, 5000);
    };
  }

  // -- history ----------------------------------------------------------------

  function askHistory(entry) {
    if (entry.historyAsked || history === "unavailable") return;
    entry.historyAsked = true;
    historyQueue.push(entry);
    pumpHistory();
  }

  function pumpHistory() {
    while (historyRunning < HISTORY_CONCURRENCY && historyQueue.length) {
      const entry = historyQueue.shift();
      if (history === "unavailable") { historyQueue.length = 0; return; }
      historyRunning++;
      loadHistory(entry).finally(() => { historyRunning--; pumpHistory(); });
    }
  }

  async function loadHistory(entry) {
    const query = new URLSearchParams({
      device: entry.device, sensor: entry.sensor, from: "-1h", every: "10s", fn: "avg",
    });
    let response;
    try {
      response = await fetch("/api/v1/aggregate?" + query, { headers: auth.headers() });
    } catch (error) {
      entry.historyAsked = false;  // the hub may be restarting: ask again later
      return;
    }
    if (response.status === 401) {
      entry.historyAsked = false;
      needLogin("");
      return;
    }
    if (response.status === 404 || response.status === 503) {
      history = "unavailable";
      setText(historyEl, "none (live only)", "muted");
      return;
    }
    if (!response.ok) return;
    const body = await response.json();
    history = "available";
    setText(historyEl, "last hour from the store", "ok");
    const buckets = (body.series && body.series[0] && body.series[0].buckets) || [];
    const firstLive = entry.xs.length ? entry.xs[0] : Infinity;
    const xs = [], ys = [];
    for (const bucket of buckets) {
      const x = bucket.t / 1000;
      if (x < firstLive && typeof bucket.avg === "number") { xs.push(x); ys.push(bucket.avg); }
    }
    entry.xs = xs.concat(entry.xs);
    entry.ys = ys.concat(entry.ys);
    entry.dirty = true;
    scheduleRender();
  }

  // -- rendering --------------------------------------------------------------

  function matches(entry) {
    const device = deviceFilter.value;
    const sensor = sensorFilter.value.trim().toLowerCase();
    return (!device || entry.device === device) &&
      (!sensor || entry.sensor.toLowerCase().includes(sensor));
  }

  function makeCard(entry) {
    const card = document.createElement("article");
    card.className = "card";
    card.dataset.device = entry.device;
    card.dataset.sensor = entry.sensor;
    card.innerHTML =
      '<div class="name"></div><div class="device"></div>' +
      '<div><span class="value"></span><span class="unit"></span>' +
      '<span class="badge">stale</span></div><div class="when"></div><div class="chart"></div>';
    card.querySelector(".name").textContent = entry.sensor;
    card.querySelector(".device").textContent = entry.device;
    return card;
  }

  function makeChart(entry) {
    const el = entry.card.querySelector(".chart");
    const width = Math.max(200, (el.clientWidth || 300) - 4);
    return new uPlot({
      width, height: 110,
      legend: { show: false },
      cursor: { show: true, drag: { x: false, y: false } },
      scales: {
        // at least the last minute, at most the last hour, always up to now
        x: { time: true, auto: false },
      },
      axes: [{ size: 28 }, { size: 60 }],
      series: [{}, { label: entry.sensor, stroke: "#1f6feb", width: 1.5, spanGaps: false }],
    }, [entry.xs, entry.ys], el);
  }

  // The x axis: at least the last minute, at most the last hour, up to now.
  function xWindow(entry) {
    const now = Date.now() / 1000;
    const first = entry.xs.length ? entry.xs[0] : now;
    return { min: Math.min(first, now - 60), max: Math.max(entry.xs[entry.xs.length - 1] || now, now) };
  }

  function layout() {
    layoutDirty = false;
    const matching = [];
    for (const entry of sensors.values()) if (matches(entry)) matching.push(entry);
    matching.sort((a, b) => a.device.localeCompare(b.device) || a.sensor.localeCompare(b.sensor));
    const next = matching.slice(0, MAX_CARDS);
    const keep = new Set(next);
    for (const entry of shown) {
      if (!keep.has(entry) && entry.chart) { entry.chart.destroy(); entry.chart = null; }
    }
    shown = next;
    const cards = next.map((entry) => {
      if (!entry.card) entry.card = makeCard(entry);
      entry.dirty = true;
      return entry.card;
    });
    grid.replaceChildren(...cards);
    for (const entry of next) askHistory(entry);
    setText(shownEl, matching.length > next.length
      ? `showing ${next.length} of ${matching.length} sensors (filter to see others)`
      : `${matching.length} of ${sensors.size} sensors`);
  }

  function ago(ms) {
    const s = Math.max(0, Math.round(ms / 1000));
    if (s < 60) return s + " s ago";
    if (s < 3600) return Math.round(s / 60) + " min ago";
    return Math.round(s / 3600) + " h ago";
  }

  function render() {
    renderPending = false;
    if (layoutDirty) layout();
    const now = Date.now();
    for (const entry of shown) {
      const card = entry.card;
      const stale = entry.period > 0 &&
        now - entry.ts > Math.max(STALE_FACTOR * entry.period, MIN_STALE_MS);
      card.classList.toggle("stale", stale);
      card.querySelector(".when").textContent =
        new Date(entry.ts).toLocaleTimeString() + " · " + ago(now - entry.ts);
      if (!entry.dirty) continue;
      entry.dirty = false;
      card.querySelector(".value").textContent = String(entry.value);
      card.querySelector(".unit").textContent = entry.unit;
      card.dataset.value = String(entry.value);
      card.dataset.points = String(entry.xs.length);
      if (!entry.chart) entry.chart = makeChart(entry);
      else entry.chart.setData([entry.xs, entry.ys]);
      entry.chart.setScale("x", xWindow(entry));
    }
  }

  function scheduleRender() {
    if (renderPending) return;
    renderPending = true;
    setTimeout(() => requestAnimationFrame(render), RENDER_EVERY_MS);
  }

  // -- counters ---------------------------------------------------------------

  function counterTable(title, object, tables) {
    const table = document.createElement("table");
    const caption = document.createElement("caption");
    caption.textContent = title;
    table.append(caption);
    const at = tables.length;
    tables.push(table);
    for (const [name, value] of Object.entries(object)) {
      if (value && typeof value === "object" && Object.keys(value).length) {
        counterTable(title === "hub" ? name : title + " › " + name, value, tables);
        continue;
      }
      const row = table.insertRow();
      row.insertCell().textContent = name;
      const cell = row.insertCell();
      cell.className = "num";
      cell.textContent = value && typeof value === "object" ? "—" : String(value);
    }
    if (!table.rows.length) tables.splice(at, 1);  // a section of sections only
  }

  async function refreshCounters() {
    if (signedOut) return;
    try {
      const response = await fetch("/stats", { headers: auth.headers() });
      if (response.status === 401 || response.status === 403) {
        // 403: a reader scoped to some devices; hub-wide counters need an
        // admin token or a reader whose scope is "*" (docs/security.md).
        const note = document.createElement("p");
        note.className = "muted";
        note.id = "counters-refused";
        note.textContent = response.status === 403
          ? "counters need an operator token (admin, or a reader with scope *)"
          : "sign in to see the counters";
        $("counters").replaceChildren(note);
        return;
      }
      const tables = [];
      counterTable("hub", await response.json(), tables);
      $("counters").replaceChildren(...tables);
    } catch (error) { /* the hub may be restarting; try again on the next tick */ }
  }

  // -- start ------------------------------------------------------------------

  deviceFilter.addEventListener("change", () => { layoutDirty = true; scheduleRender(); });
  sensorFilter.addEventListener("input", () => { layoutDirty = true; scheduleRender(); });
  let started = false;
  // Signed in (or auth off): the live connection, the counters, the history.
  function start() {
    signedOut = false;
    loginForm.hidden = true;
    if (loginError) loginError.textContent = "";
    logoutButton.hidden = !storedToken() || Boolean(window.tantraAuth);
    if (!socketOpen) {
      setText(stateEl, "connecting…", "bad");
      connect();
    }
    refreshCounters();
    for (const entry of sensors.values()) if (!entry.xs.length) entry.historyAsked = false;
    layoutDirty = true;
    scheduleRender();
    if (started) return;
    started = true;
    setInterval(refreshCounters, 2000);
    setInterval(scheduleRender, 1000);  // ages and stale marks move without new readings
  }
  tokenAccepted().then((accepted) => (accepted ? start() : needLogin("")));
  window.tantraDashboard = { sensors, history: () => history };
})();
