// The 7/14/30-day trend chart (uPlot, vendored). The points plotted are the analytics response's
// `series`; they are also kept on the chart element (data-points) and in window.dashboardChart.
// Credits strings become Numbers here for plotting only; nothing is computed from them.

import { $ } from "./dom.js";

let plot = null;

export function drawTrend(analytics) {
  const points = analytics.series.map((d) => [d.date, d.credits]);
  const box = $("chart");
  box.dataset.points = JSON.stringify(points);
  box.dataset.days = String(analytics.days);
  window.dashboardChart = { days: analytics.days, points };
  const xs = analytics.series.map((d) => Date.parse(`${d.date}T00:00:00Z`) / 1000);
  const ys = analytics.series.map((d) => Number(d.credits));
  if (plot) plot.destroy();
  if (!window.uPlot) return; // the chart library did not load: the figures above still show
  plot = new window.uPlot({
    width: Math.max(320, box.clientWidth - 8),
    height: 240,
    scales: { x: { time: true } },
    series: [{}, { label: "credits", stroke: "#2459d6", fill: "rgba(36,89,214,.12)", width: 2 }],
    axes: [{}, { size: 70 }],
  }, [xs, ys], box);
}
