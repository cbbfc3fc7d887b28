/* pgreco console: draws the charts of a page from the JSON next to each <figure class="chart">.
   Time and numeric series: uPlot (vendor/uPlot.iife.min.js). Interval plots (experiment lifts) and
   sequential boundaries: small SVG drawn here. Every text goes in through textContent: the data is
   client data (feature names, variant names) and is never parsed as HTML. */
(function () {
  "use strict";

  var PALETTE = ["#2f6fdf", "#e67e22", "#16a085", "#8e44ad", "#c0392b", "#7f8c8d", "#b7950b", "#1abc9c"];
  var SVG = "http://www.w3.org/2000/svg";
  var charts = [];

  function fmt(v) {
    if (v == null || isNaN(v)) return "–";
    var a = Math.abs(v);
    if (a >= 1000) return Math.round(v).toLocaleString("en-US");
    if (a >= 10 || Number.isInteger(v)) return String(Math.round(v * 10) / 10);
    if (a >= 0.01) return String(parseFloat(v.toFixed(3)));  // 7.5, not 7.500
    return v.toPrecision(2);
  }

  // time-axis labels, 24-hour like every other time in the console (uPlot's default is 12-hour):
  // a date per day tick; below a day the hour, with the date under the first tick and midnight
  var dayLabel = uPlot.fmtDate("{MM}-{DD}"), hourLabel = uPlot.fmtDate("{HH}:{mm}");
  function timeTicks(u, splits, axisIdx, space, incr) {
    return splits.map(function (v, i) {
      if (v == null) return "";
      var d = uPlot.tzDate(new Date(v * 1000), "Etc/UTC");
      if (incr >= 86400) return dayLabel(d);
      var h = hourLabel(d);
      return i === 0 || h === "00:00" ? h + "\n" + dayLabel(d) : h;
    });
  }
  window.recoConsole = { fmt: fmt, timeTicks: timeTicks };  // for the browser tests

  function pct(v) {
    return (v > 0 ? "+" : "") + (v * 100).toFixed(Math.abs(v) < 0.1 ? 1 : 0) + "%";
  }

  function el(name, attrs, parent, text) {
    var e = document.createElementNS(SVG, name);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text != null) e.textContent = String(text);
    if (parent) parent.appendChild(e);
    return e;
  }

  function widthOf(box) {
    return Math.max(320, Math.floor(box.getBoundingClientRect().width) || 640);
  }

  // --- uPlot: time (x = epoch seconds) and numeric x ------------------------------------------

  function xyChart(box, spec) {
    // counts start at 0; scores (NDCG, HitRate) get a range around their values
    var zero = !spec.points;
    var hasBars = spec.series.some(function (s) { return s.kind === "bars"; });
    var day = 86400;
    var series = [{ label: spec.type === "time" ? "day" : (spec.xlabel || "x"),
                    value: spec.type === "time"
                      ? function (u, v) { return v == null ? "–" : uPlot.fmtDate("{YYYY}-{MM}-{DD}" + (hasBars ? "" : " {HH}:{mm}"))(new Date(v * 1000)); }
                      : function (u, v) { return v == null ? "–" : String(v); } }];
    spec.series.forEach(function (s, i) {
      var color = PALETTE[i % PALETTE.length];
      var o = { label: s.label, stroke: color, width: 2, scale: s.scale || "y", spanGaps: true,
                value: function (u, v) { return fmt(v); } };
      if (s.kind === "bars") {
        o.paths = uPlot.paths.bars({ size: [0.75, 24] });
        o.fill = color + "aa";
        o.width = 0;
        o.points = { show: false };
      } else if (s.kind === "dash") {
        // a reference line (chance, perfect calibration, the base rate): thin, grey, dashed
        o.stroke = "#9aa3ad";
        o.width = 1.5;
        o.dash = [6, 4];
        o.points = { show: false };
      } else if (s.kind === "points") {
        o.paths = function () { return null; };
        o.points = { show: true, size: 11, width: 2, stroke: "#c0392b", fill: "#ffffff" };
        o.stroke = "#c0392b";
      } else if (spec.points) {
        o.points = { show: true, size: 6, fill: color };
      }
      series.push(o);
    });
    var xaxis = { grid: { stroke: "#eef0f3" }, ticks: { stroke: "#d5d9df" } };
    if (spec.xtitle) xaxis.label = spec.xtitle;
    if (spec.type === "time") {
      xaxis.values = timeTicks;
      xaxis.size = 52;
    }
    if (spec.xnames) {
      // numeric x with a name at some points (the tune job's stages): "12 tau"
      xaxis.values = function (u, vals) {
        return vals.map(function (v) { var n = spec.xnames[v - 1]; return Number.isInteger(v) ? (n ? v + "\n" + n : String(v)) : ""; });
      };
      xaxis.incrs = [1, 2, 5, 10, 20, 50, 100];
      xaxis.size = 52;
    }
    var axes = [xaxis,
                { scale: "y", label: spec.ylabel || null, grid: { stroke: "#eef0f3" }, ticks: { stroke: "#d5d9df" },
                  size: 56, values: function (u, vals) { return vals.map(fmt); } }];
    var scales = {
      x: { time: spec.type === "time",
           range: spec.xrange ? function () { return spec.xrange; } : function (u, min, max) {
             // one point: uPlot hands a range of its own (a day in ms: 1,000 days here); centre it instead
             if (spec.x.length === 1) { min = max = spec.x[0]; }
             var pad = spec.type === "time" ? (hasBars ? day / 2 : (min === max ? day : 0)) : (min === max ? 1 : 0.5);
             return [min - pad, max + pad];
           } },
      y: { range: spec.yrange ? function () { return spec.yrange; } : function (u, min, max) {
             if (zero) return [0, max > 0 ? max * 1.08 : 1];
             var span = (max - min) || Math.abs(max) || 1;
             return [min - span * 0.1, max + span * 0.1];
           } }
    };
    if (spec.series.some(function (s) { return s.scale === "y2"; })) {
      var label = spec.series.filter(function (s) { return s.scale === "y2"; })[0].label;
      axes.push({ scale: "y2", side: 1, label: label, grid: { show: false }, size: 56,
                  values: function (u, vals) { return vals.map(fmt); } });
      scales.y2 = { range: function (u, min, max) { return [0, max > 0 ? max * 1.08 : 1]; } };
    }
    var last = spec.x.length - 1;
    var opts = { width: widthOf(box), height: spec.height || 260, series: series, axes: axes, scales: scales,
                 legend: { live: true }, cursor: { drag: { x: false, y: false } },
                 // the legend shows the latest values until the cursor points elsewhere
                 hooks: { ready: [function (u) { setTimeout(function () { u.setLegend({ idx: last }); }, 0); }],
                          setCursor: [function (u) { if (u.cursor.idx == null) u.setLegend({ idx: last }); }] } };
    if (spec.type === "time") {
      opts.tzDate = function (ts) { return uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"); };
    }
    var data = [spec.x].concat(spec.series.map(function (s) { return s.values; }));
    var u = new uPlot(opts, data, box);
    charts.push({ resize: function () { u.setSize({ width: widthOf(box), height: opts.height }); } });
  }

  // --- interval plot: one row per metric × variant, the CI as a line, the estimate as a dot -----

  function intervalChart(box, spec, redraw) {
    var rows = spec.rows, rel = spec.unit === "%";
    var W = widthOf(box), rowH = 30, top = 10, labelW = Math.min(260, Math.max(140, W * 0.28)), right = 70;
    var H = top + rows.length * rowH + 34;
    var lo = 0, hi = 0;
    rows.forEach(function (r) { lo = Math.min(lo, r.low); hi = Math.max(hi, r.high); });
    var span = (hi - lo) || 1;
    lo -= span * 0.08; hi += span * 0.08;
    var x = function (v) { return labelW + (v - lo) / (hi - lo) * (W - labelW - right); };
    var svg = el("svg", { width: W, height: H, viewBox: "0 0 " + W + " " + H, class: "interval", role: "img" }, box);
    var ticks = 5;
    for (var t = 0; t <= ticks; t++) {
      var v = lo + (hi - lo) * t / ticks, xt = x(v);
      el("line", { x1: xt, x2: xt, y1: top, y2: H - 24, stroke: "#eef0f3" }, svg);
      el("text", { x: xt, y: H - 8, "text-anchor": "middle", class: "tick" }, svg, rel ? pct(v) : fmt(v));
    }
    el("line", { x1: x(0), x2: x(0), y1: top - 4, y2: H - 24, stroke: "#5d6673", "stroke-dasharray": "4 3" }, svg);
    rows.forEach(function (r, i) {
      var y = top + i * rowH + rowH / 2;
      var sig = r.low > 0 || r.high < 0;
      var color = !sig ? "#8a94a3" : (r.low > 0 ? "#1e8449" : "#c0392b");
      var g = el("g", { class: "row" + (sig ? " sig" : "") }, svg);
      el("title", {}, g, r.label + ": " + (rel ? pct(r.value) : fmt(r.value)) + " [" + (rel ? pct(r.low) : fmt(r.low)) +
         ", " + (rel ? pct(r.high) : fmt(r.high)) + "]" + (r.p != null ? ", p " + r.p.toPrecision(2) : ""));
      el("text", { x: labelW - 10, y: y + 4, "text-anchor": "end", class: "label" + (r.section !== "metric" ? " " + r.section : "") }, g, r.label);
      el("line", { x1: x(r.low), x2: x(r.high), y1: y, y2: y, stroke: color, "stroke-width": 3, "stroke-linecap": "round" }, g);
      el("line", { x1: x(r.low), x2: x(r.low), y1: y - 6, y2: y + 6, stroke: color, "stroke-width": 2 }, g);
      el("line", { x1: x(r.high), x2: x(r.high), y1: y - 6, y2: y + 6, stroke: color, "stroke-width": 2 }, g);
      if (r.value != null) el("circle", { cx: x(r.value), cy: y, r: 5, fill: color, stroke: "#fff", "stroke-width": 1.5 }, g);
      el("text", { x: W - right + 8, y: y + 4, class: "value" }, g, r.value != null ? (rel ? pct(r.value) : fmt(r.value)) : "");
    });
    if (!redraw) charts.push({ resize: function () { box.textContent = ""; intervalChart(box, spec, true); } });
  }

  // --- sequential monitoring: ±boundary per look against information, the observed z now ---------

  function sequentialChart(box, spec, redraw) {
    var W = widthOf(box), H = 290, left = 52, right = 140, top = 14, bottom = 40;
    var zmax = 3;
    spec.looks.forEach(function (b) { zmax = Math.max(zmax, Math.min(b.z, 6)); });
    spec.observed.forEach(function (o) { zmax = Math.max(zmax, Math.abs(o.z) + 0.5); });
    zmax = Math.ceil(zmax);
    var x = function (f) { return left + f * (W - left - right); };
    var y = function (z) { return top + (zmax - Math.max(-zmax, Math.min(zmax, z))) / (2 * zmax) * (H - top - bottom); };
    var svg = el("svg", { width: W, height: H, viewBox: "0 0 " + W + " " + H, class: "sequential", role: "img" }, box);
    var step = zmax <= 6 ? 1 : zmax <= 14 ? 2 : 5;
    zmax = Math.ceil(zmax / step) * step;
    for (var z = -zmax; z <= zmax; z += step) {
      el("line", { x1: left, x2: W - right, y1: y(z), y2: y(z), stroke: z === 0 ? "#5d6673" : "#eef0f3" }, svg);
      el("text", { x: left - 8, y: y(z) + 4, "text-anchor": "end", class: "tick" }, svg, z);
    }
    el("text", { x: 12, y: top + (H - top - bottom) / 2, class: "tick", transform: "rotate(-90 12 " + (top + (H - top - bottom) / 2) + ")",
                 "text-anchor": "middle" }, svg, "z");
    [0, 0.25, 0.5, 0.75, 1].forEach(function (f) {
      el("text", { x: x(f), y: H - 16, "text-anchor": "middle", class: "tick" }, svg, Math.round(f * 100) + "%");
    });
    el("text", { x: x(0.5), y: H - 2, "text-anchor": "middle", class: "tick" }, svg, "users so far, share of the planned users");
    [1, -1].forEach(function (sign) {
      var pts = spec.looks.map(function (b) { return x(b.x) + "," + y(sign * b.z); });
      el("polyline", { points: pts.join(" "), fill: "none", stroke: "#c0392b",
                       "stroke-width": 2, "stroke-dasharray": "6 3" }, svg);
      spec.looks.forEach(function (b) {
        var c = el("circle", { cx: x(b.x), cy: y(sign * b.z), r: 4, fill: "#c0392b" }, svg);
        el("title", {}, c, "look " + b.look + ": stop when |z| ≥ " + b.z.toFixed(3));
      });
    });
    el("text", { x: W - right + 6, y: y(spec.looks.length ? spec.looks[spec.looks.length - 1].z : 2) + 4, class: "bound" }, svg, "stop: treatment better");
    el("text", { x: W - right + 6, y: y(spec.looks.length ? -spec.looks[spec.looks.length - 1].z : -2) + 4, class: "bound" }, svg, "stop: treatment worse");
    spec.observed.forEach(function (o, i) {
      var color = PALETTE[(i + 1) % PALETTE.length];
      var g = el("g", { class: "observed" }, svg);
      el("line", { x1: x(o.x), x2: x(o.x), y1: y(0), y2: y(o.z), stroke: color, "stroke-width": 2 }, g);
      el("circle", { cx: x(o.x), cy: y(o.z), r: 6, fill: color, stroke: "#fff", "stroke-width": 1.5 }, g);
      el("text", { x: x(o.x) + 9, y: y(o.z) + (o.z >= 0 ? -6 : 14), class: "label" }, g, o.label + " z = " + o.z.toFixed(2));
      el("title", {}, g, o.label + ": z = " + o.z.toFixed(3) + " at " + Math.round(o.x * 100) + "% of the planned users");
    });
    if (!redraw) charts.push({ resize: function () { box.textContent = ""; sequentialChart(box, spec, true); } });
  }

  function draw(fig) {
    var spec = JSON.parse(fig.querySelector("script.chart-data").textContent);
    var box = fig.querySelector(".plot");
    box.textContent = "";
    if (spec.type === "interval") intervalChart(box, spec);
    else if (spec.type === "sequential") sequentialChart(box, spec);
    else xyChart(box, spec);
  }

  function start() {
    document.querySelectorAll("figure.chart").forEach(function (fig) {
      try {
        draw(fig);
        fig.setAttribute("data-rendered", "true");
      } catch (err) {
        fig.setAttribute("data-rendered", "error");
        throw err;
      }
    });
    // a GET form that follows its slider (the churn page's budget): submitted when the slider is let go,
    // the number box beside it
    // showing the value while it moves
    document.querySelectorAll("form[data-autosubmit]").forEach(function (form) {
      form.querySelectorAll("input[type=range]").forEach(function (range) {
        // the range has no name: the number box beside it (its twin) is what the form sends
        var twin = form.querySelector("input[type=number]");
        range.addEventListener("input", function () { if (twin) twin.value = range.value; });
        range.addEventListener("change", function () { form.requestSubmit(); });
      });
    });
    var pending = null;
    window.addEventListener("resize", function () {
      clearTimeout(pending);
      pending = setTimeout(function () { charts.slice().forEach(function (c) { c.resize(); }); }, 150);
    });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
