/* convnextpose-eval report pages: draws a page from its JSON block (docs/report.md).
   Plain DOM, SVG and canvas: no library, nothing fetched. */
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("report-data").textContent);
  var root = document.getElementById("report");
  var SVGNS = "http://www.w3.org/2000/svg";
  var SERIES = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#17becf"];

  // ------------------------------------------------------------------ small helpers

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    setAttrs(node, attrs);
    append(node, children);
    return node;
  }
  function sv(tag, attrs, children) {
    var node = document.createElementNS(SVGNS, tag);
    setAttrs(node, attrs);
    append(node, children);
    return node;
  }
  function setAttrs(node, attrs) {
    Object.keys(attrs || {}).forEach(function (key) {
      var value = attrs[key];
      if (value === null || value === undefined || value === false) return;
      if (key === "text") node.textContent = value;
      else if (key.slice(0, 2) === "on") node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value);
    });
  }
  function append(node, children) {
    (Array.isArray(children) ? children : children === undefined ? [] : [children]).forEach(function (child) {
      if (child === null || child === undefined || child === false) return;
      node.appendChild(typeof child === "string" || typeof child === "number" ? document.createTextNode(String(child)) : child);
    });
  }
  function isNum(v) { return typeof v === "number" && isFinite(v); }
  function fmt(v, digits) { return isNum(v) ? v.toFixed(digits === undefined ? 2 : digits) : "-"; }
  function signed(v, digits) { return isNum(v) ? (v >= 0 ? "+" : "") + v.toFixed(digits === undefined ? 2 : digits) : "-"; }
  function interval(ci) { return ci && isNum(ci[0]) ? "[" + signed(ci[0]) + ", " + signed(ci[1]) + "]" : "-"; }
  function withInterval(d) { return d && isNum(d.value) ? signed(d.value, 3) + " " + interval(d.ci95) : "-"; }
  function mb(bytes) { return isNum(bytes) ? (bytes / 1e6).toFixed(2) : "-"; }
  function bandClass(band) { return band ? "band-" + String(band).toLowerCase().replace(/[^a-z]+/g, "-") : ""; }
  function section(title, id, children) {
    return el("section", { id: id }, [el("h2", { text: title })].concat(children));
  }
  function note(text) { return el("p", { class: "note", text: text }); }
  function niceStep(span, ticks) {
    var raw = span / Math.max(1, ticks), power = Math.pow(10, Math.floor(Math.log10(raw || 1)));
    var steps = [1, 2, 2.5, 5, 10];
    for (var i = 0; i < steps.length; i++) if (raw <= steps[i] * power) return steps[i] * power;
    return 10 * power;
  }
  function ticksFor(lo, hi, count) {
    var step = niceStep(hi - lo, count || 5), out = [];
    for (var t = Math.ceil(lo / step) * step; t <= hi + 1e-9; t += step) out.push(Math.abs(t) < 1e-9 ? 0 : t);
    return out;
  }
  function legend(items) {
    return el("div", { class: "legend" }, items.map(function (item) {
      return el("span", { style: "--swatch: " + item.colour, text: item.label });
    }));
  }

  // ------------------------------------------------------------------ sortable tables

  /* columns: [{key, label, format(value,row), text: left-aligned, sort(row) -> value}]; options: {id, caption, onSelect(row, tr), rowId(row)} */
  function sortableTable(columns, rows, options) {
    options = options || {};
    var tbody = el("tbody");
    var heads = columns.map(function (column, index) {
      return el("th", { class: column.text ? "text" : null, scope: "col", title: "sort by " + column.label, text: column.label,
                        onclick: function () { sortBy(index); } });
    });
    var table = el("table", { class: "sortable", id: options.id }, [
      options.caption ? el("caption", { class: "note", text: options.caption }) : null,
      el("thead", {}, el("tr", {}, heads)), tbody]);
    var current = rows.slice();
    function valueOf(column, row) { return column.sort ? column.sort(row) : row[column.key]; }
    function draw() {
      tbody.textContent = "";
      current.forEach(function (row) {
        var tr = el("tr", { class: options.onSelect ? "selectable" : null, "data-row": options.rowId ? options.rowId(row) : null },
          columns.map(function (column) {
            var value = row[column.key];
            var shown = column.format ? column.format(value, row) : (value === null || value === undefined ? "-" : value);
            var cell = el("td", { class: column.text ? "text" : null });
            append(cell, shown instanceof Node ? shown : String(shown));
            return cell;
          }));
        if (options.onSelect) {
          tr.tabIndex = 0;
          tr.addEventListener("click", function () { options.onSelect(row, tr); });
          tr.addEventListener("keydown", function (event) { if (event.key === "Enter" || event.key === " ") { event.preventDefault(); options.onSelect(row, tr); } });
        }
        tbody.appendChild(tr);
      });
    }
    function sortBy(index) {
      var column = columns[index], head = heads[index];
      var descending = head.getAttribute("aria-sort") === "ascending";
      heads.forEach(function (h) { h.removeAttribute("aria-sort"); });
      head.setAttribute("aria-sort", descending ? "descending" : "ascending");
      current.sort(function (a, b) {
        var x = valueOf(column, a), y = valueOf(column, b);
        var missingX = x === null || x === undefined, missingY = y === null || y === undefined;
        if (missingX || missingY) return missingX === missingY ? 0 : missingX ? 1 : -1; // missing values last either way
        var order = typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y));
        return descending ? -order : order;
      });
      draw();
    }
    draw();
    return table;
  }

  // ------------------------------------------------------------------ charts (SVG)

  /* Horizontal bars for categories: items [{label, value, lo, hi}], options {unit, references:[{value, label, colour}], colour, id, signed} */
  function barChart(items, options) {
    options = options || {};
    var rowH = 19, left = 118, right = 70, top = 8, axisH = 30, width = 560;
    var height = top + items.length * rowH + axisH;
    var values = [0];
    items.forEach(function (item) { [item.value, item.lo, item.hi].forEach(function (v) { if (isNum(v)) values.push(v); }); });
    (options.references || []).forEach(function (ref) { if (isNum(ref.value)) values.push(ref.value); });
    var lo = Math.min.apply(null, values), hi = Math.max.apply(null, values);
    if (hi === lo) hi = lo + 1;
    var pad = (hi - lo) * 0.04; lo = lo < 0 ? lo - pad : lo; hi += pad;
    var x = function (v) { return left + (v - lo) / (hi - lo) * (width - left - right); };
    var svg = sv("svg", { class: "chart bars", id: options.id, viewBox: "0 0 " + width + " " + height, width: width, height: height, role: "img",
                          "aria-label": options.label || "bar chart" });
    ticksFor(lo, hi, 6).forEach(function (t) {
      svg.appendChild(sv("line", { class: "gridline", x1: x(t), x2: x(t), y1: top, y2: top + items.length * rowH }));
      svg.appendChild(sv("text", { x: x(t), y: height - axisH + 14, "text-anchor": "middle", text: String(+t.toFixed(6)) }));
    });
    svg.appendChild(sv("text", { x: (left + width - right) / 2, y: height - 3, "text-anchor": "middle", fill: "#5f6368", text: options.unit || "" }));
    items.forEach(function (item, i) {
      var y = top + i * rowH;
      svg.appendChild(sv("text", { x: left - 6, y: y + rowH * 0.68, "text-anchor": "end", text: item.label }));
      if (!isNum(item.value)) {
        svg.appendChild(sv("text", { x: x(0) + 4, y: y + rowH * 0.68, fill: "#9aa0a6", text: "no images" }));
        return;
      }
      var x0 = x(Math.min(0, item.value)), x1 = x(Math.max(0, item.value));
      var colour = item.colour || (options.signed ? (item.value > 0 ? "#d62728" : "#2ca02c") : options.colour || "#1f77b4");
      svg.appendChild(sv("rect", { class: "bar", x: x0, y: y + 3, width: Math.max(1, x1 - x0), height: rowH - 6, fill: colour, "fill-opacity": isNum(item.lo) ? 0.55 : 0.85 },
        sv("title", { text: item.label + ": " + fmt(item.value) + (isNum(item.lo) ? " " + interval([item.lo, item.hi]) : "") })));
      if (isNum(item.lo) && isNum(item.hi)) {
        var cy = y + rowH / 2;
        svg.appendChild(sv("line", { x1: x(item.lo), x2: x(item.hi), y1: cy, y2: cy, stroke: "#222", "stroke-width": 1.4 }));
        [item.lo, item.hi].forEach(function (v) { svg.appendChild(sv("line", { x1: x(v), x2: x(v), y1: cy - 4, y2: cy + 4, stroke: "#222", "stroke-width": 1.4 })); });
      }
      svg.appendChild(sv("text", { x: Math.max(x1, isNum(item.hi) ? x(item.hi) : x1) + 4, y: y + rowH * 0.68, fill: "#5f6368",
                                   text: options.signed ? signed(item.value) : fmt(item.value) }));
    });
    svg.appendChild(sv("line", { x1: x(0), x2: x(0), y1: top, y2: top + items.length * rowH, stroke: "#5f6368" }));
    (options.references || []).forEach(function (ref) {
      if (!isNum(ref.value)) return;
      svg.appendChild(sv("line", { x1: x(ref.value), x2: x(ref.value), y1: top - 2, y2: top + items.length * rowH, stroke: ref.colour || "#444",
                                   "stroke-dasharray": "4 3", "stroke-width": 1.3 }, sv("title", { text: ref.label + ": " + fmt(ref.value) })));
    });
    return svg;
  }

  /* Grouped horizontal bars: categories [names], series [{name, colour, values: {category: value}}] */
  function groupedBarChart(categories, series, options) {
    options = options || {};
    var barH = Math.max(4, Math.min(9, 28 / Math.max(1, series.length))), groupH = barH * series.length + 8;
    var left = 118, right = 40, top = 6, axisH = 30, width = 560, height = top + categories.length * groupH + axisH;
    var hi = 0;
    series.forEach(function (s) { categories.forEach(function (c) { if (isNum(s.values[c])) hi = Math.max(hi, s.values[c]); }); });
    hi = hi > 0 ? hi * 1.05 : 1;
    var x = function (v) { return left + v / hi * (width - left - right); };
    var svg = sv("svg", { class: "chart grouped", id: options.id, viewBox: "0 0 " + width + " " + height, width: width, height: height, role: "img",
                          "aria-label": options.label || "grouped bar chart" });
    ticksFor(0, hi, 6).forEach(function (t) {
      svg.appendChild(sv("line", { class: "gridline", x1: x(t), x2: x(t), y1: top, y2: height - axisH }));
      svg.appendChild(sv("text", { x: x(t), y: height - axisH + 14, "text-anchor": "middle", text: String(+t.toFixed(6)) }));
    });
    svg.appendChild(sv("text", { x: (left + width - right) / 2, y: height - 3, "text-anchor": "middle", fill: "#5f6368", text: options.unit || "" }));
    categories.forEach(function (category, i) {
      var y = top + i * groupH;
      svg.appendChild(sv("text", { x: left - 6, y: y + groupH / 2 + 3, "text-anchor": "end", text: category }));
      series.forEach(function (s, j) {
        var v = s.values[category];
        if (!isNum(v)) return;
        svg.appendChild(sv("rect", { class: "bar", x: left, y: y + 4 + j * barH, width: Math.max(1, x(v) - left), height: barH - 1, fill: s.colour },
          sv("title", { text: category + ", " + s.name + ": " + fmt(v) })));
      });
    });
    svg.appendChild(sv("line", { x1: left, x2: left, y1: top, y2: height - axisH, stroke: "#5f6368" }));
    return el("div", {}, [legend(series.map(function (s) { return { label: s.name, colour: s.colour }; })), svg]);
  }

  /* Histogram of values with mean and median marked. */
  function histogram(values, options) {
    options = options || {};
    var clean = values.filter(isNum).sort(function (a, b) { return a - b; });
    var width = 560, height = 250, left = 48, right = 16, top = 12, bottom = 40;
    var svg = sv("svg", { class: "chart histogram", id: options.id, viewBox: "0 0 " + width + " " + height, width: width, height: height, role: "img",
                          "aria-label": "histogram of per-image errors" });
    if (!clean.length) { svg.appendChild(sv("text", { x: 20, y: 40, text: "no images" })); return svg; }
    var lo = clean[0], hi = clean[clean.length - 1];
    var count = Math.max(5, Math.min(40, Math.ceil(Math.sqrt(clean.length)) + 3));
    var step = niceStep(Math.max(hi - lo, 1e-6), count);
    var start = Math.floor(lo / step) * step, bins = Math.max(1, Math.ceil((hi - start) / step + 1e-9));
    if (start + bins * step <= hi) bins += 1;
    var counts = new Array(bins).fill(0);
    clean.forEach(function (v) { counts[Math.min(bins - 1, Math.floor((v - start) / step))] += 1; });
    var most = Math.max.apply(null, counts) * 1.15; // headroom for the mean and median names
    var x = function (v) { return left + (v - start) / (bins * step) * (width - left - right); };
    var y = function (c) { return height - bottom - c / most * (height - top - bottom); };
    ticksFor(0, most, 4).forEach(function (t) {
      svg.appendChild(sv("line", { class: "gridline", x1: left, x2: width - right, y1: y(t), y2: y(t) }));
      svg.appendChild(sv("text", { x: left - 5, y: y(t) + 4, "text-anchor": "end", text: String(t) }));
    });
    counts.forEach(function (c, i) {
      svg.appendChild(sv("rect", { class: "bar", x: x(start + i * step) + 0.5, y: y(c), width: Math.max(1, x(start + (i + 1) * step) - x(start + i * step) - 1),
                                   height: height - bottom - y(c), fill: "#1f77b4", "fill-opacity": 0.8 },
        sv("title", { text: fmt(start + i * step, 1) + " to " + fmt(start + (i + 1) * step, 1) + " " + (options.unit || "") + ": " + c + " images" })));
    });
    ticksFor(start, start + bins * step, 7).forEach(function (t) {
      svg.appendChild(sv("text", { x: x(t), y: height - bottom + 14, "text-anchor": "middle", text: String(+t.toFixed(6)) }));
    });
    var mean = clean.reduce(function (a, b) { return a + b; }, 0) / clean.length;
    var mid = clean.length % 2 ? clean[(clean.length - 1) / 2] : (clean[clean.length / 2 - 1] + clean[clean.length / 2]) / 2;
    [{ v: mean, label: "mean " + fmt(mean), colour: "#d62728" }, { v: mid, label: "median " + fmt(mid), colour: "#222" }].forEach(function (m, k) {
      svg.appendChild(sv("line", { x1: x(m.v), x2: x(m.v), y1: top, y2: height - bottom, stroke: m.colour, "stroke-dasharray": "5 3", "stroke-width": 1.5 }));
      // Named in the top right corner, clear of the bars.
      svg.appendChild(sv("text", { x: width - right - 4, y: top + 10 + 13 * k, "text-anchor": "end", fill: m.colour, text: "- - " + m.label }));
    });
    svg.appendChild(sv("line", { x1: left, x2: width - right, y1: height - bottom, y2: height - bottom, stroke: "#5f6368" }));
    svg.appendChild(sv("text", { x: (left + width - right) / 2, y: height - 5, "text-anchor": "middle", fill: "#5f6368",
                                 text: (options.unit || "") + " (" + clean.length + " images; bin " + +step.toFixed(6) + ")" }));
    return svg;
  }

  /* Scatter of labelled points with optional whiskers: [{label, x, y, xlo, xhi, ylo, yhi, colour}] */
  function scatter(points, options) {
    var width = 620, height = 360, left = 64, right = 120, top = 14, bottom = 46;
    var svg = sv("svg", { class: "chart scatter", id: options.id, viewBox: "0 0 " + width + " " + height, width: width, height: height, role: "img",
                          "aria-label": options.label || "scatter plot" });
    var xs = [], ys = [];
    points.forEach(function (p) { [p.x, p.xlo, p.xhi].forEach(function (v) { if (isNum(v)) xs.push(v); }); [p.y, p.ylo, p.yhi].forEach(function (v) { if (isNum(v)) ys.push(v); }); });
    if (!xs.length) { svg.appendChild(sv("text", { x: 20, y: 40, text: "no format has both figures" })); return svg; }
    var logX = Math.min.apply(null, xs) > 0 && Math.max.apply(null, xs) / Math.min.apply(null, xs) > 20;
    var tx = function (v) { return logX ? Math.log10(v) : v; };
    var xlo = tx(Math.min.apply(null, xs)), xhi = tx(Math.max.apply(null, xs)), ylo = Math.min.apply(null, ys), yhi = Math.max.apply(null, ys);
    var xpad = (xhi - xlo || 1) * 0.08, ypad = (yhi - ylo || 1) * 0.12;
    xlo -= xpad; xhi += xpad; ylo -= ypad; yhi += ypad;
    if (!logX) xlo = Math.min(xlo, 0) < 0 && Math.min.apply(null, xs) >= 0 ? 0 : xlo;
    var X = function (v) { return left + (tx(v) - xlo) / (xhi - xlo) * (width - left - right); };
    var Y = function (v) { return height - bottom - (v - ylo) / (yhi - ylo) * (height - top - bottom); };
    var xticks = logX ? [0.01, 0.1, 1, 10, 100, 1000, 10000].filter(function (t) { return Math.log10(t) >= xlo && Math.log10(t) <= xhi; }) : ticksFor(xlo, xhi, 6);
    xticks.forEach(function (t) {
      svg.appendChild(sv("line", { class: "gridline", x1: X(t), x2: X(t), y1: top, y2: height - bottom }));
      svg.appendChild(sv("text", { x: X(t), y: height - bottom + 14, "text-anchor": "middle", text: String(+t.toFixed(6)) }));
    });
    ticksFor(ylo, yhi, 5).forEach(function (t) {
      svg.appendChild(sv("line", { class: "gridline", x1: left, x2: width - right, y1: Y(t), y2: Y(t) }));
      svg.appendChild(sv("text", { x: left - 5, y: Y(t) + 4, "text-anchor": "end", text: String(+t.toFixed(6)) }));
    });
    svg.appendChild(sv("text", { x: (left + width - right) / 2, y: height - 6, "text-anchor": "middle", fill: "#5f6368", text: options.xLabel + (logX ? " (log scale)" : "") }));
    svg.appendChild(sv("text", { x: 14, y: (top + height - bottom) / 2, "text-anchor": "middle", fill: "#5f6368", transform: "rotate(-90 14 " + (top + height - bottom) / 2 + ")", text: options.yLabel }));
    points.forEach(function (p, i) {
      if (!isNum(p.x) || !isNum(p.y)) return;
      var colour = p.colour || SERIES[i % SERIES.length];
      if (isNum(p.xlo) && isNum(p.xhi)) svg.appendChild(sv("line", { x1: X(p.xlo), x2: X(p.xhi), y1: Y(p.y), y2: Y(p.y), stroke: colour, "stroke-width": 1.3 }));
      if (isNum(p.ylo) && isNum(p.yhi)) svg.appendChild(sv("line", { x1: X(p.x), x2: X(p.x), y1: Y(p.ylo), y2: Y(p.yhi), stroke: colour, "stroke-width": 1.3 }));
      svg.appendChild(sv("circle", { class: "point", cx: X(p.x), cy: Y(p.y), r: 5, fill: colour, stroke: "#222", "stroke-width": 0.7 },
        sv("title", { text: p.label + ": " + fmt(p.x) + ", " + fmt(p.y) })));
      // Labels alternate above and below their points, so that neighbours do not overwrite each other.
      svg.appendChild(sv("text", { x: X(p.x) + 8, y: Y(p.y) + (i % 2 ? 15 : -7), text: p.label }));
    });
    svg.appendChild(sv("line", { x1: left, x2: left, y1: top, y2: height - bottom, stroke: "#5f6368" }));
    svg.appendChild(sv("line", { x1: left, x2: width - right, y1: height - bottom, y2: height - bottom, stroke: "#5f6368" }));
    return svg;
  }

  // ------------------------------------------------------------------ the turnable 3D view (canvas)

  /* Skeletons in root-relative camera mm (x right, y down, z away from the camera), drawn orthographically;
     drag (or the arrow keys) turns the view about the vertical axis and tilts it. */
  function SkeletonView(bones, jointNames) {
    var canvas = el("canvas", { class: "view3d", tabindex: "0", "aria-label": "3D view of the skeletons: drag or use the arrow keys to turn it" });
    var ratio = window.devicePixelRatio || 1, size = 340;
    canvas.width = size * ratio; canvas.height = size * ratio;
    var ctx = canvas.getContext("2d");
    var state = { yaw: -0.6, pitch: 0.25, poses: [] };
    var drag = null;

    function project(p, scale) {
      var x = p[0], y = -p[1], z = p[2];
      var cy = Math.cos(state.yaw), sy = Math.sin(state.yaw), cp = Math.cos(state.pitch), sp = Math.sin(state.pitch);
      var x1 = x * cy - z * sy, z1 = x * sy + z * cy;
      var y2 = y * cp - z1 * sp, z2 = y * sp + z1 * cp;
      return [size / 2 + x1 * scale, size / 2 - y2 * scale, z2];
    }
    function draw() {
      canvas.setAttribute("data-yaw", state.yaw.toFixed(3));
      canvas.setAttribute("data-pitch", state.pitch.toFixed(3));
      ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
      ctx.fillStyle = "#fcfcfd"; ctx.fillRect(0, 0, size, size);
      var all = [];
      state.poses.forEach(function (pose) { (pose.joints || []).forEach(function (j) { all.push(j); }); });
      if (!all.length) { ctx.fillStyle = "#5f6368"; ctx.fillText("no 3D joints for this frame", 20, 30); return; }
      var extent = 1;
      all.forEach(function (j) { extent = Math.max(extent, Math.abs(j[0]), Math.abs(j[1]), Math.abs(j[2])); });
      var scale = size * 0.42 / extent;
      // The floor: a grid through the lowest joint, 250 mm squares, to show which way is up and how the view turned.
      var floor = Math.max.apply(null, all.map(function (j) { return j[1]; }));
      var reach = Math.ceil(extent / 250) * 250;
      ctx.strokeStyle = "#dde1e6"; ctx.lineWidth = 1;
      for (var g = -reach; g <= reach + 1e-6; g += 250) {
        [[[g, floor, -reach], [g, floor, reach]], [[-reach, floor, g], [reach, floor, g]]].forEach(function (line) {
          var a = project(line[0], scale), b = project(line[1], scale);
          ctx.beginPath(); ctx.moveTo(a[0], a[1]); ctx.lineTo(b[0], b[1]); ctx.stroke();
        });
      }
      var segments = [];
      state.poses.forEach(function (pose) {
        if (!pose.joints) return;
        var points = pose.joints.map(function (j) { return project(j, scale); });
        bones.forEach(function (bone) {
          var a = points[bone[0]], b = points[bone[1]];
          segments.push({ a: a, b: b, depth: (a[2] + b[2]) / 2, colour: pose.colour });
        });
        points.forEach(function (p) { segments.push({ a: p, b: null, depth: p[2], colour: pose.colour }); });
      });
      segments.sort(function (s, t) { return t.depth - s.depth; }); // far first
      segments.forEach(function (s) {
        if (s.b) {
          ctx.lineCap = "round";
          ctx.strokeStyle = "rgba(0,0,0,0.55)"; ctx.lineWidth = 5;
          ctx.beginPath(); ctx.moveTo(s.a[0], s.a[1]); ctx.lineTo(s.b[0], s.b[1]); ctx.stroke();
          ctx.strokeStyle = s.colour; ctx.lineWidth = 3;
          ctx.beginPath(); ctx.moveTo(s.a[0], s.a[1]); ctx.lineTo(s.b[0], s.b[1]); ctx.stroke();
        } else {
          ctx.fillStyle = s.colour; ctx.strokeStyle = "#111"; ctx.lineWidth = 0.8;
          ctx.beginPath(); ctx.arc(s.a[0], s.a[1], 3.2, 0, 2 * Math.PI); ctx.fill(); ctx.stroke();
        }
      });
      ctx.fillStyle = "#5f6368"; ctx.font = "11px system-ui, sans-serif";
      ctx.fillText("grid: 250 mm; drag to turn", 8, size - 8);
    }
    canvas.addEventListener("pointerdown", function (event) { drag = { x: event.clientX, y: event.clientY }; canvas.setPointerCapture(event.pointerId); });
    canvas.addEventListener("pointermove", function (event) {
      if (!drag) return;
      turn((event.clientX - drag.x) * 0.01, (event.clientY - drag.y) * 0.01);
      drag = { x: event.clientX, y: event.clientY };
    });
    ["pointerup", "pointercancel"].forEach(function (name) { canvas.addEventListener(name, function () { drag = null; }); });
    canvas.addEventListener("keydown", function (event) {
      var keys = { ArrowLeft: [-0.1, 0], ArrowRight: [0.1, 0], ArrowUp: [0, -0.1], ArrowDown: [0, 0.1] };
      if (keys[event.key]) { event.preventDefault(); turn(keys[event.key][0], keys[event.key][1]); }
    });
    function turn(dyaw, dpitch) {
      state.yaw += dyaw;
      state.pitch = Math.max(-1.5, Math.min(1.5, state.pitch + dpitch));
      draw();
    }
    function view(yaw, pitch) { state.yaw = yaw; state.pitch = pitch; draw(); }
    var controls = el("div", { class: "controls" }, [
      el("button", { type: "button", text: "front", onclick: function () { view(0, 0); } }),
      el("button", { type: "button", text: "side", onclick: function () { view(Math.PI / 2, 0); } }),
      el("button", { type: "button", text: "top", onclick: function () { view(0, 1.5); } }),
      el("button", { type: "button", text: "turn 45\u00b0", onclick: function () { turn(Math.PI / 4, 0); } }),
    ]);
    return {
      node: el("div", {}, [canvas, controls]),
      canvas: canvas,
      setPoses: function (poses) { state.poses = poses; draw(); },
    };
  }

  /* The crop with both skeletons drawn over it, in crop pixels. */
  function cropView(frame, bones, colours) {
    var size = frame.crop_size || 256;
    var overlay = sv("svg", { viewBox: "-0.5 -0.5 " + size + " " + size, preserveAspectRatio: "none", "aria-hidden": "true" });
    [["gt_xy", colours.truth], ["pred_xy", colours.prediction]].forEach(function (pair) {
      var joints = frame[pair[0]];
      if (!joints) return;
      bones.forEach(function (bone) {
        var a = joints[bone[0]], b = joints[bone[1]];
        overlay.appendChild(sv("line", { x1: a[0], y1: a[1], x2: b[0], y2: b[1], stroke: "rgba(0,0,0,0.6)", "stroke-width": size / 60, "stroke-linecap": "round" }));
        overlay.appendChild(sv("line", { x1: a[0], y1: a[1], x2: b[0], y2: b[1], stroke: pair[1], "stroke-width": size / 110, "stroke-linecap": "round" }));
      });
      joints.forEach(function (j) { overlay.appendChild(sv("circle", { cx: j[0], cy: j[1], r: size / 110, fill: pair[1], stroke: "#000", "stroke-width": size / 400 })); });
    });
    return el("div", { class: "crop" }, [el("img", { src: frame.crop, alt: "test crop of image " + frame.image_id, width: 300, height: 300 }), overlay]);
  }

  // ------------------------------------------------------------------ what every page starts with

  function header(title, markers) {
    return [el("h1", { text: title })].concat((markers || []).map(function (text) { return el("div", { class: "marker", role: "alert", text: text }); }));
  }
  function weightsBlock(records) {
    return el("div", { class: "weights-list" }, (records || []).map(function (record) {
      return el("div", { class: "weights" }, [
        el("div", {}, [el("span", { class: "role", text: record.role + ": " }), el("code", { text: record.file })]),
        el("div", {}, ["sha256 ", el("code", { class: "sha", text: record.sha256 })]),
        el("div", { class: "note", text: "what this run proved: " + record.proof }),
      ]);
    }));
  }
  function facts(pairs) {
    var dl = el("dl", { class: "facts" });
    pairs.forEach(function (pair) { dl.appendChild(el("dt", { text: pair[0] })); dl.appendChild(el("dd", { text: pair[1] })); });
    return dl;
  }
  function metricSelect(keys, labels, chosen, onChange) {
    var select = el("select", { onchange: function () { onChange(select.value); } }, keys.map(function (key) {
      return el("option", { value: key, text: labels[key] || key });
    }));
    select.value = chosen;
    return el("label", { class: "note" }, ["chart: ", select]);
  }
  function replaceChart(holder, chart) { holder.textContent = ""; holder.appendChild(chart); }
  function metricColumns(keys, labels) {
    return keys.map(function (key) { return { key: key, label: labels[key] || key, format: function (v) { return fmt(v); } }; });
  }

  // ------------------------------------------------------------------ a run's page

  function renderRun() {
    var labels = data.metric_labels, headline = data.headline, metric = headline.headline_metric || "mpjpe";
    append(root, header(data.title, data.markers));
    append(root, section("Weights, and what was proven about them", "weights", [weightsBlock(data.weights), facts(data.facts)]));

    var rows = headline.rows.map(function (row) { return row; });
    var cmp = headline.comparison;
    append(root, section("Headline figures against the paper", "headline", [
      sortableTable([
        { key: "metric", label: "metric", text: true },
        { key: "ours", label: "ours", format: function (v) { return fmt(v); } },
        { key: "action_average", label: "mean of action means", format: function (v) { return fmt(v); } },
        { key: "paper", label: "paper", format: function (v) { return fmt(v); } },
        { key: "diff", label: "ours - paper", format: function (v) { return signed(v); } },
        { key: "band", label: "band", format: function (v) { return v ? el("span", { class: bandClass(v), text: v }) : "-"; } },
      ], rows, { id: "headline-table" }),
      note(cmp ? "The paper's figure for protocol " + headline.protocol + " is " + (labels[cmp.metric] || cmp.metric) + "; " +
                 "the band rates |ours - paper|" + (data.bands ? " (" + data.bands + ")" : "") + "."
               : "The paper gives no figure for this variant under protocol " + headline.protocol + ": nothing to rate."),
      note("Errors in mm over the 17 evaluated joints (Thorax left out); PCK and AUC in percent. PA-MPJPE: rigid alignment on 18 joints as the authors' code; " +
           "(scaled) adds a scale, fitted on the 17 joints. Parameters (M): ours " + fmt(headline.params_m) + ", paper " + fmt(headline.paper_params_m) +
           "; GFLOPs: ours " + fmt(headline.gflops) + ", paper " + fmt(headline.paper_gflops) + "."),
    ]));

    function groupSection(title, id, rowsIn, withCount, chosen) {
      var holder = el("div", { class: "chart-holder" });
      var keys = Object.keys(labels).filter(function (key) { return rowsIn.some(function (row) { return key in row; }); });
      function drawChart(key) {
        replaceChart(holder, barChart(rowsIn.map(function (row) { return { label: row.name, value: row[key] }; }),
          { id: id + "-chart", unit: (labels[key] || key) + (key.indexOf("pck") === 0 || key === "auc3d" ? "" : " (mm)"),
            references: isNum(findOverall(key)) ? [{ value: findOverall(key), label: "all images", colour: "#d62728" }] : [],
            label: title + ": " + (labels[key] || key) }));
      }
      drawChart(chosen);
      var columns = [{ key: "name", label: id === "per-joint" ? "joint" : id === "per-subject" ? "subject" : "action", text: true }].concat(metricColumns(keys, labels));
      if (withCount) columns.push({ key: "num_samples", label: "images" });
      // A table of one figure fits beside its chart; one of every figure goes under it.
      return section(title, id, [el("div", { class: keys.length > 1 ? "" : "grid2" }, [
        el("div", {}, [keys.length > 1 ? metricSelect(keys, labels, chosen, drawChart) : null, holder,
                       note("Dashed red line: the figure over all images. Click a column's name to sort the table by it." +
                            (id === "per-joint" ? " Pelvis is the root every pose is taken relative to: 0 by construction." : ""))]),
        el("div", { class: "scroll" }, sortableTable(columns, rowsIn, { id: id + "-table" })),
      ])]);
    }
    function findOverall(key) {
      var hit = headline.rows.filter(function (row) { return row.key === key; })[0];
      return hit ? hit.ours : null;
    }
    append(root, groupSection("Per action", "per-action", data.per_action, true, metric));
    append(root, groupSection("Per subject", "per-subject", data.per_subject, true, metric));
    append(root, groupSection("Per joint (MPJPE)", "per-joint", data.per_joint, false, "mpjpe"));

    var histHolder = el("div");
    function drawHist(key) { replaceChart(histHolder, histogram(data.errors[key] || [], { id: "error-histogram", unit: (labels[key] || key) + " (mm)" })); }
    drawHist(data.errors[metric] ? metric : "mpjpe");
    append(root, section("Error distribution over the test images", "distribution", [
      metricSelect(Object.keys(data.errors), labels, data.errors[metric] ? metric : "mpjpe", drawHist), histHolder,
      note("Each image's own figure, from predictions.json; their mean is the overall figure above."),
    ]));

    renderFrames();
  }

  function renderFrames() {
    var frames = data.frames || [];
    var labels = data.metric_labels;
    var children = [];
    if (!frames.length) {
      append(root, section("Worst frames", "frames", [note("No frames kept (report.worst_frames=0, or no test image).")]));
      return;
    }
    var view3d = SkeletonView(data.bones, data.joint_names);
    var title = el("h3", { id: "frame-title" });
    var cropHolder = el("div");
    var figures = el("div", { class: "scroll", style: "max-height: 360px" });
    var detail = el("div", { class: "frame-view", id: "frame-view" }, [
      el("div", {}, [title, cropHolder, legend([{ label: "ground truth", colour: data.colours.truth }, { label: "prediction", colour: data.colours.prediction }])]),
      el("div", {}, [el("h3", { text: "3D, root-relative (mm)" }), view3d.node]),
      el("div", {}, [el("h3", { text: "This frame's figures" }), figures]),
    ]);
    var selectedRow = null;
    function show(frame, tr) {
      detail.setAttribute("data-image-id", String(frame.image_id));
      title.textContent = "image " + frame.image_id + " | " + frame.action + " | " + (frame.subject || "?") + " | MPJPE " + fmt(frame.figures.mpjpe) + " mm";
      replaceChart(cropHolder, cropView(frame, data.bones, data.colours));
      view3d.setPoses([{ joints: frame.gt_cam, colour: data.colours.truth }, { joints: frame.pred_cam, colour: data.colours.prediction }]);
      var lines = Object.keys(frame.figures).map(function (key) { return [labels[key] || key, fmt(frame.figures[key])]; });
      var table = el("table", { id: "frame-figures" }, el("tbody", {}, lines.map(function (line) {
        return el("tr", {}, [el("td", { text: line[0] }), el("td", { text: line[1] })]);
      })));
      var joints = (frame.joint_mpjpe || []).map(function (v, j) { return { joint: data.joint_names[j], error: v }; });
      var place = function (v) { return isNum(v) ? v.toFixed(1) : "-"; };
      replaceChart(figures, el("div", {}, [
        table,
        sortableTable([{ key: "joint", label: "joint", text: true }, { key: "error", label: "error (mm)", format: function (v) { return fmt(v); } }], joints, { id: "frame-joints" }),
        note("box " + (frame.bbox || []).map(place).join(", ") + " px; root " + (frame.root_cam || []).map(place).join(", ") + " mm (camera)"),
      ]));
      if (selectedRow) selectedRow.classList.remove("selected");
      if (tr) { tr.classList.add("selected"); selectedRow = tr; }
    }
    var rows = frames.map(function (frame, rank) {
      var row = { rank: rank + 1, image_id: frame.image_id, action: frame.action, subject: frame.subject, frame: frame };
      Object.keys(frame.figures).forEach(function (key) { row[key] = frame.figures[key]; });
      return row;
    });
    var keys = Object.keys(frames[0].figures);
    var table = sortableTable([{ key: "rank", label: "rank" }, { key: "image_id", label: "image id" }, { key: "action", label: "action", text: true },
                               { key: "subject", label: "subject", text: true }].concat(metricColumns(keys, labels)),
      rows, { id: "frames-table", onSelect: function (row, tr) { show(row.frame, tr); }, rowId: function (row) { return row.image_id; } });
    children.push(note("The " + frames.length + " test images with the highest MPJPE, worst first. Choose one (click, or Enter) to see its crop with both skeletons, " +
                       "both skeletons in 3D (drag to turn) and its figures from predictions.json."));
    children.push(el("div", { class: "scroll", style: "max-height: 300px" }, table));
    children.push(detail);
    append(root, section("Worst frames", "frames", children));
    show(frames[0], table.querySelector("tbody tr"));
  }

  // ------------------------------------------------------------------ a sweep's page

  function renderSweep() {
    var labels = data.metric_labels;
    append(root, header(data.title, data.markers));
    append(root, note("Sweep folder " + data.sweep_dir + "; " + (data.protocol ? "protocol " + data.protocol : "protocols per row") + ". Errors in mm."));
    var entries = data.entries;
    var ok = entries.filter(function (e) { return e.status === "ok"; });
    var table = sortableTable([
      { key: "label", label: "variant", text: true, format: function (v, row) { return row.link ? el("a", { href: row.link, text: v }) : v; } },
      { key: "status", label: "status", text: true, format: function (v, row) {
          return v === "ok" ? (row.markers && row.markers.length ? "ok, " + row.markers.map(function (m) { return m.split(/[ :,]/)[0]; }).join(", ") : "ok")
                            : el("span", { class: "failed", text: "FAILED: " + (row.error || "?") }); } },
      { key: "num_samples", label: "images" },
      { key: "mpjpe", label: "MPJPE", sort: function (r) { return r.metrics && r.metrics.mpjpe; }, format: function (v, r) { return fmt(r.metrics && r.metrics.mpjpe); } },
      { key: "pa_mpjpe", label: "PA-MPJPE", sort: function (r) { return r.metrics && r.metrics.pa_mpjpe; }, format: function (v, r) { return fmt(r.metrics && r.metrics.pa_mpjpe); } },
      { key: "pa_mpjpe_scaled", label: "PA-MPJPE (scaled)", sort: function (r) { return r.metrics && r.metrics.pa_mpjpe_scaled; }, format: function (v, r) { return fmt(r.metrics && r.metrics.pa_mpjpe_scaled); } },
      { key: "paper", label: "paper", format: function (v, r) { return isNum(v) ? fmt(v) + " (" + (labels[r.headline_metric] || (r.protocol === 1 ? "PA-MPJPE" : "MPJPE")) + ")" : "-"; } },
      { key: "diff", label: "ours - paper", format: function (v) { return signed(v); } },
      { key: "band", label: "band", format: function (v) { return v ? el("span", { class: bandClass(v), text: v }) : "-"; } },
      { key: "params_m", label: "params (M) ours / paper", format: function (v, r) { return fmt(v) + " / " + fmt(r.paper_params_m); } },
      { key: "gflops", label: "GFLOPs ours / paper", format: function (v, r) { return fmt(v) + " / " + fmt(r.paper_gflops); } },
      { key: "images_per_s", label: "images/s", format: function (v, r) { return isNum(v) ? v.toFixed(1) + " (" + r.device + ", " + r.backend + ")" : "-"; } },
    ], entries, { id: "variants-table" });
    append(root, section("The variants side by side", "variants", [
      el("div", { class: "scroll" }, table),
      note("Each variant's name links to its own run page. The paper's figure is MPJPE for protocol 2 and PA-MPJPE for protocol 1."),
    ]));
    var labelsOk = ok.map(function (e) { return e.label; });
    var headlineSeries = [
      { name: "ours", colour: SERIES[0], values: {} }, { name: "paper", colour: "#b0b0b0", values: {} }];
    ok.forEach(function (e) { headlineSeries[0].values[e.label] = e.metrics ? e.metrics[e.headline_metric] : null; headlineSeries[1].values[e.label] = e.paper; });
    var series = function (field) {
      return ok.map(function (e, i) { return { name: e.label, colour: SERIES[i % SERIES.length], values: e[field] || {} }; });
    };
    append(root, section("Ours against the paper", "headline", [groupedBarChart(labelsOk, headlineSeries, { id: "headline-chart", unit: "headline error (mm)" })]));
    // One figure and its table per breakdown: a row per name, a column per variant.
    var breakdown = function (title, anchor, names, field, column) {
      append(root, section(title, anchor, [
        el("div", { class: "grid2" }, [
          groupedBarChart(names, series(field), { id: anchor + "-chart", unit: "mm" }),
          el("div", { class: "scroll" }, sortableTable([{ key: "name", label: column, text: true }].concat(ok.map(function (e) {
            return { key: e.label, label: e.label, format: function (v) { return fmt(v); } };
          })), names.map(function (name) {
            var row = { name: name }; ok.forEach(function (e) { row[e.label] = (e[field] || {})[name]; }); return row;
          }), { id: anchor + "-table" })),
        ])]));
    };
    breakdown("Per action (each variant's headline metric)", "per-action", data.actions, "per_action", "action");
    breakdown("Per joint (MPJPE)", "per-joint", data.joint_names, "per_joint", "joint");
    append(root, section("Weights of each variant", "weights", ok.map(function (e) {
      return el("div", {}, [el("h3", { text: e.label }), weightsBlock(e.weights)]);
    })));
  }

  // ------------------------------------------------------------------ a comparison's page

  function renderCompare() {
    var labels = data.metric_labels;
    append(root, header(data.title, data.markers));
    data.sections.forEach(function (part, index) {
      var c = part.comparison, prefix = "cmp" + index + "-";
      var children = [
        facts([["A", part.a.folder + " (" + part.a.label + ")"], ["B", part.b.folder + " (" + part.b.label + ")"],
               ["images", c.num_common + " scored by both (A " + c.num_a + ", B " + c.num_b + ")"],
               ["test set", "protocol " + c.test_set.protocol + ", subjects " + c.test_set.subjects + ", " + c.test_set.boxes + ", " + c.test_set.data],
               ["intervals", "95% paired bootstrap over images, " + c.bootstrap.resamples + " resamples, seed " + c.bootstrap.seed]]),
        el("div", { class: "grid2" }, [el("div", {}, [el("h3", { text: "A" }), weightsBlock(part.a.weights)]), el("div", {}, [el("h3", { text: "B" }), weightsBlock(part.b.weights)])]),
        el("h3", { text: "Every figure, B - A" }),
        sortableTable([{ key: "name", label: "metric", text: true, format: function (v) { return labels[v] || v; } },
                       { key: "a", label: "A", format: function (v) { return fmt(v); } }, { key: "b", label: "B", format: function (v) { return fmt(v); } },
                       { key: "difference", label: "B - A", format: function (v) { return signed(v); } },
                       { key: "ci95", label: "95% interval", sort: function (r) { return r.ci95 ? r.ci95[0] : null; }, format: function (v) { return interval(v); } }],
          Object.keys(c.metrics).map(function (name) { return Object.assign({ name: name }, c.metrics[name]); }), { id: prefix + "metrics" }),
      ];
      [["per_action", "action", "Per action: MPJPE, B - A with its interval"], ["per_joint", "joint", "Per joint: MPJPE, B - A with its interval"]].forEach(function (spec) {
        var rows = part[spec[0]];
        var columns = [{ key: "name", label: spec[1], text: true }, { key: "a", label: "A", format: function (v) { return fmt(v); } },
                       { key: "b", label: "B", format: function (v) { return fmt(v); } }, { key: "difference", label: "B - A", format: function (v) { return signed(v); } },
                       { key: "ci95", label: "95% interval", sort: function (r) { return r.ci95 ? r.ci95[0] : null; }, format: function (v) { return interval(v); } }];
        if (spec[0] === "per_action") columns.push({ key: "num_common", label: "images" });
        children.push(el("h3", { text: spec[2] }));
        children.push(note("Bars: B - A; whiskers: its 95% interval (none for an action with a single image: nothing to resample)."));
        children.push(el("div", { class: "grid2" }, [
          barChart(rows.map(function (r) { return { label: r.name, value: r.difference, lo: r.ci95 ? r.ci95[0] : null, hi: r.ci95 ? r.ci95[1] : null }; }),
                   { id: prefix + spec[0].replace("_", "-") + "-chart", unit: "B - A, MPJPE (mm); red: B worse, green: B better", signed: true }),
          el("div", { class: "scroll" }, sortableTable(columns, rows, { id: prefix + spec[0].replace("_", "-") + "-table" })),
        ]));
      });
      children.push(el("h3", { text: "The images whose error changed most" }));
      children.push(changedFrames(part, prefix));
      append(root, section(data.sections.length > 1 ? "B = " + part.b.folder : "B - A", "comparison-" + index, children));
    });
  }

  function changedFrames(part, prefix) {
    var frames = part.frames;
    if (!frames.length) return note("No common image.");
    var view3d = SkeletonView(data.bones, data.joint_names);
    var title = el("h3", {});
    var jointsHolder = el("div", { class: "scroll", style: "max-height: 340px" });
    var detail = el("div", { class: "frame-view", id: prefix + "frame-view", style: "grid-template-columns: 340px minmax(0, 1fr)" }, [
      el("div", {}, [title, view3d.node, legend([{ label: "A's prediction", colour: data.colours.a }, { label: "B's prediction", colour: data.colours.b }])]),
      el("div", {}, [el("h3", { text: "Per joint error, A and B (mm)" }), jointsHolder])]);
    var selected = null;
    function show(frame, tr) {
      detail.setAttribute("data-image-id", String(frame.image_id));
      title.textContent = "image " + frame.image_id + " | " + frame.action + " | " + (frame.subject || "?") + " | MPJPE A " + fmt(frame.a.mpjpe) + ", B " + fmt(frame.b.mpjpe);
      view3d.setPoses([{ joints: frame.a_cam, colour: data.colours.a }, { joints: frame.b_cam, colour: data.colours.b }]);
      var rows = data.joint_names.map(function (name, j) {
        var a = (frame.a_joint_mpjpe || [])[j], b = (frame.b_joint_mpjpe || [])[j];
        return { joint: name, a: a, b: b, difference: isNum(a) && isNum(b) ? b - a : null };
      });
      replaceChart(jointsHolder, sortableTable([{ key: "joint", label: "joint", text: true }, { key: "a", label: "A", format: function (v) { return fmt(v); } },
        { key: "b", label: "B", format: function (v) { return fmt(v); } }, { key: "difference", label: "B - A", format: function (v) { return signed(v); } }], rows));
      if (selected) selected.classList.remove("selected");
      if (tr) { tr.classList.add("selected"); selected = tr; }
    }
    var rows = frames.map(function (frame) {
      return { image_id: frame.image_id, action: frame.action, subject: frame.subject, a: frame.a.mpjpe, b: frame.b.mpjpe,
               difference: isNum(frame.a.mpjpe) && isNum(frame.b.mpjpe) ? frame.b.mpjpe - frame.a.mpjpe : null,
               pa_difference: isNum(frame.a.pa_mpjpe) && isNum(frame.b.pa_mpjpe) ? frame.b.pa_mpjpe - frame.a.pa_mpjpe : null, frame: frame };
    });
    var table = sortableTable([{ key: "image_id", label: "image id" }, { key: "action", label: "action", text: true }, { key: "subject", label: "subject", text: true },
                               { key: "a", label: "MPJPE A", format: function (v) { return fmt(v); } }, { key: "b", label: "MPJPE B", format: function (v) { return fmt(v); } },
                               { key: "difference", label: "B - A", format: function (v) { return signed(v); } },
                               { key: "pa_difference", label: "PA-MPJPE B - A", format: function (v) { return signed(v); } }],
      rows, { id: prefix + "frames-table", onSelect: function (row, tr) { show(row.frame, tr); }, rowId: function (row) { return row.image_id; } });
    var wrap = el("div", {}, [note("Ranked by |B - A| of the image's MPJPE. Choose one to see both runs' 3D predictions (drag to turn)."),
                              el("div", { class: "scroll", style: "max-height: 280px" }, table), detail]);
    show(frames[0], table.querySelector("tbody tr"));
    return wrap;
  }

  // ------------------------------------------------------------------ a deployment matrix's page

  function renderDeploy() {
    var labels = data.metric_labels;
    append(root, header(data.title, data.markers));
    append(root, note("Folder " + data.folder + "; reference " + data.reference + "; " + data.num_samples + " test images. Differences are against the reference on the same images, " +
                      "with a 95% paired bootstrap interval."));
    var formats = data.formats;
    var built = formats.filter(function (f) { return f.status === "ok"; });
    var holder = el("div");
    function draw(key) {
      var points = built.map(function (f, i) {
        var lat = f.latency_ms || {}, value = (f.metrics || {})[key], diff = (f.difference || {})[key] || {};
        var ci = diff.ci95;
        return { label: f.format, x: lat.p50, xlo: lat.p50, xhi: lat.p90, y: value, colour: SERIES[i % SERIES.length],
                 ylo: ci && isNum(diff.value) ? value - (diff.value - ci[0]) : null, yhi: ci && isNum(diff.value) ? value + (ci[1] - diff.value) : null };
      });
      replaceChart(holder, scatter(points, { id: "accuracy-latency", xLabel: "latency per batch, median (ms); line to the 90th percentile",
                                             yLabel: (labels[key] || key) + " (mm)", label: "accuracy against latency per format" }));
    }
    draw("mpjpe");
    var missing = formats.filter(function (f) { return f.status !== "ok"; });
    append(root, section("Accuracy against latency", "tradeoff", [
      metricSelect(["mpjpe", "pa_mpjpe"], labels, "mpjpe", draw), holder,
      note("Vertical line: the 95% interval of the difference to the reference, placed around the format's figure. " +
           (missing.length ? "Not plotted (not built): " + missing.map(function (f) { return f.format + " (" + f.status + ")"; }).join(", ") + "." : "Every format was built.")),
    ]));
    append(root, section("Every format", "formats", [el("div", { class: "scroll" }, sortableTable([
      { key: "format", label: "format", text: true },
      { key: "status", label: "status", text: true, format: function (v) { return v === "ok" ? "ok" : el("span", { class: "failed", text: v }); } },
      { key: "reason", label: "why not built", text: true, format: function (v) { return v ? el("span", { class: "failed reason", text: v }) : ""; } },
      { key: "size_bytes", label: "size (MB)", format: function (v) { return mb(v); } },
      { key: "mpjpe", label: "MPJPE", sort: function (r) { return (r.metrics || {}).mpjpe; }, format: function (v, r) { return fmt((r.metrics || {}).mpjpe); } },
      { key: "pa_mpjpe", label: "PA-MPJPE", sort: function (r) { return (r.metrics || {}).pa_mpjpe; }, format: function (v, r) { return fmt((r.metrics || {}).pa_mpjpe); } },
      { key: "d_mpjpe", label: "MPJPE - ref. [95%]", sort: function (r) { return ((r.difference || {}).mpjpe || {}).value; },
        format: function (v, r) { return withInterval((r.difference || {}).mpjpe); } },
      { key: "d_pa", label: "PA-MPJPE - ref. [95%]", sort: function (r) { return ((r.difference || {}).pa_mpjpe || {}).value; },
        format: function (v, r) { return withInterval((r.difference || {}).pa_mpjpe); } },
      { key: "p50", label: "p50 (ms)", sort: function (r) { return (r.latency_ms || {}).p50; }, format: function (v, r) { return fmt((r.latency_ms || {}).p50); } },
      { key: "p90", label: "p90 (ms)", sort: function (r) { return (r.latency_ms || {}).p90; }, format: function (v, r) { return fmt((r.latency_ms || {}).p90); } },
      { key: "p99", label: "p99 (ms)", sort: function (r) { return (r.latency_ms || {}).p99; }, format: function (v, r) { return fmt((r.latency_ms || {}).p99); } },
      { key: "batch", label: "batch, runs", sort: function (r) { return (r.latency_ms || {}).batch_size; }, format: function (v, r) { var l = r.latency_ms || {}; return isNum(l.batch_size) ? l.batch_size + ", " + l.runs : "-"; } },
      { key: "throughput_ips", label: "images/s", format: function (v) { return fmt(v, 1); } },
    ], formats, { id: "formats-table" }))]));
  }

  var renderers = { run: renderRun, sweep: renderSweep, compare: renderCompare, deploy: renderDeploy };
  renderers[data.kind]();
  append(root, el("footer", { text: "Written by convnextpose-eval. Self-contained: this file holds its data, script and images; nothing is fetched." }));
  root.setAttribute("data-rendered", "true");
})();
