// chart.js: the score of the top teams over time, drawn as SVG. Each line
// is a team's best public score so far, stepping up (or down, when lower
// is better) at each submission that improved it.

import { el, formatScore } from "./dom.js";

const NS = "http://www.w3.org/2000/svg";
const W = 800, H = 320, PAD = { l: 64, r: 16, t: 16, b: 36 };

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  for (const c of children) node.append(c);
  return node;
}

function colors() {
  const raw = getComputedStyle(document.documentElement).getPropertyValue("--series");
  return raw.split(",").map((c) => c.trim()).filter(Boolean);
}

// bestSoFar turns points ({team, at, score}) into each team's running best.
function bestSoFar(points, higherIsBetter) {
  const better = (a, b) => (higherIsBetter ? a > b : a < b);
  const teams = new Map();
  for (const p of [...points].sort((a, b) => new Date(a.at) - new Date(b.at))) {
    const series = teams.get(p.team) ?? [];
    const last = series[series.length - 1];
    if (!last || better(p.score, last.score)) series.push({ at: new Date(p.at), score: p.score });
    teams.set(p.team, series);
  }
  return teams;
}

// drawChart fills container with the chart of the top n teams.
export function drawChart(container, points, metric, higherIsBetter, n = 5) {
  const teams = bestSoFar(points, higherIsBetter);
  const final = (s) => s[s.length - 1].score;
  const top = [...teams.entries()]
    .sort((a, b) => (higherIsBetter ? final(b[1]) - final(a[1]) : final(a[1]) - final(b[1])))
    .slice(0, n);
  if (top.length === 0) {
    container.replaceChildren(el("p", { class: "muted" }, "The chart starts with the first scored submission."));
    return;
  }
  const all = top.flatMap(([, s]) => s);
  const first = Math.min(...all.map((p) => p.at));
  const last = Math.max(Date.now(), ...all.map((p) => p.at));
  // Pad both axes so a point never sits on the frame, even when all came
  // within a second.
  const tpad = Math.max((last - first) * 0.05, 5000);
  const t0 = first - tpad, t1 = last + tpad;
  let y0 = Math.min(...all.map((p) => p.score)), y1 = Math.max(...all.map((p) => p.score));
  const ypad = Math.max((y1 - y0) * 0.08, Math.abs(y1) * 0.01, 1e-3);
  y0 -= ypad; y1 += ypad;
  const x = (t) => PAD.l + ((t - t0) / (t1 - t0)) * (W - PAD.l - PAD.r);
  const y = (v) => PAD.t + (1 - (v - y0) / (y1 - y0)) * (H - PAD.t - PAD.b);
  const palette = colors();
  const lines = top.flatMap(([team, series], i) => {
    const color = palette[i % palette.length];
    let d = "";
    series.forEach((p, j) => {
      d += j === 0 ? `M${x(p.at)},${y(p.score)}` : `H${x(p.at)}V${y(p.score)}`;
    });
    d += `H${x(last)}`;
    const title = svg("title", {}, `${team}: ${formatScore(final(series))}`);
    return [svg("path", { d, fill: "none", stroke: color, "stroke-width": 3 }, title),
      ...series.map((p) => svg("circle", { cx: x(p.at), cy: y(p.score), r: 5, fill: color }))];
  });
  const axes = [
    svg("line", { class: "axis", x1: PAD.l, y1: H - PAD.b, x2: W - PAD.r, y2: H - PAD.b }),
    svg("line", { class: "axis", x1: PAD.l, y1: PAD.t, x2: PAD.l, y2: H - PAD.b }),
    ...[y0 + ypad, y1 - ypad].map((v) =>
      svg("text", { x: PAD.l - 6, y: y(v) + 4, "text-anchor": "end" }, formatScore(v))),
    svg("text", { x: x(first), y: H - 10 }, new Date(first).toLocaleTimeString()),
  ];
  if (x(last) - x(first) > 160) axes.push(svg("text", { x: x(last), y: H - 10, "text-anchor": "end" }, "now"));
  const label = `Best public ${metric} over time of the top ${top.length} teams`;
  const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": label }, ...axes, ...lines);
  const legend = el("ul", { class: "legend" }, ...top.map(([team, series], i) => {
    const swatch = el("span", { class: "swatch" });
    swatch.style.background = palette[i % palette.length]; // CSSOM: allowed by the page's CSP
    return el("li", {}, swatch, `${team} ${formatScore(final(series))}`);
  }));
  container.replaceChildren(chart, legend);
}
