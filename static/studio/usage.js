// Draws the usage page's charts from the JSON the server embeds (#usage-chart-data), on first load and
// again whenever htmx swaps in a new report. Without JavaScript the table below them has every number.
(function () {
  "use strict";
  const charts = [];
  const css = getComputedStyle(document.documentElement);
  const color = (name, fallback) => (css.getPropertyValue(name) || fallback).trim();

  function draw() {
    const source = document.getElementById("usage-chart-data");
    while (charts.length) charts.pop().destroy();
    if (!source || typeof Chart === "undefined") return;
    const data = JSON.parse(source.textContent);
    const common = {
      responsive: true, maintainAspectRatio: false, animation: false,
      plugins: { legend: { display: true, position: "bottom" } },
      scales: { x: { ticks: { autoSkip: true, maxRotation: 0 } }, y: { beginAtZero: true, ticks: { precision: 0 } } },
    };
    const credits = document.querySelector('[data-usage-chart="credits"]');
    if (credits) {
      charts.push(new Chart(credits, {
        type: "bar",
        data: { labels: data.labels, datasets: [
          { label: "Credits", data: data.credits, backgroundColor: color("--accent", "#4f46e5"), yAxisID: "y" },
          { label: "Provider cost (USD)", data: data.cost, type: "line", borderColor: color("--warn", "#b45309"),
            backgroundColor: color("--warn", "#b45309"), pointRadius: data.kind === "time" ? 0 : 3, yAxisID: "usd" },
        ] },
        options: { ...common, scales: { ...common.scales,
          usd: { position: "right", beginAtZero: true, grid: { drawOnChartArea: false } } } },
      }));
    }
    const outcomes = document.querySelector('[data-usage-chart="outcomes"]');
    if (outcomes) {
      charts.push(new Chart(outcomes, {
        type: "bar",
        data: { labels: data.labels, datasets: [
          { label: "Succeeded", data: data.succeeded, backgroundColor: color("--ok", "#15803d") },
          { label: "Failed", data: data.failed, backgroundColor: color("--bad", "#b91c1c") },
        ] },
        options: { ...common, scales: { x: { ...common.scales.x, stacked: true }, y: { ...common.scales.y, stacked: true } } },
      }));
    }
  }

  if (window.htmx) {
    htmx.onLoad(draw); // runs for the first page load too
  } else {
    document.addEventListener("DOMContentLoaded", () => draw());
  }
})();
