// board.js: a leaderboard table whose rows slide to their new place when
// ranks change (FLIP: measure, reorder, animate the difference).

import { el, formatScore, formatTime } from "./dom.js";

// Board renders entries ({rank, team, score, submissions, submitted_at})
// into a table, reusing each team's row so it can move.
export class Board {
  constructor(caption, metric, { compareTo = null } = {}) {
    this.metric = metric;
    this.compareTo = compareTo; // team -> rank on another board
    this.rows = new Map();
    this.body = el("tbody");
    const head = ["#", "Team", metric, "Run", "Entries", "Submitted"];
    const wide = new Set(["Run", "Entries", "Submitted"]); // left out on narrow screens
    if (compareTo) head.splice(1, 0, "Change");
    this.table = el("table", { class: "board" },
      el("caption", {}, caption),
      el("thead", {}, el("tr", {}, ...head.map((h) =>
        el("th", { scope: "col", class: (h === metric || h === "Entries" ? "num " : "") + (wide.has(h) ? "wide" : "") }, h)))),
      this.body);
  }

  render(entries) {
    const before = new Map();
    for (const [team, row] of this.rows) before.set(team, row.getBoundingClientRect().top);
    const seen = new Set();
    const ordered = entries.map((e) => {
      seen.add(e.team);
      let row = this.rows.get(e.team);
      const fresh = !row;
      if (fresh) {
        row = el("tr", { "data-team": e.team });
        this.rows.set(e.team, row);
      }
      const changed = fresh || row.dataset.score !== String(e.score);
      row.dataset.score = String(e.score);
      row.className = "rank-" + e.rank;
      const cells = [
        el("td", { class: "num" }, String(e.rank)),
        el("td", {}, el("a", { href: "#/team/" + encodeURIComponent(e.team) }, e.team)),
        scoreCell(e),
        el("td", { class: "wide run" }, formatResources(e.resources)),
        el("td", { class: "num wide" }, String(e.submissions ?? "")),
        el("td", { class: "wide" }, el("time", { datetime: e.submitted_at }, formatTime(e.submitted_at))),
      ];
      if (this.compareTo) cells.splice(1, 0, changeCell(this.compareTo.get(e.team), e.rank));
      row.replaceChildren(...cells);
      if (changed && before.size > 0) flash(row);
      return row;
    });
    for (const [team, row] of this.rows) {
      if (!seen.has(team)) { row.remove(); this.rows.delete(team); }
    }
    if (ordered.length === 0) {
      this.body.replaceChildren(el("tr", {}, el("td", { colspan: "7", class: "muted" }, "No scored submissions yet.")));
      return;
    }
    this.body.replaceChildren(...ordered);
    animateMoves(ordered, before);
  }
}

// scoreCell is the score with its 95% bootstrap interval, marked when a
// paired comparison on the same resamples cannot tell it from the
// leader's.
function scoreCell(e) {
  const cell = el("td", { class: "num" }, formatScore(e.score));
  if (e.interval) {
    cell.append(el("span", { class: "interval" }, ` ${formatScore(e.interval[0])}–${formatScore(e.interval[1])}`));
    cell.title = "95% bootstrap interval";
  }
  if (e.tied_with_leader) {
    cell.append(el("span", { class: "badge tied", title: "not told apart from the leader by a paired bootstrap (95%)" }, "≈ 1st"));
  }
  return cell;
}

// formatResources is a run's cost in a few words: judging time, examples
// a second, peak memory.
export function formatResources(r) {
  if (!r) return "";
  const parts = [`${r.judging_seconds.toFixed(1)} s`, `${Math.round(r.examples_per_second)}/s`];
  if (r.peak_memory_bytes) parts.push(`${Math.round(r.peak_memory_bytes / 1048576)} MiB`);
  return parts.join(" · ");
}

function changeCell(otherRank, rank) {
  if (otherRank === undefined) return el("td", { class: "muted" }, "new");
  const d = otherRank - rank;
  if (d === 0) return el("td", { class: "muted", "aria-label": "no change" }, "=");
  return el("td", { class: d > 0 ? "up" : "down", "aria-label": (d > 0 ? "up " : "down ") + Math.abs(d) },
    (d > 0 ? "▲" : "▼") + Math.abs(d));
}

// flash and the moves use the Web Animations API: each animation ends by
// itself, whatever else re-renders the row meanwhile.
function reducedMotion() {
  return matchMedia("(prefers-reduced-motion: reduce)").matches;
}

function flash(row) {
  if (reducedMotion()) return;
  const color = getComputedStyle(document.documentElement).getPropertyValue("--flash").trim();
  row.animate([{ backgroundColor: color }, { backgroundColor: "transparent" }], { duration: 1500, easing: "ease-out" });
}

function animateMoves(rows, before) {
  if (reducedMotion()) return;
  for (const row of rows) {
    const old = before.get(row.dataset.team);
    if (old === undefined) continue;
    const delta = old - row.getBoundingClientRect().top;
    if (Math.abs(delta) < 1) continue;
    row.animate([{ transform: `translateY(${delta}px)` }, { transform: "none" }], { duration: 450, easing: "ease-out" });
  }
}
