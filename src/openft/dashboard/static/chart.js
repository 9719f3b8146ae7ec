// A small SVG line chart (no dependency): lineChart(element, {title, series: [{name, color, points: [[x, y]]}]}).
"use strict";

(function () {
  const NS = "http://www.w3.org/2000/svg";
  const W = 560, H = 260, PAD = { left: 52, right: 16, top: 28, bottom: 34 };

  function el(name, attrs, parent) {
    const node = document.createElementNS(NS, name);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (parent) parent.appendChild(node);
    return node;
  }

  function niceTicks(min, max, count) {
    if (min === max) { min -= 1; max += 1; }
    const raw = (max - min) / count;
    const mag = Math.pow(10, Math.floor(Math.log10(raw)));
    const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) || raw;
    const ticks = [];
    for (let t = Math.floor(min / step) * step; t <= max + step * 0.5; t += step) ticks.push(+t.toFixed(10));
    ticks.decimals = Math.max(0, -Math.floor(Math.log10(step) + 1e-9));
    return ticks;
  }

  function fmt(v, decimals) {
    return v.toLocaleString(undefined, { minimumFractionDigits: decimals, maximumFractionDigits: decimals });
  }

  window.lineChart = function lineChart(target, spec) {
    const series = spec.series.filter((s) => s.points.length > 0);
    const all = series.flatMap((s) => s.points);
    target.innerHTML = "";
    const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img", "aria-label": spec.title }, target);
    svg.dataset.points = String(all.length);
    el("text", { x: PAD.left, y: 18, class: "chart-title" }, svg).textContent = spec.title;
    if (all.length === 0) {
      el("text", { x: W / 2, y: H / 2, class: "chart-empty", "text-anchor": "middle" }, svg).textContent =
        "no data yet";
      return;
    }
    const xs = all.map((p) => p[0]), ys = all.map((p) => p[1]);
    const xTicks = niceTicks(Math.min(...xs, 0), Math.max(...xs, 1), 6);
    const yTicks = niceTicks(Math.min(...ys), Math.max(...ys), 5);
    const [x0, x1] = [xTicks[0], xTicks[xTicks.length - 1]];
    const [y0, y1] = [yTicks[0], yTicks[yTicks.length - 1]];
    const sx = (x) => PAD.left + ((x - x0) / (x1 - x0 || 1)) * (W - PAD.left - PAD.right);
    const sy = (y) => H - PAD.bottom - ((y - y0) / (y1 - y0 || 1)) * (H - PAD.top - PAD.bottom);

    for (const t of yTicks) {
      el("line", { x1: PAD.left, x2: W - PAD.right, y1: sy(t), y2: sy(t), class: "grid" }, svg);
      el("text", { x: PAD.left - 6, y: sy(t) + 4, class: "tick", "text-anchor": "end" }, svg).textContent =
        fmt(t, yTicks.decimals);
    }
    for (const t of xTicks) {
      el("text", { x: sx(t), y: H - PAD.bottom + 16, class: "tick", "text-anchor": "middle" }, svg).textContent =
        fmt(t, xTicks.decimals);
    }
    el("text", { x: W - PAD.right, y: H - 4, class: "tick", "text-anchor": "end" }, svg).textContent = "step";

    let legendX = W - PAD.right;
    for (const s of series.slice().reverse()) {
      const label = el("text", { x: legendX, y: 18, class: "legend", "text-anchor": "end", fill: s.color }, svg);
      label.textContent = `● ${s.name}`;
      legendX -= 14 + 7 * s.name.length;
    }
    // Vertical markers at given steps (early stopping's best step and where it stopped).
    for (const m of spec.markers || []) {
      if (m.x < x0 || m.x > x1) continue;
      el("line", { x1: sx(m.x), x2: sx(m.x), y1: PAD.top, y2: H - PAD.bottom, stroke: m.color,
        "stroke-dasharray": "4 3", class: "marker", "data-name": m.label }, svg);
      el("text", { x: sx(m.x) + 3, y: PAD.top + 10, class: "tick", fill: m.color }, svg).textContent = m.label;
    }
    for (const s of series) {
      const d = s.points.map((p) => `${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join(" ");
      el("polyline", { points: d, fill: "none", stroke: s.color, "stroke-width": s.width || 2,
        class: "series", "data-name": s.name }, svg);
      if (s.points.length <= 40 || s.dots) {
        for (const p of s.points) el("circle", { cx: sx(p[0]), cy: sy(p[1]), r: 2.5, fill: s.color }, svg);
      }
    }
  };
})();
