/* The job page's charts: uPlot (canvas) fed point by point, redrawn at most once per frame, so a
   run with thousands of steps stays smooth. Each metric point is keyed by (kind, step), so a point
   seen twice (a replay after reconnecting) replaces itself instead of doubling. */
"use strict";

const CHARTS = [
  { id: "chart-loss", series: [{ label: "train loss", kind: "train", key: "loss", stroke: "#2563eb" },
                               { label: "eval loss", kind: "eval", key: "eval_loss", stroke: "#dc2626", points: true }] },
  { id: "chart-lr", series: [{ label: "lr", kind: "train", key: "lr", stroke: "#7c3aed" }] },
  { id: "chart-tps", series: [{ label: "tokens/s", kind: "train", key: "tokens_per_s", stroke: "#059669" }] },
  { id: "chart-grad", series: [{ label: "grad norm", kind: "train", key: "grad_norm", stroke: "#d97706" }] },
];

/* Learning rates live around 1e-4: plain decimals would label every tick "0.000". */
function axisValue(v) {
  if (v === null || v === undefined) return "";
  if (v !== 0 && Math.abs(v) < 0.01) return v.toExponential(1);
  return String(Number(v.toPrecision(4)));
}

class JobCharts {
  constructor() {
    this.rows = new Map();  // step -> {train: values, eval: values}
    this.pending = false;
    this.plots = CHARTS.map((spec) => this.makePlot(spec)).filter(Boolean);
    window.addEventListener("resize", () => this.resize());
  }

  makePlot(spec) {
    const host = document.getElementById(spec.id);
    if (!host || typeof uPlot === "undefined") return null;
    const options = {
      width: Math.max(host.clientWidth, 200), height: 180,
      scales: { x: { time: false } },
      legend: { live: true },
      cursor: { drag: { x: true, y: false } },
      series: [{ label: "step" }, ...spec.series.map((s) => ({
        label: s.label, stroke: s.stroke, width: 1.5, spanGaps: true,
        points: { show: Boolean(s.points), size: 5 },
      }))],
      axes: [{ label: "step" }, { size: 64, values: (u, splits) => splits.map(axisValue) }],
    };
    return { spec, host, plot: new uPlot(options, [[], ...spec.series.map(() => [])], host) };
  }

  add(point) {
    const row = this.rows.get(point.step) || {};
    row[point.kind] = point.values;
    this.rows.set(point.step, row);
    if (!this.pending) {
      this.pending = true;
      requestAnimationFrame(() => this.draw());
    }
  }

  count(kind) {
    let n = 0;
    for (const row of this.rows.values()) if (row[kind]) n += 1;
    return n;
  }

  draw() {
    this.pending = false;
    const steps = [...this.rows.keys()].sort((a, b) => a - b);
    for (const { spec, plot } of this.plots) {
      const ys = spec.series.map((s) => steps.map((step) => {
        const values = this.rows.get(step)[s.kind];
        const y = values ? values[s.key] : undefined;
        return typeof y === "number" ? y : null;
      }));
      plot.setData([steps, ...ys]);
    }
    const counter = document.querySelector('[data-count="loss"]');
    if (counter) counter.textContent = String(this.count("train"));
  }

  resize() {
    for (const { host, plot } of this.plots) plot.setSize({ width: Math.max(host.clientWidth, 200), height: 180 });
  }
}
