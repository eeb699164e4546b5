// The dashboard's only script (the Content-Security-Policy forbids inline ones). It
//  - shows times in the viewer's time zone and temperatures in the unit they chose (°F/°C,
//    remembered in localStorage; stored values are never touched),
//  - embeds the metric page's Bokeh chart (the figure and its data arrive as JSON blocks),
//  - follows /api/stream (Server-Sent Events) and puts each new reading into the chart, the
//    tables and the overview cards in place, keeping a bounded number of points,
//  - loads the interval statistics table from /api/stats.
// Everything that came from a device is inserted as text (textContent), never as HTML.
(function () {
  "use strict";

  var UNIT_KEY = "officesensor.temperatureUnit";
  var STATS_REFRESH_MS = 30000;
  var REOPEN_MS = 5000;

  // ------------------------------------------------------------------ units and numbers

  function wantsCelsius() {
    try { return window.localStorage.getItem(UNIT_KEY) === "C"; } catch (e) { return false; }
  }

  // A value in the metric's stored unit as shown: kind "value" converts °F to °C, "spread"
  // (a standard deviation or a difference) only scales.
  function shown(value, fahrenheit, kind) {
    if (value === null || value === undefined || !fahrenheit || !wantsCelsius()) { return value; }
    return kind === "spread" ? value * 5 / 9 : (value - 32) * 5 / 9;
  }

  var numberFormat = new Intl.NumberFormat("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  function formatNumber(value) {
    return value === null || value === undefined || !isFinite(value) ? "—" : numberFormat.format(value);
  }

  function unitLabel(unit) {
    return unit === "°F" && wantsCelsius() ? "°C" : unit;
  }

  // Elements rendered by the server as <span class="v" data-v=... data-k=... [data-f]>.
  function applyUnits(root) {
    root.querySelectorAll(".v[data-f]").forEach(function (el) {
      el.textContent = formatNumber(shown(parseFloat(el.getAttribute("data-v")), true, el.getAttribute("data-k")));
    });
    root.querySelectorAll(".u[data-f]").forEach(function (el) { el.textContent = unitLabel("°F"); });
  }

  // A number with its unit as DOM nodes, like the server's "num" macro.
  function numberNodes(value, unit, kind) {
    var fahrenheit = unit === "°F";
    var frag = document.createDocumentFragment();
    var v = document.createElement("span");
    v.className = "v";
    v.setAttribute("data-v", String(value));
    v.setAttribute("data-k", kind || "value");
    if (fahrenheit) { v.setAttribute("data-f", ""); }
    v.textContent = formatNumber(shown(value, fahrenheit, kind));
    frag.appendChild(v);
    if (unit) {
      frag.appendChild(document.createTextNode(" "));
      var u = document.createElement("span");
      u.className = "u";
      if (fahrenheit) { u.setAttribute("data-f", ""); }
      u.textContent = unitLabel(unit);
      frag.appendChild(u);
    }
    return frag;
  }

  function setNumber(el, value, unit, kind) {
    el.textContent = "";
    el.appendChild(numberNodes(value, unit, kind));
  }

  function setupUnitToggle() {
    var button = document.getElementById("unit-toggle");
    if (!button) { return; }
    button.hidden = false;
    button.textContent = wantsCelsius() ? "°C" : "°F";
    button.setAttribute("aria-label", "Temperature unit: " + button.textContent + ". Switch.");
    button.addEventListener("click", function () {
      try { window.localStorage.setItem(UNIT_KEY, wantsCelsius() ? "F" : "C"); } catch (e) { return; }
      window.location.reload(); // redraw every number and the chart in the new unit
    });
  }

  // ------------------------------------------------------------------ times

  var zone = (Intl.DateTimeFormat().resolvedOptions().timeZone) || "local time";

  // Epoch ms of an ISO time, keeping its microseconds (Date.parse keeps milliseconds only).
  function isoMs(iso) {
    var fraction = /\.(\d+)/.exec(iso);
    var ms = Date.parse(iso.replace(/\.\d+/, ""));
    return fraction ? ms + parseFloat("0." + fraction[1]) * 1000 : ms;
  }

  function pad(n) { return (n < 10 ? "0" : "") + n; }
  function localTime(ms) {
    var d = new Date(ms);
    return d.getFullYear() + "-" + pad(d.getMonth() + 1) + "-" + pad(d.getDate()) + " " +
      pad(d.getHours()) + ":" + pad(d.getMinutes()) + ":" + pad(d.getSeconds());
  }
  function offsetLabel(ms) {
    var minutes = -new Date(ms).getTimezoneOffset();
    var sign = minutes < 0 ? "−" : "+";
    minutes = Math.abs(minutes);
    return "UTC" + sign + pad(Math.floor(minutes / 60)) + ":" + pad(minutes % 60);
  }
  // Bokeh draws epoch milliseconds as UTC: shifting by the local offset at each instant makes
  // its axis and tooltips read local time (and follows daylight-saving changes).
  function toLocalAxis(ms) { return ms - new Date(ms).getTimezoneOffset() * 60000; }

  function localizeTimes(root) {
    root.querySelectorAll("time[datetime]").forEach(function (el) {
      var ms = Date.parse(el.getAttribute("datetime"));
      if (!isNaN(ms)) {
        el.textContent = localTime(ms);
        el.title = zone + " (" + offsetLabel(ms) + ")";
      }
    });
  }

  function timeElement(iso) {
    var el = document.createElement("time");
    el.setAttribute("datetime", iso);
    el.textContent = iso;
    localizeTimes({ querySelectorAll: function () { return [el]; } });
    return el;
  }

  function age(ms, now) {
    var s = Math.max(0, Math.floor((now - ms) / 1000));
    if (s >= 86400) { return Math.floor(s / 86400) + " d ago"; }
    if (s >= 3600) { return Math.floor(s / 3600) + " h ago"; }
    if (s >= 60) { return Math.floor(s / 60) + " min ago"; }
    return s + " s ago";
  }

  function tickAges() {
    var now = Date.now();
    document.querySelectorAll("[data-age]").forEach(function (el) {
      var ms = parseFloat(el.getAttribute("data-age"));
      if (isFinite(ms)) { el.textContent = age(ms, now); }
    });
    var cards = document.getElementById("cards");
    var intervals = cards ? parseFloat(cards.getAttribute("data-stale-intervals")) || 3 : 3;
    document.querySelectorAll(".metric-card[data-last]").forEach(function (card) {
      var last = parseFloat(card.getAttribute("data-last"));
      var cadence = parseFloat(card.getAttribute("data-cadence"));
      if (isFinite(last) && isFinite(cadence)) {
        card.classList.toggle("stale", now - last > intervals * cadence * 1000);
      }
    });
  }

  // ------------------------------------------------------------------ the chart

  var chart = null; // {live, sources: {name: ColumnDataSource}, ...} once embedded

  function readJSON(id) {
    var block = document.getElementById(id);
    return block ? JSON.parse(block.textContent) : null;
  }

  var VALUE_COLUMNS = { value: 1, mean: 1, lower: 1, upper: 1, min: 1, max: 1 };
  function prepareColumn(name, values, fahrenheit) {
    return values.map(function (v) {
      if (v === null) { return NaN; } // JSON has no NaN: null marks a gap or an undefined statistic
      if (name === "x") { return toLocalAxis(v); }
      if (VALUE_COLUMNS[name]) { return shown(v, fahrenheit, "value"); }
      if (name === "std") { return shown(v, fahrenheit, "spread"); }
      return v;
    });
  }

  // The shaded areas (band, envelope) are Bokeh VArea glyphs, which join their points across
  // NaN instead of breaking there as lines do. So each gap row (a finite x, every other column
  // NaN) becomes two rows just inside the neighbouring points, where the area has zero height:
  // nothing is shaded across the gap. `prev` is the row before cols' first one, if any.
  var AREA_PAIRS = [["lower", "upper"], ["min", "max"]];
  function isGapRow(cols, keys, i) {
    return isFinite(cols.x[i]) && keys.every(function (k) { return k === "x" || !isFinite(cols[k][i]); });
  }
  function splitGaps(cols, prev) {
    var keys = Object.keys(cols);
    var pairs = AREA_PAIRS.filter(function (pair) { return cols[pair[0]] && cols[pair[1]]; });
    var n = cols.x.length;
    if (!pairs.length) { return cols; }
    var gaps = false;
    for (var g = 0; g < n && !gaps; g++) { gaps = isGapRow(cols, keys, g); }
    if (!gaps) { return cols; }
    var out = {};
    keys.forEach(function (k) { out[k] = []; });
    var at = function (k, i) { return i < 0 ? (prev ? prev[k] : NaN) : cols[k][i]; };
    for (var i = 0; i < n; i++) {
      var before = i > 0 || prev ? i - 1 : null;
      if (!isGapRow(cols, keys, i) || before === null || i + 1 >= n) {
        keys.forEach(function (k) { out[k].push(cols[k][i]); });
        continue;
      }
      [[before, at("x", before) + 1], [i + 1, cols.x[i + 1] - 1]].forEach(function (edge) {
        keys.forEach(function (k) { out[k].push(k === "x" ? edge[1] : NaN); });
        pairs.forEach(function (pair) {
          var level = at(pair[0], edge[0]);
          if (!isFinite(level)) { level = at(pair[1], edge[0]); }
          out[pair[0]][out.x.length - 1] = level;
          out[pair[1]][out.x.length - 1] = level;
        });
      });
    }
    return out;
  }

  // Put each named source's columns into the figure before it is drawn (Bokeh's document
  // format: a dict is {type: "map", entries}); name the axis's time zone; switch °F labels.
  function fill(node, sources, fahrenheit, filled) {
    if (Array.isArray(node)) {
      for (var i = 0; i < node.length; i++) {
        if (typeof node[i] === "string") {
          node[i] = relabel(node[i], fahrenheit);
        } else {
          fill(node[i], sources, fahrenheit, filled);
        }
      }
    } else if (node !== null && typeof node === "object") {
      var attributes = node.attributes;
      if (node.name === "ColumnDataSource" && attributes && sources[attributes.name]) {
        var raw = sources[attributes.name];
        var prepared = {};
        Object.keys(raw).forEach(function (key) { prepared[key] = prepareColumn(key, raw[key], fahrenheit); });
        prepared = splitGaps(prepared, null);
        attributes.data = {
          type: "map",
          entries: Object.keys(prepared).map(function (key) { return [key, prepared[key]]; }),
        };
        filled.push(attributes.name);
        return;
      }
      if (attributes && attributes.axis_label === "time") {
        attributes.axis_label = "time (" + zone + ")";
      }
      Object.keys(node).forEach(function (key) {
        if (typeof node[key] === "string") {
          node[key] = relabel(node[key], fahrenheit);
        } else {
          fill(node[key], sources, fahrenheit, filled);
        }
      });
    }
  }
  function relabel(text, fahrenheit) {
    return fahrenheit && wantsCelsius() ? text.split("°F").join("°C") : text;
  }

  var pendingChart = null; // an empty live range: embedded when its first reading arrives
  var chartQueue = null; // readings that arrived while the chart was being embedded

  function setupChart() {
    var item = readJSON("chart-item");
    var data = readJSON("chart-data");
    var live = readJSON("chart-live");
    var target = document.getElementById("chart");
    if (!item || !data || !live || !target || !window.Bokeh) { return; }
    var mainData = data.readings || data.buckets;
    if (!mainData.x.length) {
      // Nothing to draw yet (BokehJS cannot range an empty plot): wait for a live reading.
      var waiting = document.getElementById("chart-waiting");
      if (waiting) { waiting.hidden = false; }
      pendingChart = { item: item, data: data, live: live, target: target };
      target.setAttribute("data-ready", "waiting");
      return;
    }
    embedChart(item, data, live, target);
  }

  // The first reading of an empty live range, into the page's (stored-unit) data.
  function firstReading(pending, event) {
    var data = pending.data;
    if (data.readings) {
      var r = data.readings;
      r.x.push(event.ts_ms); r.value.push(event.value); r.mean.push(event.mean);
      r.lower.push(event.lower); r.upper.push(event.upper); r.std.push(event.std); r.z.push(event.z);
    } else {
      var width = pending.live.bucket_s * 1000;
      var b = data.buckets;
      b.x.push(Math.floor(event.ts_ms / width) * width);
      b.mean.push(event.value); b.min.push(event.value); b.max.push(event.value); b.count.push(1);
    }
    if (event.anomaly && data.anomalies) {
      var a = data.anomalies;
      a.x.push(event.ts_ms); a.value.push(event.value); a.mean.push(event.mean);
      a.std.push(event.std); a.z.push(event.z);
    }
  }

  function embedChart(item, data, live, target) {
    chartQueue = [];
    var waiting = document.getElementById("chart-waiting");
    if (waiting) { waiting.hidden = true; }
    var fahrenheit = live.unit === "°F";
    var sources = {};
    Object.keys(data).forEach(function (name) { sources[name] = data[name]; });
    var filled = [];
    fill(item.doc, sources, fahrenheit, filled);
    if (filled.length !== Object.keys(sources).length) {
      console.error("officesensor: the chart has no source for some data:", filled);
    }
    window.Bokeh.embed.embed_item(item).then(function (views) {
      // embed_item resolves to the views (an array in BokehJS 2, a ViewManager in 3): take
      // the document it added, the newest one.
      var docs = window.Bokeh.documents || [];
      var doc = docs.length ? docs[docs.length - 1] : null;
      if (!doc && views && views.length) { doc = views[0].model.document; }
      var found = {};
      ["readings", "buckets", "anomalies"].forEach(function (name) {
        var model = doc ? doc.get_model_by_name(name) : null;
        if (model) { found[name] = model; }
      });
      var mainData = data.readings || data.buckets;
      var spanMs = parseFloat(target.getAttribute("data-span-ms"));
      var queued = chartQueue;
      chartQueue = null;
      chart = {
        live: live,
        fahrenheit: fahrenheit,
        sources: found,
        lastX: lastFinite(mainData.x),
        // A live named range (1h ... 1y) slides with time: points older than this drop out.
        windowMs: target.getAttribute("data-range") !== "all" && isFinite(spanMs) ? spanMs : null,
      };
      queued.forEach(chartReading);
      target.setAttribute("data-ready", "true");
    });
  }

  function lastFinite(values) {
    for (var i = values.length - 1; i >= 0; i--) {
      if (values[i] !== null && isFinite(values[i])) { return values[i]; }
    }
    return null;
  }

  function row(names, values) {
    var out = {};
    names.forEach(function (name, i) { out[name] = [values[i]]; });
    return out;
  }

  // Rows to append to a source: at most `capacity` are kept, and, for a sliding range, none
  // older than the window (x below `cutoff`, in axis coordinates). Returns the rows dropped.
  function append(source, rows, capacity, cutoff) {
    var xs = source.data.x;
    var n = xs.length;
    var added = rows.x.length;
    var old = 0;
    if (cutoff !== null) {
      while (old < n && !(xs[old] >= cutoff)) { old++; } // NaN x never occurs; gaps have an x
    }
    var keep = Math.max(1, Math.min(capacity, n + added - old));
    var dropped = Math.max(0, n + added - keep);
    var gone = {};
    Object.keys(source.data).forEach(function (key) {
      gone[key] = Array.prototype.slice.call(source.data[key], 0, Math.min(dropped, n));
    });
    source.stream(rows, keep);
    return gone;
  }

  function lastRow(source) {
    var n = source.data.x.length;
    if (!n) { return null; }
    var out = {};
    Object.keys(source.data).forEach(function (key) { out[key] = source.data[key][n - 1]; });
    return out;
  }

  function realCount(gone) {
    if (gone.count) { return gone.count.reduce(function (a, c) { return a + (isFinite(c) ? c : 0); }, 0); }
    return (gone.value || []).filter(function (v) { return isFinite(v); }).length;
  }

  // "Readings in this range" counts what the chart holds: recounted after every change, so
  // it cannot drift from the points drawn (readings trimmed by the window or the capacity).
  function recount() {
    var counter = document.getElementById("shown-count");
    var source = chart && (chart.sources.readings || chart.sources.buckets);
    if (counter && source) { counter.textContent = realCount(source.data).toLocaleString("en-US"); }
  }

  // A new reading into the chart: a point (readings mode), or into its bucket (buckets mode).
  function chartReading(event) {
    if (chart === null) {
      if (chartQueue !== null) {
        chartQueue.push(event);
      } else if (pendingChart !== null) {
        var pending = pendingChart;
        pendingChart = null;
        firstReading(pending, event);
        embedChart(pending.item, pending.data, pending.live, pending.target);
      }
      return;
    }
    if (!chart.live.live) { return; }
    var f = chart.fahrenheit;
    var x = event.ts_ms;
    var capacity = chart.live.capacity;
    var gapMs = chart.live.gap_s * 1000;
    var cutoff = chart.windowMs === null ? null : toLocalAxis(x - chart.windowMs);
    if (chart.live.mode === "readings" && chart.sources.readings) {
      if (chart.lastX !== null && x <= chart.lastX) { return; } // already drawn
      var src = chart.sources.readings;
      var names = ["x", "value", "mean", "lower", "upper", "std", "z"];
      var rows = row(names, [
        toLocalAxis(x), shown(event.value, f, "value"), num(shown(event.mean, f, "value")),
        num(shown(event.lower, f, "value")), num(shown(event.upper, f, "value")),
        num(shown(event.std, f, "spread")), num(event.z),
      ]);
      if (chart.lastX !== null && x - chart.lastX > gapMs) { // a gap: break the lines
        var gap = row(names, [toLocalAxis((x + chart.lastX) / 2), NaN, NaN, NaN, NaN, NaN, NaN]);
        names.forEach(function (name) { rows[name].unshift(gap[name][0]); });
        rows = splitGaps(rows, lastRow(src));
      }
      append(src, rows, capacity, cutoff);
      chart.lastX = x;
    } else if (chart.sources.buckets) {
      var b = chart.sources.buckets;
      var width = chart.live.bucket_s * 1000;
      var start = Math.floor(x / width) * width;
      var cols = b.data;
      var n = cols.x.length;
      var value = shown(event.value, f, "value");
      if (chart.lastX === start && n > 0) {
        var count = cols.count[n - 1];
        b.patch({
          mean: [[n - 1, (cols.mean[n - 1] * count + value) / (count + 1)]],
          min: [[n - 1, Math.min(cols.min[n - 1], value)]],
          max: [[n - 1, Math.max(cols.max[n - 1], value)]],
          count: [[n - 1, count + 1]],
        });
      } else if (chart.lastX === null || start > chart.lastX) {
        var bnames = ["x", "mean", "min", "max", "count"];
        var brows = row(bnames, [toLocalAxis(start), value, value, value, 1]);
        if (chart.lastX !== null && start - chart.lastX > gapMs) {
          var bgap = row(bnames, [toLocalAxis((start + chart.lastX) / 2), NaN, NaN, NaN, NaN]);
          bnames.forEach(function (name) { brows[name].unshift(bgap[name][0]); });
          brows = splitGaps(brows, lastRow(b));
        }
        append(b, brows, capacity, cutoff === null ? null : cutoff - width);
        chart.lastX = start;
      }
    }
    if (event.anomaly && chart.sources.anomalies) {
      append(chart.sources.anomalies, row(["x", "value", "mean", "std", "z"], [
        toLocalAxis(x), shown(event.value, f, "value"), num(shown(event.mean, f, "value")),
        num(shown(event.std, f, "spread")), num(event.z),
      ]), capacity, cutoff);
    }
    recount();
  }
  function num(v) { return v === null || v === undefined ? NaN : v; }

  // ------------------------------------------------------------------ metric page tables

  function metricReading(event) {
    var latest = document.getElementById("latest-value");
    if (latest) {
      setNumber(latest, event.value, event.unit, "value");
      var meta = latest.parentNode.querySelector(".muted");
      if (meta) {
        meta.textContent = "";
        meta.appendChild(timeElement(event.ts));
        meta.appendChild(document.createTextNode(" · "));
        var ageEl = document.createElement("span");
        ageEl.setAttribute("data-age", String(event.ts_ms));
        ageEl.textContent = age(event.ts_ms, Date.now());
        meta.appendChild(ageEl);
      }
    }
    if (event.anomaly) { addAnomalyRow(event); }
    statsSoon();
  }

  function addAnomalyRow(event) {
    var table = document.getElementById("anomaly-table");
    if (!table) { return; }
    table.hidden = false;
    var empty = document.getElementById("anomaly-empty");
    if (empty) { empty.hidden = true; }
    var tr = document.createElement("tr");
    [[event.value, "value"], [event.mean, "value"], [event.std, "spread"]].forEach(function (pair) {
      var td = document.createElement("td");
      td.className = "num";
      td.appendChild(numberNodes(pair[0], event.unit, pair[1]));
      tr.appendChild(td);
    });
    var z = document.createElement("td");
    z.className = "num z";
    z.textContent = (event.z >= 0 ? "+" : "") + event.z.toFixed(2);
    tr.appendChild(z);
    var when = document.createElement("td");
    when.appendChild(timeElement(event.ts));
    tr.appendChild(when);
    var body = table.tBodies[0];
    body.insertBefore(tr, body.firstChild);
    while (body.rows.length > 50) { body.deleteRow(body.rows.length - 1); }
    var count = document.getElementById("anomaly-count");
    if (count) {
      count.textContent = String((parseInt(count.textContent.replace(/,/g, ""), 10) || 0) + 1);
      count.classList.add("alert");
    }
  }

  var STAT_FIELDS = [["count", null], ["mean", "value"], ["std", "spread"], ["min", "value"],
    ["q25", "value"], ["median", "value"], ["q75", "value"], ["max", "value"]];
  var INTERVAL_NAMES = { "1h": "Last hour", "24h": "Last 24 h", "7d": "Last 7 days",
    "30d": "Last 30 days", "1y": "Last year", "selected": "Selected range" };

  var statsTimer = null;
  var statsLoaded = 0;
  function statsSoon() {
    if (statsTimer !== null) { return; }
    var wait = Math.max(0, statsLoaded + STATS_REFRESH_MS - Date.now());
    statsTimer = window.setTimeout(function () { statsTimer = null; loadStats(); }, wait);
  }

  function loadStats() {
    var table = document.getElementById("stats-table");
    if (!table) { return; }
    statsLoaded = Date.now();
    fetch(table.getAttribute("data-src"), { headers: { Accept: "application/json" } })
      .then(function (response) {
        if (!response.ok) { throw new Error("HTTP " + response.status); }
        return response.json();
      })
      .then(function (body) { renderStats(table, body); })
      .catch(function (error) {
        var note = document.getElementById("stats-note");
        if (note) { note.textContent = "Statistics could not be loaded (" + error.message + ")."; }
      });
  }

  function renderStats(table, body) {
    var tbody = document.createElement("tbody");
    var approximate = 0;
    body.intervals.forEach(function (interval) {
      var tr = document.createElement("tr");
      if (interval.name === "selected") { tr.className = "selected"; }
      var th = document.createElement("th");
      th.scope = "row";
      th.textContent = INTERVAL_NAMES[interval.name] || interval.name;
      tr.appendChild(th);
      STAT_FIELDS.forEach(function (field) {
        var td = document.createElement("td");
        td.className = "num";
        var value = interval[field[0]];
        if (field[1] === null) {
          td.textContent = value.toLocaleString("en-US");
        } else if (value === null) {
          td.textContent = "—";
        } else {
          td.appendChild(numberNodes(value, body.unit, field[1]));
          if (interval.quantile_error > 0 && /^q|median/.test(field[0])) {
            td.title = "±" + formatNumber(shown(interval.quantile_error, body.unit === "°F", "spread")) + " (from rollups)";
          }
        }
        tr.appendChild(td);
      });
      if (interval.quantile_error > 0) { approximate = Math.max(approximate, interval.quantile_error); }
      var coverage = document.createElement("td");
      coverage.className = "num";
      coverage.textContent = interval.coverage === null ? "—" : (interval.coverage * 100).toFixed(1) + " %";
      tr.appendChild(coverage);
      tbody.appendChild(tr);
    });
    table.replaceChild(tbody, table.tBodies[0]);
    var note = document.getElementById("stats-note");
    if (note) {
      var text = "Coverage: readings present ÷ readings expected at the sensor's usual interval" +
        (body.cadence_s ? " (" + body.cadence_s + " s)" : "") + ".";
      if (approximate > 0) {
        text += " Quartiles over long intervals come from rollup histograms, exact to ±" +
          formatNumber(shown(approximate, body.unit === "°F", "spread")) + " " + unitLabel(body.unit) + ".";
      }
      note.textContent = text;
    }
    table.setAttribute("data-ready", "true");
  }

  function setupRangeForm() {
    var form = document.getElementById("custom-range");
    if (!form) { return; }
    var inputs = form.querySelectorAll("input[type=datetime-local]");
    inputs.forEach(function (input) {
      var ms = Date.parse(input.getAttribute("data-iso"));
      if (!isNaN(ms)) { input.value = localTime(ms).replace(" ", "T"); }
    });
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      var params = new URLSearchParams();
      var sensor = form.querySelector("input[name=sensor]");
      if (sensor) { params.set("sensor", sensor.value); }
      var ok = true;
      inputs.forEach(function (input) {
        var ms = new Date(input.value).getTime(); // datetime-local: the viewer's zone
        if (isNaN(ms)) { ok = false; } else { params.set(input.name, new Date(ms).toISOString()); }
      });
      if (ok) { window.location.assign(form.getAttribute("action") + "?" + params.toString()); }
    });
  }

  // ------------------------------------------------------------------ overview cards

  function findCard(sensor, metric) {
    var cards = document.querySelectorAll(".metric-card[data-sensor]");
    for (var i = 0; i < cards.length; i++) {
      if (cards[i].getAttribute("data-sensor") === sensor && cards[i].getAttribute("data-metric") === metric) {
        return cards[i];
      }
    }
    return null;
  }

  var SPARK_BUCKET_MS = 900000;
  var DAY_MS = 86400000;
  function tableReading(event) {
    var rows = document.querySelectorAll("tr.series-row[data-sensor]");
    for (var i = 0; i < rows.length; i++) {
      var tr = rows[i];
      if (tr.getAttribute("data-sensor") !== event.sensor || tr.getAttribute("data-metric") !== event.metric) { continue; }
      var value = tr.querySelector("[data-role=value]");
      if (value) { setNumber(value, event.value, event.unit, "value"); }
      var when = tr.querySelector("[data-role=time]");
      if (when) { when.textContent = ""; when.appendChild(timeElement(event.ts)); }
      var count = tr.querySelector("[data-role=count]");
      if (count) {
        count.textContent = ((parseInt(count.textContent.replace(/,/g, ""), 10) || 0) + 1).toLocaleString("en-US");
      }
    }
  }

  function cardReading(event) {
    tableReading(event);
    var card = findCard(event.sensor, event.metric);
    if (!card) {
      var notice = document.getElementById("new-series");
      if (notice) { notice.hidden = false; }
      return;
    }
    card.setAttribute("data-last", String(event.ts_ms));
    card.classList.remove("stale");
    var value = card.querySelector("[data-role=value]");
    if (value) { setNumber(value, event.value, event.unit, "value"); }
    var ageEl = card.querySelector("[data-age]");
    if (ageEl) { ageEl.setAttribute("data-age", String(event.ts_ms)); }
    var when = card.querySelector(".meta time");
    if (when) { when.replaceWith(timeElement(event.ts)); }
    ["min", "max"].forEach(function (which) {
      var el = card.querySelector("[data-role=" + which + "]");
      if (!el) { return; }
      var current = el.querySelector(".v");
      var old = current ? parseFloat(current.getAttribute("data-v")) : NaN;
      if (isNaN(old) || (which === "min" ? event.value < old : event.value > old)) {
        setNumber(el, event.value, event.unit, "value");
      }
    });
    if (event.anomaly) {
      var anomalies = card.querySelector("[data-role=anomalies]");
      if (anomalies) {
        anomalies.textContent = String((parseInt(anomalies.textContent, 10) || 0) + 1);
        anomalies.classList.add("alert");
      }
    }
    var spark = card.querySelector("svg.spark");
    if (spark) { sparkReading(spark, event); }
  }

  function sparkReading(svg, event) {
    var points;
    try { points = JSON.parse(svg.getAttribute("data-points") || "[]"); } catch (e) { points = []; }
    var bucket = Math.floor(event.ts_ms / SPARK_BUCKET_MS) * SPARK_BUCKET_MS;
    var last = points.length ? points[points.length - 1] : null;
    if (last && last[0] === bucket) {
      var n = last[2] || 1;
      last[1] = (last[1] * n + event.value) / (n + 1);
      last[2] = n + 1;
    } else if (!last || bucket > last[0]) {
      points.push([bucket, event.value, 1]);
    }
    var cutoff = event.ts_ms - DAY_MS;
    while (points.length > 2 && points[0][0] < cutoff) { points.shift(); }
    svg.setAttribute("data-points", JSON.stringify(points));
    if (points.length < 2) { return; }
    var t0 = points[0][0], t1 = points[points.length - 1][0];
    var low = Infinity, high = -Infinity;
    points.forEach(function (p) { low = Math.min(low, p[1]); high = Math.max(high, p[1]); });
    var spread = high - low || 1, duration = t1 - t0 || 1;
    var line = points.map(function (p) {
      return ((p[0] - t0) / duration * 240).toFixed(1) + "," + (4 + (high - p[1]) / spread * 40).toFixed(1);
    }).join(" ");
    svg.querySelector(".spark-line").setAttribute("points", line);
    svg.querySelector(".spark-area").setAttribute("points", "0,48 " + line + " 240,48");
  }

  // A sensor said it went offline (its last will) or came back: mark its cards at once.
  function sensorStatus(sensor, online) {
    document.querySelectorAll(".metric-card[data-sensor]").forEach(function (card) {
      if (card.getAttribute("data-sensor") === sensor) { card.classList.toggle("offline", !online); }
    });
  }

  // ------------------------------------------------------------------ the live stream

  function streamUrl() {
    var live = readJSON("chart-live");
    if (live) {
      if (!live.live) { return null; }
      return live.stream + "?sensor=" + encodeURIComponent(live.sensor) + "&metric=" + encodeURIComponent(live.metric);
    }
    return document.getElementById("cards") ? "/api/stream" : null;
  }

  function setStatus(text, state) {
    var el = document.getElementById("live-status");
    if (el) {
      el.textContent = text;
      el.setAttribute("data-state", state);
    }
  }

  // The newest reading time (epoch ms) the page shows, per "sensor\u0000metric": a replayed
  // reading at or before it is already on the page.
  var seen = {};
  function seriesKey(sensor, metric) { return sensor + "\u0000" + metric; }
  function initSeen() {
    var live = readJSON("chart-live");
    var latest = document.querySelector("#latest-value ~ .muted [data-age]");
    if (live && latest) {
      var ms = parseFloat(latest.getAttribute("data-age"));
      if (isFinite(ms)) { seen[seriesKey(live.sensor, live.metric)] = ms; }
    }
    document.querySelectorAll(".metric-card[data-sensor]").forEach(function (card) {
      var last = parseFloat(card.getAttribute("data-last"));
      if (isFinite(last)) { seen[seriesKey(card.getAttribute("data-sensor"), card.getAttribute("data-metric"))] = last; }
    });
  }

  function connect(url, lastId) {
    var full = lastId ? url + (url.indexOf("?") < 0 ? "?" : "&") + "last_event_id=" + encodeURIComponent(lastId) : url;
    var source = new EventSource(full);
    var newest = lastId;
    source.addEventListener("open", function () { setStatus("Live: new readings appear as they arrive.", "live"); });
    source.addEventListener("reading", function (message) {
      newest = message.lastEventId || newest;
      var event;
      try { event = JSON.parse(message.data); } catch (e) { return; }
      event.ts_ms = isoMs(event.ts);
      var key = seriesKey(event.sensor, event.metric);
      if (seen[key] !== undefined && event.ts_ms <= seen[key]) { return; } // shown already
      seen[key] = event.ts_ms;
      if (document.getElementById("cards")) {
        cardReading(event);
      } else {
        chartReading(event);
        metricReading(event);
      }
    });
    source.addEventListener("status", function (message) {
      var status;
      try { status = JSON.parse(message.data); } catch (e) { return; }
      sensorStatus(status.sensor, status.online === true);
    });
    source.addEventListener("error", function () {
      if (source.readyState === EventSource.CLOSED) {
        // The browser gave up (e.g. the server answered with an error while restarting):
        // start over, resuming after the newest reading seen.
        setStatus("Reconnecting…", "reconnecting");
        window.setTimeout(function () { connect(url, newest); }, REOPEN_MS);
      } else {
        setStatus("Reconnecting…", "reconnecting"); // EventSource retries by itself
      }
    });
  }

  function setupLive() {
    var url = streamUrl();
    if (url === null) {
      setStatus(readJSON("chart-live") ? "This custom range has ended: no live updates." : "", "off");
      return;
    }
    if (!window.EventSource) { setStatus("This browser cannot receive live updates.", "off"); return; }
    setStatus("Connecting…", "connecting");
    initSeen();
    // Resume after the newest reading the page was rendered with: readings stored in between
    // (or while the server restarts before the first event) are replayed, not lost.
    var newest = pageNewestMs();
    connect(url, newest === null ? "" : String(Math.round(newest * 1000)));
  }

  // The time of the newest reading on the page, epoch ms (stream ids are epoch µs).
  function pageNewestMs() {
    var newest = null;
    Object.keys(seen).forEach(function (key) {
      if (newest === null || seen[key] > newest) { newest = seen[key]; }
    });
    return newest;
  }

  // ------------------------------------------------------------------ start

  function start() {
    var tz = document.getElementById("tz-name");
    if (tz) { tz.textContent = zone + " (" + offsetLabel(Date.now()) + ")"; }
    setupUnitToggle();
    applyUnits(document);
    localizeTimes(document);
    setupRangeForm();
    setupChart();
    loadStats();
    tickAges();
    window.setInterval(tickAges, 1000);
    setupLive();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
