// ipckit report self-check: runs on load, writes "OK ..." or "FAIL: ..." into #self-check.
(function () {
  var errors = [];
  window.onerror = function (msg, src, line) {
    errors.push("script error: " + msg + " (line " + line + ")");
    verdict();
  };
  function verdict(summary) {
    var out = document.getElementById("self-check");
    if (!out) return;
    out.textContent = errors.length ? "FAIL: " + errors.join("; ") : "OK " + summary;
  }
  function get(v, path) {
    var parts = path.split(".");
    for (var i = 0; i < parts.length; i++) {
      if (v === null || v === undefined) return undefined;
      v = v[parts[i]];
    }
    return v;
  }
  function isNum(v) { return typeof v === "number"; }
  function key(r) {
    var p = isNum(r.producers) ? " x" + r.producers : "";
    return r.mechanism + p + " " + r.wait + " " + r.placement + " " + r.size + " " + r["impl"];
  }
  function check() {
    var doc = JSON.parse(document.getElementById("ipckit-data").textContent);
    var rows = doc.rows;
    var byKey = {};
    rows.forEach(function (r) { byKey[key(r)] = r; });
    // The table: one row per JSON row, every number equal to the JSON's.
    var trs = document.querySelectorAll("#results tbody tr");
    if (trs.length !== rows.length) errors.push("table has " + trs.length + " rows, JSON " + rows.length);
    var cells = 0;
    trs.forEach(function (tr) {
      var r = byKey[tr.getAttribute("data-row")];
      if (!r) { errors.push("table row not in JSON: " + tr.getAttribute("data-row")); return; }
      tr.querySelectorAll("td[data-field]").forEach(function (td) {
        var want = get(r, td.getAttribute("data-field"));
        var has = td.hasAttribute("data-value");
        if (!has && isNum(want)) errors.push("table cell missing " + td.getAttribute("data-field"));
        if (has && Number(td.getAttribute("data-value")) !== want)
          errors.push("table cell " + td.getAttribute("data-field") + " of " + key(r) + ": " + td.getAttribute("data-value") + " != " + want);
        if (has) cells++;
      });
    });
    // The charts: which rows each must draw, and their numbers.
    function pick(paths) {
      var out = {};
      rows.forEach(function (r) {
        var vals = paths.map(function (p) { return get(r, p); });
        if (vals.every(isNum)) out[key(r)] = vals;
      });
      return out;
    }
    var tput = pick(["throughput_mbps"]);
    var sizes = {};
    rows.forEach(function (r) { if (isNum(r.throughput_mbps)) sizes[r.size] = 1; });
    var p50 = pick(["rtt_ns.p50"]);
    var pairs = {};
    Object.keys(p50).forEach(function (k) {
      var r = byKey[k];
      var other = r.placement === "same" ? "cross" : "same";
      if (p50[k.replace(" " + r.placement + " ", " " + other + " ")]) pairs[k] = p50[k];
    });
    var charts = { throughput: tput, rtt: pick(["rtt_ns.p50", "rtt_ns.p99", "rtt_ns.p999"]), cpu: pick(["cpu_ns_per_msg"]) };
    if (Object.keys(sizes).length > 1) charts.size = tput;
    if (Object.keys(pairs).length > 0) charts.placement = pairs;
    var marks = 0;
    Object.keys(charts).forEach(function (name) {
      var want = charts[name];
      var svg = document.querySelector('svg[data-chart="' + name + '"]');
      if (!svg) { errors.push("chart " + name + " missing"); return; }
      var box = svg.getBoundingClientRect();
      if (!(box.width > 0 && box.height > 0)) errors.push("chart " + name + " has size " + box.width + "x" + box.height);
      var seen = {};
      var ms = svg.querySelectorAll("[data-row]");
      ms.forEach(function (m) {
        var k = m.getAttribute("data-row");
        if (seen[k]) errors.push("chart " + name + ": two marks for " + k);
        seen[k] = 1;
        if (!want[k]) { errors.push("chart " + name + ": mark for a row without data: " + k); return; }
        var got = m.getAttribute("data-value").split(" ").map(Number);
        if (got.length !== want[k].length || got.some(function (g, i) { return g !== want[k][i]; }))
          errors.push("chart " + name + " " + k + ": " + got + " != " + want[k]);
        var b = m.getBoundingClientRect();
        if (!(b.width > 0 && b.height > 0)) errors.push("chart " + name + " " + k + ": mark has no size");
      });
      Object.keys(want).forEach(function (k) { if (!seen[k]) errors.push("chart " + name + ": no mark for " + k); });
      marks += ms.length;
    });
    document.querySelectorAll("svg[data-chart]").forEach(function (svg) {
      if (!charts[svg.getAttribute("data-chart")]) errors.push("unexpected chart " + svg.getAttribute("data-chart"));
    });
    verdict(rows.length + " rows, " + cells + " table numbers, " + Object.keys(charts).length + " charts (" + Object.keys(charts).join(", ") + "), " + marks + " marks");
  }
  window.addEventListener("load", function () {
    try { check(); } catch (e) { errors.push("self-check threw: " + e); verdict(); }
  });
})();
