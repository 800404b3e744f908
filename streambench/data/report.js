// streambench's HTML report: draws the data of <script id="sb-data"> (computed by
// streambench/results/html.py; the page does no arithmetic on it). Text from the results file
// goes into the page only through textContent, and into plotly labels with &, <, > as
// entities: nothing from the file is ever parsed as HTML.
(function () {
  "use strict";
  var DATA = JSON.parse(document.getElementById("sb-data").textContent);
  var ROOT = document.getElementById("report");
  var MANY = DATA.documents.length > 1;
  var PLOT_CONFIG = { displaylogo: false, responsive: true };
  var COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];
  function color(i) { return COLORS[i % COLORS.length]; }

  // -- helpers -----------------------------------------------------------------------------
  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "text") node.textContent = attrs[k];
      else if (k === "cls") node.className = attrs[k];
      else node.setAttribute(k, attrs[k]);
    });
    (children || []).forEach(function (c) {
      node.appendChild(typeof c === "string" ? document.createTextNode(c) : c);
    });
    return node;
  }
  function label(s) { // text for plotly: its labels understand a little HTML, so escape it
    return String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  }
  function fmt(v, digits) {
    if (v === null || v === undefined) return "—";
    if (typeof v !== "number") return String(v);
    return v.toFixed(digits === undefined ? 3 : digits);
  }
  function text(v) { return v === null || v === undefined ? "—" : String(v); } // never "null"
  function cell(v, digits, key) {
    var td = el("td", { cls: v === null || v === undefined ? "num none" : "num", text: fmt(v, digits) });
    if (key) td.setAttribute("data-key", key);
    if (typeof v === "number") td.setAttribute("data-value", String(v));
    return td;
  }
  function stat(c, name, field) {
    return c.stats && c.stats[name] ? c.stats[name][field] : null;
  }
  function section(title, id) {
    var s = el("section", { id: id }, [el("h2", { text: title })]);
    ROOT.appendChild(s);
    return s;
  }
  function chartBox(parent, id, title, note) {
    var box = el("div", { cls: "chart", id: id, "data-title": title });
    parent.appendChild(el("h3", { text: title }));
    if (note) parent.appendChild(el("p", { cls: "note", text: note }));
    parent.appendChild(box);
    return box;
  }
  function layout(xTitle, yTitle, extra) {
    var base = {
      margin: { l: 60, r: 20, t: 10, b: 50 },
      xaxis: { title: { text: xTitle }, zeroline: false },
      yaxis: { title: { text: yTitle }, zeroline: false, rangemode: "tozero" },
      legend: { orientation: "h", y: -0.25 },
      hovermode: "closest",
      height: 380,
    };
    Object.keys(extra || {}).forEach(function (k) { base[k] = extra[k]; });
    return base;
  }
  function each(fn) { // every configuration of every document: fn(doc, config, name)
    DATA.documents.forEach(function (d, di) {
      d.configurations.forEach(function (c) {
        fn(d, c, MANY ? d.name + " · " + c.name : c.name, di);
      });
    });
  }
  function notPlotted(parent, what) {
    var missing = [];
    each(function (d, c, name) { if (c.status !== "ok") missing.push(name + " (" + c.status + ")"); });
    if (missing.length) {
      parent.appendChild(el("p", { cls: "note failed-note", text: "Not in the " + what + ": " + missing.join(", ") }));
    }
  }

  // -- header, environment, configurations --------------------------------------------------
  function header() {
    var names = DATA.documents.map(function (d) { return d.name; });
    ROOT.appendChild(el("h1", { text: "streambench report" }));
    ROOT.appendChild(el("p", { cls: "sub", text: names.join(" vs ") + " · written by " + DATA.generator + " on " + DATA.created }));
  }
  function environment(doc, parent) {
    var dl = el("table", { cls: "env" });
    doc.environment.forEach(function (row) {
      dl.appendChild(el("tr", {}, [el("th", { text: row[0] }), el("td", { text: row[1] })]));
    });
    parent.appendChild(dl);
    var settings = el("table", { cls: "env" });
    Object.keys(doc.settings || {}).forEach(function (k) {
      settings.appendChild(el("tr", {}, [el("th", { text: k }), el("td", { text: JSON.stringify(doc.settings[k]) })]));
    });
    parent.appendChild(el("details", {}, [el("summary", { text: "sweep settings" }), settings]));
  }
  var COLUMNS = [
    ["first token median (ms)", "first_token_ms", "median", 3],
    ["95% interval", "first_token_ms", "ci95", 3],
    ["first token p90 (ms)", "first_token_ms", "p90", 3],
    ["rest median (ms/token)", "rest_token_ms", "median", 3],
    ["95% interval", "rest_token_ms", "ci95", 3],
    ["rest p90 (ms/token)", "rest_token_ms", "p90", 3],
    ["decode tokens/s", "decode_tokens_per_s", "median", 1],
    ["decode × batch tokens/s", "decode_throughput_tokens_per_s", "median", 1],
  ];
  function byRate(doc) { // [config, index]; a capacity search's points by asked rate (inf last)
    var rows = doc.configurations.map(function (c, ci) { return [c, ci]; });
    if (!Object.keys(doc.capacity || {}).length) return rows;
    function rate(c) { var r = c.settings.request_rate; return typeof r === "number" ? r : Infinity; }
    return rows.sort(function (a, b) { return rate(a[0]) - rate(b[0]) || a[1] - b[1]; });
  }
  function capacityCells(doc, c, tr) { // the search's verdict on this point: pass/fail, order tried
    var p = (doc.capacity || {})[c.key];
    tr.appendChild(el("td", { cls: p ? (p.passed ? "slo pass" : "slo fail") : "slo none",
      text: p ? (p.passed ? "pass" : "fail") : "—" }));
    tr.appendChild(cell(p ? p.slo_attained : null, 3, "slo_attained"));
    tr.appendChild(el("td", { cls: "num", text: p ? String(p.order) : "—" }));
  }
  function intervalCell(c, name, digits) { // the 95% interval of the median over trials
    var lo = stat(c, name, "ci95_low"), hi = stat(c, name, "ci95_high"), n = stat(c, name, "n");
    var none = lo === null || lo === undefined || hi === null || hi === undefined;
    var td = el("td", { cls: none ? "num none" : "num interval",
      text: none ? (n !== null && n !== undefined && n < 6 ? "n<6: none" : "—") : "[" + fmt(lo, digits) + ", " + fmt(hi, digits) + "]" });
    td.setAttribute("data-key", name + ".ci95");
    return td;
  }
  function configurationTable(doc, parent, di) {
    var beams = doc.configurations.some(function (c) { return c.settings.num_beams !== 1; });
    var conc = doc.configurations.some(function (c) { return c.settings.concurrency !== undefined; });
    var rates = doc.configurations.some(function (c) { return c.settings.request_rate !== undefined; });
    var search = Object.keys(doc.capacity || {}).length > 0;
    var head = ["configuration", "status", "in-out", "batch"];
    if (beams) head.push("beams");
    if (conc) head.push("concurrency");
    if (rates) head.push("rate (requests/s)");
    if (search) head.push("SLO", "SLO attained", "tried");
    head.push("device", "dtype", "trials");
    COLUMNS.forEach(function (c) { head.push(c[0]); });
    var traces = doc.configurations.some(function (c) { return c.profile; });
    head.push("peak memory (GiB)");
    if (traces) head.push("profile");
    var table = el("table", { cls: "configs", "data-document": String(di) });
    table.appendChild(el("thead", {}, [el("tr", {}, head.map(function (h) { return el("th", { text: h }); }))]));
    var body = el("tbody");
    byRate(doc).forEach(function (row) {
      var c = row[0], ci = row[1], s = c.settings, ok = c.status === "ok";
      var tr = el("tr", { cls: ok ? "ok" : "not-ok " + c.status, "data-config": String(ci) });
      tr.appendChild(el("td", { text: c.name }));
      tr.appendChild(el("td", { cls: "status", text: c.status }));
      tr.appendChild(el("td", { cls: "in-out", text: s.input_tokens + "-" + s.output_tokens }));
      tr.appendChild(el("td", { text: String(s.batch_size) }));
      if (beams) tr.appendChild(el("td", { text: String(s.num_beams) }));
      if (conc) tr.appendChild(el("td", { text: text(s.concurrency) }));
      if (rates) tr.appendChild(el("td", { cls: "num rate", text: typeof s.request_rate === "number" ? String(s.request_rate) : "inf" }));
      if (search) capacityCells(doc, c, tr);
      tr.appendChild(el("td", { text: text(c.config.device) }));
      tr.appendChild(el("td", { cls: "dtype", text: text(c.config.dtype) }));
      tr.appendChild(el("td", { text: String(c.trials) }));
      COLUMNS.forEach(function (col) {
        if (col[2] === "ci95") { tr.appendChild(intervalCell(c, col[1], col[3])); return; }
        tr.appendChild(cell(stat(c, col[1], col[2]), col[3], col[1] + "." + col[2]));
      });
      tr.appendChild(cell(c.peak_memory_gib, 3, "peak_memory_gib"));
      if (traces) {
        var prof = el("td");
        if (c.profile) prof.appendChild(el("a", { href: c.profile, text: "trace" }));
        tr.appendChild(prof);
      }
      body.appendChild(tr);
      if (c.error) {
        body.appendChild(el("tr", { cls: "error-row" }, [el("td", { colspan: String(head.length), cls: "error", text: c.status + ": " + c.error })]));
      }
    });
    table.appendChild(body);
    parent.appendChild(el("div", { cls: "scroll" }, [table]));
  }

  // -- per-token charts ---------------------------------------------------------------------
  function perToken() {
    var lat = [], mem = [], memoryShown = false;
    each(function (d, c, name) {
      var t = c.tokens;
      if (!t) return;
      var k = mem.length, group = "g" + k, n = label(name);
      var band = { x: t.index.concat(t.index.slice().reverse()), y: t.high_ms.concat(t.low_ms.slice().reverse()),
        fill: "toself", fillcolor: color(k), opacity: 0.15, line: { width: 0, color: color(k) }, hoverinfo: "skip", showlegend: false,
        legendgroup: group, name: n + " band", type: "scatter", mode: "lines" };
      var line = { x: t.index, y: t.median_ms, customdata: t.memory_mib, name: n, legendgroup: group,
        type: "scatter", mode: "lines+markers", marker: { size: 4, color: color(k) }, line: { color: color(k) },
        hovertemplate: n + "<br>token %{x}<br>%{y:.3f} ms<br>memory %{customdata:.1f} MiB<extra></extra>" };
      lat.push(line, band);
      memoryShown = memoryShown || t.memory_mib.some(function (v) { return v !== null; });
      mem.push({ x: t.index, y: t.memory_mib, customdata: t.median_ms, name: n, legendgroup: group,
        type: "scatter", mode: "lines+markers", marker: { size: 4, color: color(k) }, line: { color: color(k) },
        hovertemplate: n + "<br>token %{x}<br>memory %{y:.1f} MiB<br>%{customdata:.3f} ms<extra></extra>" });
    });
    if (!lat.length) return;
    var s = section("Per token", "per-token");
    var box = chartBox(s, "chart-latency", "Latency per token",
      "Median over the trials; the band spans the fastest and slowest trial. Token 1 is the first token (prefill). Click a legend entry to hide a configuration, drag to zoom, double-click to reset.");
    Plotly.newPlot(box, lat, layout("token position", "latency (ms)"), PLOT_CONFIG);
    if (!memoryShown) { notPlotted(s, "charts"); return; } // no reading at all: no empty chart
    var mbox = chartBox(s, "chart-memory", "Memory per token", "Median reading over the trials at each token (the device's memory_kind: RSS on CPU, peak allocated on CUDA/XPU).");
    Plotly.newPlot(mbox, mem, layout("token position", "memory (MiB)", { yaxis: { title: { text: "memory (MiB)" }, rangemode: "normal" } }), PLOT_CONFIG);
    notPlotted(s, "charts");
  }

  // -- sweeps -------------------------------------------------------------------------------
  function sweepLines(xKey, groupKeys, statName) {
    var groups = {}, order = [];
    each(function (d, c, name, di) {
      if (c.status !== "ok" || c.endpoint) return;
      var s = c.settings, v = stat(c, statName, "median");
      if (v === null || v === undefined) return;
      var g = (MANY ? d.name + " · " : "") + groupKeys.map(function (k) { return k[1] + s[k[0]]; }).join(" ");
      if (!(g in groups)) { groups[g] = []; order.push(g); }
      // the 95% interval of the median over trials (none with fewer than 6 trials)
      var lo = stat(c, statName, "ci95_low"), hi = stat(c, statName, "ci95_high");
      groups[g].push([s[xKey], v, c.name, lo === null || lo === undefined ? null : v - lo, hi === null || hi === undefined ? null : hi - v, s.output_tokens]);
    });
    var xs = {};
    order.forEach(function (g) { groups[g].forEach(function (p) { xs[p[0]] = 1; }); });
    var ticks = Object.keys(xs).map(Number).sort(function (a, b) { return a - b; });
    if (ticks.length < 2) return null;
    return { ticks: ticks, traces: order.map(function (g) {
      // by x, then output length: every configuration of the series on one line
      var pts = groups[g].sort(function (a, b) { return a[0] - b[0] || a[5] - b[5]; });
      var bars = pts.some(function (p) { return p[4] !== null; });
      return { x: pts.map(function (p) { return p[0]; }), y: pts.map(function (p) { return p[1]; }),
        text: pts.map(function (p) { return label(p[2]); }), name: label(g), type: "scatter", mode: "lines+markers",
        error_y: bars ? { type: "data", symmetric: false, array: pts.map(function (p) { return p[4]; }), arrayminus: pts.map(function (p) { return p[3]; }), visible: true } : { visible: false },
        hovertemplate: "%{text}<br>%{x}: %{y:.3f}<extra></extra>" };
    }) };
  }
  function sweeps() {
    var charts = [
      // one line per model and batch size: the output length does not change the first token,
      // and grouping by it left one point per line with the usual in-out pairs (32-32, 256-64)
      ["chart-ttft-input", "First token against input length", "input tokens", "first token median (ms)", "input_tokens",
        [["model", ""], ["batch_size", "bs"]], "first_token_ms"],
      ["chart-ttft-batch", "First token against batch size", "batch size", "first token median (ms)", "batch_size",
        [["model", ""], ["input_tokens", "in "], ["output_tokens", "out "]], "first_token_ms"],
      ["chart-decode-batch", "Decode throughput against batch size", "batch size", "decode tokens/s (all sequences, median)", "batch_size",
        [["model", ""], ["input_tokens", "in "], ["output_tokens", "out "]], "decode_throughput_tokens_per_s"],
    ];
    var s = null;
    charts.forEach(function (ch) {
      var lines = sweepLines(ch[4], ch[5], ch[6]);
      if (!lines) return;
      if (!s) s = section("Sweep", "sweep");
      var xaxis = { title: { text: ch[2] }, type: "linear", tickvals: lines.ticks };
      Plotly.newPlot(chartBox(s, ch[0], ch[1]), lines.traces, layout(ch[2], ch[3], { xaxis: xaxis }), PLOT_CONFIG);
    });
    if (s) notPlotted(s, "sweep charts");
  }

  // -- quality beside speed (--quality): one point per configuration --------------------------
  function quality() {
    var charts = [
      ["chart-quality-perplexity", "Speed against perplexity (lower is better on both)", "perplexity"],
      ["chart-quality-agreement", "Speed against agreement with the reference (higher is better)", "agreement"],
    ];
    var s = null;
    charts.forEach(function (ch) {
      var traces = [];
      DATA.documents.forEach(function (d, di) {
        var xs = [], ys = [], names = [];
        d.configurations.forEach(function (c) {
          var q = c.quality, ms = stat(c, "rest_token_ms", "median");
          if (!q || q[ch[2]] === null || q[ch[2]] === undefined || ms === null || ms === undefined) return;
          xs.push(ms); ys.push(q[ch[2]]); names.push(label((MANY ? d.name + " · " : "") + c.name));
        });
        if (xs.length) traces.push({ x: xs, y: ys, text: names, name: label(d.name), type: "scatter",
          mode: "markers+text", textposition: "top center", marker: { size: 10, color: color(di) } });
      });
      if (!traces.length) return;
      if (!s) s = section("Quality beside speed", "quality");
      Plotly.newPlot(chartBox(s, ch[0], ch[1], "measured after the timed trials, on the same loaded model (--quality)"),
        traces, layout("ms/token (median of the trials)", ch[2]), PLOT_CONFIG);
    });
  }

  // -- served models ------------------------------------------------------------------------
  function endpoints() {
    var boxes = [], load = {}, loadOrder = [], turns = [], lags = [];
    each(function (d, c, name) {
      var e = c.endpoint;
      if (!e) return;
      var n = label(name);
      if (e.ttft_by_turn && e.ttft_by_turn.length) { // --multi-turn: TTFT median by turn
        turns.push({ type: "scatter", mode: "lines+markers", name: n, x: e.ttft_by_turn.map(function (r) { return label(r.turn); }),
          y: e.ttft_by_turn.map(function (r) { return r.median_ms; }), text: e.ttft_by_turn.map(function (r) { return r.n; }),
          hovertemplate: n + "<br>turn %{x}: median %{y:.3f} ms (%{text} requests)<extra></extra>" });
      }
      if (e.trace_lag && e.trace_lag.length) { // --trace: each request's lateness against its trace time
        lags.push({ type: "scatter", mode: "markers", name: n, x: e.trace_lag.map(function (p) { return p[0]; }),
          y: e.trace_lag.map(function (p) { return p[1]; }), hovertemplate: n + "<br>due at %{x:.3f} s: sent %{y:.3f} ms late<extra></extra>" });
      }
      var xs = [], ys = [];
      [["TTFT", e.ttft_ms], ["ITL", e.itl_ms], ["E2E", e.e2e_ms]].forEach(function (m) {
        m[1].forEach(function (v) { xs.push(m[0]); ys.push(v); });
      });
      boxes.push({ type: "box", x: xs, y: ys, name: n, boxpoints: "outliers", hovertemplate: n + "<br>%{x}: %{y:.3f} ms<extra></extra>" });
      if (e.output_tokens_per_s !== null) {
        var g = (MANY ? d.name + " · " : "") + c.settings.model + " " + c.settings.input_tokens + "-" + c.settings.output_tokens;
        if (!(g in load)) { load[g] = []; loadOrder.push(g); }
        load[g].push([e.output_tokens_per_s, e.ttft_stats_ms ? e.ttft_stats_ms.median : null, e.itl_stats_ms ? e.itl_stats_ms.median : null, c.name]);
      }
    });
    if (!boxes.length) return;
    var s = section("Served model", "endpoint");
    Plotly.newPlot(chartBox(s, "chart-endpoint-dist", "TTFT, ITL and E2E per request", "Time to first token, inter-token latency (every gap between chunks' tokens) and end-to-end latency of each measured request."),
      boxes, layout("", "ms", { boxmode: "group" }), PLOT_CONFIG);
    if (turns.length) Plotly.newPlot(chartBox(s, "chart-endpoint-turns", "TTFT by turn", "Multi-turn sessions: median time to first token of each turn (turn k carries the history of the turns before it)."),
      turns, layout("turn", "TTFT median (ms)", { xaxis: { title: { text: "turn" }, type: "category" } }), PLOT_CONFIG);
    if (lags.length) Plotly.newPlot(chartBox(s, "chart-endpoint-trace", "Trace replay: send lag", "Each replayed request: when the trace said to send it (after the speedup) and how late the client sent it."),
      lags, layout("trace time (s)", "send lag (ms)"), PLOT_CONFIG);
    serverTimelines(s);
    var points = loadOrder.reduce(function (n, g) { return n + load[g].length; }, 0);
    if (points < 2) return;
    var traces = [];
    loadOrder.forEach(function (g) {
      var pts = load[g].sort(function (a, b) { return a[0] - b[0]; });
      [["TTFT median", 1, "solid"], ["ITL median", 2, "dot"]].forEach(function (m) {
        traces.push({ x: pts.map(function (p) { return p[0]; }), y: pts.map(function (p) { return p[m[1]]; }),
          text: pts.map(function (p) { return label(p[3]); }), name: label(g + " " + m[0]), line: { dash: m[2] },
          type: "scatter", mode: "lines+markers", hovertemplate: "%{text}<br>%{x:.1f} tokens/s<br>%{y:.3f} ms<extra></extra>" });
      });
    });
    Plotly.newPlot(chartBox(s, "chart-endpoint-load", "Latency against throughput", "One point per load point (concurrency or request rate)."),
      traces, layout("output tokens/s", "latency (ms)"), PLOT_CONFIG);
  }

  // the server's own metrics (--server-metrics) beside each request's TTFT, one chart per point
  var SERVER = [["running", "requests running"], ["waiting", "requests waiting"], ["kv_cache_usage", "KV cache used (%)"]];
  function serverTimelines(s) {
    var k = 0;
    each(function (d, c, name) {
      var sv = c.endpoint && c.endpoint.server;
      if (!sv) return;
      var traces = [];
      SERVER.forEach(function (m, i) {
        if (!sv.series[m[0]]) return;
        traces.push({ x: sv.t_s, y: sv.series[m[0]], name: m[1], type: "scatter", mode: "lines+markers",
          line: { shape: "hv", color: color(i) }, hovertemplate: m[1] + " %{y:.3g} at %{x:.2f} s<extra></extra>" });
      });
      traces.push({ x: sv.ttft.t_s, y: sv.ttft.ms, name: "client TTFT (ms)", yaxis: "y2", type: "scatter", mode: "markers",
        marker: { color: color(3), size: 5 }, hovertemplate: "TTFT %{y:.2f} ms, first token at %{x:.2f} s<extra></extra>" });
      var sum = sv.summary || {}, parts = [];
      if (typeof sum.prefix_cache_hit_rate === "number") parts.push("prefix-cache hits " + fmt(100 * sum.prefix_cache_hit_rate, 1) + " %");
      if (typeof sum.preemptions === "number") parts.push("preemptions " + fmt(sum.preemptions, 0));
      var note = "Server metrics scraped every 0.5 s during the point (left axis) and the client's TTFT of each request at the time its first token came (right axis); seconds since the measured phase began." + (parts.length ? " " + parts.join(", ") + "." : "");
      Plotly.newPlot(chartBox(s, "chart-server-" + (k++), "Server and client: " + name, note), traces,
        layout("seconds since the point began", "requests / %", { yaxis2: { title: { text: "TTFT (ms)" }, overlaying: "y", side: "right", rangemode: "tozero" } }), PLOT_CONFIG);
    });
  }

  // -- load sweeps: an endpoint document's load points (html.load_payload, as the load figure) --
  var DASH = { p50: "solid", p90: "dash", p99: "dot" };
  function percentileTraces(L, metric, name, xKey, xUnit) {
    var traces = [];
    L.series.forEach(function (series, si) {
      var pts = L.points.filter(function (p) { return p.series === series; })
        .sort(function (a, b) { return a[xKey] - b[xKey]; });
      L.quantiles.forEach(function (q) {
        var have = pts.filter(function (p) { return typeof p[metric][q] === "number"; });
        if (!have.length) return;
        var n = label(series + " " + q);
        traces.push({ x: have.map(function (p) { return p[xKey]; }), y: have.map(function (p) { return p[metric][q]; }),
          text: have.map(function (p) { return label(p.id); }), name: n, legendgroup: "s" + si, type: "scatter", mode: "lines+markers",
          line: { color: color(si), dash: DASH[q] || "solid" }, marker: { size: 5, color: color(si) },
          hovertemplate: "%{text}<br>" + name + " " + q + " %{y:.3f} ms<br>%{x:.2f} " + xUnit + "<extra></extra>" });
      });
    });
    return traces;
  }
  function loadSection(doc, di) {
    var L = doc.load;
    if (!L) return;
    var s = section((MANY ? doc.name + ": " : "") + "Load", "load-" + di);
    var what = L.search.length ? "capacity search" : "load sweep";
    var SLO = L.slo_ms || {};
    var slos = ["ttft", "itl", "tpot"].filter(function (k) { return SLO[k] && SLO[k].length; }).map(function (k) {
      return k.toUpperCase() + " " + SLO[k].map(function (v) { return fmt(v, 1) + " ms"; }).join(", ");
    }); // the thresholds drawn: TTFT and ITL on their charts, TPOT on the Pareto chart
    s.appendChild(el("p", { cls: "note", text: what + ": " + L.points.length + " load points. One colour per series, one line style per percentile (p50 solid, p90 dashed, p99 dotted)." +
      (slos.length ? " Dash-dotted red lines: the SLO thresholds (" + slos.join("; ") + "), met by a request at or below them." : "") }));
    var id = "chart-load-" + di + "-", grid = el("div", { cls: "chart-grid" }), draws = [];
    s.appendChild(grid);
    // Every cell of the grid is made before any chart is drawn: plotly sizes a chart by its box
    // when drawn, and a grid holding one cell so far gives it the full width (the chart then
    // overflowed its column once the other cells arrived).
    function plot(suffix, title, note, traces, lay) { // one cell of the grid (as the load figure)
      var cellDiv = el("div");
      grid.appendChild(cellDiv);
      var target = chartBox(cellDiv, id + suffix, title, note);
      draws.push(function () { Plotly.newPlot(target, traces, lay, PLOT_CONFIG); });
    }
    [["ttft_ms", "TTFT", "ttft"], ["itl_ms", "ITL", "itl"]].forEach(function (m) {
      [["requests_per_s", "rate", "achieved requests/s", "requests/s"], ["output_tokens_per_s", "tokens", "output tokens/s", "tokens/s"]].forEach(function (x) {
        var traces = percentileTraces(L, m[0], m[1], x[0], x[3]), slo = SLO[m[2]] || [];
        plot(m[1].toLowerCase() + "-" + x[1], m[1] + " percentiles against " + x[2], null,
          traces, layout(x[2], m[1] + " (ms)", sloLines(slo, traces, m[1] + " (ms)")));
      });
    });
    var all = L.points.filter(function (p) { return p.latency_ms !== null; });
    if (all.length) {
      var front = L.front.map(function (i) { return L.points[i]; });
      var hover = "%{text}<br>%{x:.2f} tokens/s<br>%{y:.3f} ms/token<extra></extra>";
      var paretoExtra = sloLines(SLO.tpot || [], [{ y: all.map(function (p) { return p.latency_ms; }) }], "median TPOT (ms/token)");
      paretoExtra.margin = { l: 60, r: 20, t: 24, b: 50 };
      plot("pareto", "Latency against throughput (Pareto front)",
        "Median TPOT (else median ITL) of every load point; the Pareto-optimal points (no other point has at least the throughput at no more latency) connected.", [
        { x: all.map(function (p) { return p.output_tokens_per_s; }), y: all.map(function (p) { return p.latency_ms; }),
          text: all.map(function (p) { return label(p.series + " · " + p.id); }), name: "load point", type: "scatter", mode: "markers",
          marker: { size: 7, color: "#999999" }, hovertemplate: hover },
        { x: front.map(function (p) { return p.output_tokens_per_s; }), y: front.map(function (p) { return p.latency_ms; }),
          text: front.map(function (p) { return label(p.series + " · " + p.id); }), name: "Pareto-optimal", type: "scatter", mode: "lines+markers",
          marker: { size: 7, color: "#d62728" }, line: { color: "#d62728" }, hovertemplate: hover },
      ], layout("output tokens/s", "median TPOT (ms/token)", paretoExtra));
    }
    if (L.search.length) searchChart(L, plot);
    draws.forEach(function (draw) { draw(); });
  }
  function sloLines(values, traces, yTitle) { // SLO thresholds (ms): horizontal lines over the whole width
    if (!values.length) return {};
    var top = Math.max.apply(null, values);
    traces.forEach(function (t) { t.y.forEach(function (v) { if (v > top) top = v; }); });
    return {
      shapes: values.map(function (v) {
        return { type: "line", xref: "paper", x0: 0, x1: 1, yref: "y", y0: v, y1: v, line: { color: "#d62728", width: 1.5, dash: "dashdot" } };
      }),
      annotations: values.map(function (v) {
        return { xref: "paper", x: 1, xanchor: "right", yref: "y", y: v, yanchor: "bottom", showarrow: false,
          text: "SLO " + fmt(v, 1) + " ms", font: { size: 11, color: "#d62728" } };
      }),
      yaxis: { title: { text: yTitle }, zeroline: false, range: [0, top * 1.08] }, // the line stays in view
    };
  }
  function searchChart(L, plot) {
    var traces = [];
    [[true, "pass", "#2ca02c", "circle"], [false, "fail", "#d62728", "x"]].forEach(function (k) {
      var pts = L.search.filter(function (p) { return p.passed === k[0]; });
      if (!pts.length) return;
      traces.push({ x: pts.map(function (p) { return p.rate; }), y: pts.map(function (p) { return p.requests_per_s; }),
        text: pts.map(function (p) { return String(p.order); }), name: k[1], type: "scatter", mode: "markers+text", textposition: "top right",
        marker: { size: 10, color: k[2], symbol: k[3] },
        hovertemplate: "point %{text}: " + k[1] + "<br>asked %{x:.3g}/s<br>achieved %{y:.3f}/s<extra></extra>" });
    });
    var extra = { xaxis: { title: { text: "asked requests/s (log)" }, type: "log" }, margin: { l: 60, r: 20, t: 24, b: 50 } };
    if (L.max_rate !== null) { // a vertical line over the whole height: its own hidden 0-1 axis
      extra.yaxis2 = { overlaying: "y", range: [0, 1], visible: false, fixedrange: true };
      traces.push({ x: [L.max_rate, L.max_rate], y: [0, 1], yaxis: "y2", name: label("max rate " + L.max_rate + "/s"), type: "scatter",
        mode: "lines", line: { color: "#2ca02c", dash: "dash" }, hovertemplate: label("max rate " + L.max_rate + "/s") + "<extra></extra>" });
    }
    plot("search", "Capacity search: points in the order tried",
      "Asked against achieved request rate, numbered in the order tried; " + (L.max_rate !== null ? "the dashed line is the maximum rate found (" + L.max_rate + "/s)." : "no rate passed."),
      traces, layout("asked requests/s (log)", "achieved requests/s", extra));
  }
  function loads() { DATA.documents.forEach(loadSection); }

  // -- comparisons --------------------------------------------------------------------------
  function comparisons() {
    DATA.comparisons.forEach(function (cmp, i) {
      var oldName = DATA.documents[cmp.old].name, newName = DATA.documents[cmp.new].name;
      var s = section("Comparison: " + newName + " against " + oldName, "comparison-" + i);
      s.appendChild(el("p", { cls: cmp.failed ? "verdict fail" : "verdict pass",
        text: (cmp.failed ? "Regression or not comparable" : "No regression") + " at a threshold of " + (cmp.threshold * 100).toFixed(1) + "% (ratio NEW/OLD of the medians with its 95% interval over the trials; lower is better for every metric; slower = the whole interval above the threshold, unclear = it straddles)." + (cmp.ignore && cmp.ignore.length ? " Ignoring " + cmp.ignore.join(", ") + "." : "") }));
      var metrics = [];
      cmp.rows.forEach(function (r) { r.metrics.forEach(function (m) { if (metrics.indexOf(m.name) < 0) metrics.push(m.name); }); });
      var head = ["configuration", "trials OLD/NEW"];
      metrics.forEach(function (m) { head.push(m + " OLD", "NEW", "ratio", "interval"); });
      head.push("verdict");
      var table = el("table", { cls: "compare", "data-comparison": String(i) });
      table.appendChild(el("thead", {}, [el("tr", {}, head.map(function (h) { return el("th", { text: h }); }))]));
      var body = el("tbody");
      cmp.rows.forEach(function (r) {
        var tr = el("tr", { cls: r.fails ? "fails" : "" });
        tr.appendChild(el("td", { text: r.label + (r.differs && r.differs.length ? " (" + r.differs.join("; ") + ")" : "") }));
        tr.appendChild(el("td", { cls: "num", text: r.n ? r.n[0] + "/" + r.n[1] : "" }));
        metrics.forEach(function (name) {
          var m = r.metrics.filter(function (x) { return x.name === name; })[0];
          if (!m) { for (var k = 0; k < 4; k++) tr.appendChild(cell(null)); return; }
          tr.appendChild(cell(m.old, 3));
          tr.appendChild(cell(m.new, 3));
          var rc = cell(m.ratio, 3, "ratio." + name);
          if (m.regressed) rc.className += " regressed";
          else if (m.verdict === "faster") rc.className += " improved";
          tr.appendChild(rc);
          var text = m.low === null || m.low === undefined ? (m.verdict ? "none (too few trials)" : "") : "[" + fmt(m.low, 3) + ", " + fmt(m.high, 3) + "]" + (m.coverage !== null && m.coverage < 0.9495 ? " " + Math.round(m.coverage * 100) + "%" : "");
          var ic = el("td", { cls: "num interval", text: text });
          ic.setAttribute("data-key", "interval." + name);
          if (m.verdict) ic.setAttribute("data-verdict", m.verdict);
          tr.appendChild(ic);
        });
        var vc = el("td", { cls: "problem verdict-" + (r.verdict || "none").replace(/ /g, "-"), text: r.verdict_text || r.problem || "" });
        tr.appendChild(vc);
        body.appendChild(tr);
      });
      table.appendChild(body);
      s.appendChild(el("div", { cls: "scroll" }, [table]));
    });
  }

  // -- the page -----------------------------------------------------------------------------
  function main() {
    ROOT.textContent = "";
    header();
    comparisons();
    DATA.documents.forEach(function (doc, di) {
      var s = section((MANY ? doc.name + ": " : "") + "configurations", "document-" + di);
      if (doc.interrupted) s.appendChild(el("p", { cls: "verdict fail", text: "Interrupted: the run stopped before the end of its sweep." }));
      configurationTable(doc, s, di);
      environment(doc, s);
    });
    perToken();
    sweeps();
    quality();
    endpoints();
    loads();
    document.body.setAttribute("data-rendered", "true");
  }
  main();
})();
