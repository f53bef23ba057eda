// app.js: the spectator page. Three views behind the URL fragment:
//   #/                 every challenge: time left, teams, current leader
//   #/c/<slug>         a challenge: description, public board, private board
//                      after the reveal, live submission feed, score chart
//   #/team/<name>      a team's submission history
// Each view follows the event stream and updates in place.

import { Board, formatResources } from "./board.js";
import { drawChart } from "./chart.js";
import { el, formatScore, formatTime, getJSON, tickTimes, timeLeft } from "./dom.js";
import { follow } from "./live.js";

const main = document.getElementById("main");
let leave = () => {};

function route() {
  leave();
  const hash = decodeURIComponent(location.hash.replace(/^#\/?/, ""));
  const [kind, ...rest] = hash.split("/");
  const arg = rest.join("/");
  if (kind === "c" && arg) leave = challengeView(arg);
  else if (kind === "team" && arg) leave = teamView(arg);
  else leave = listView();
  main.focus({ preventScroll: true });
}

function fail(err) {
  main.replaceChildren(el("p", { class: "error", role: "alert" }, `Could not load: ${err.message}`),
    el("p", {}, el("a", { href: "#/" }, "Back to the challenges")));
}

// debounce runs fn at most once per wait, after the calls stop.
function debounce(fn, wait) {
  let timer = null;
  return () => { clearTimeout(timer); timer = setTimeout(fn, wait); };
}

function listView() {
  document.title = "Hackarena — live leaderboards";
  const list = el("ul", { class: "cards", id: "challenges" });
  main.replaceChildren(el("h1", {}, "Challenges"), list);
  async function load() {
    try {
      const { challenges } = await getJSON("/api/v1/challenges");
      list.replaceChildren(...challenges.map((ch) => el("li", { class: "card", "data-slug": ch.slug },
        el("h2", {}, el("a", { href: "#/c/" + encodeURIComponent(ch.slug) }, ch.title)),
        el("dl", {},
          el("dt", {}, "Task"), el("dd", {}, `${ch.task} (${ch.input})`),
          el("dt", {}, "Time"), el("dd", { "data-closes": ch.closes_at ?? "" }, ch.status === "open" ? timeLeft(ch.closes_at) : ch.status),
          el("dt", {}, "Teams"), el("dd", {}, String(ch.teams ?? 0)),
          el("dt", {}, "Leader"), el("dd", { class: "leader" }, ch.leader ? `${ch.leader.team} — ${formatScore(ch.leader.score)} ${ch.primary_metric}` : "nobody yet"),
        ))));
    } catch (err) { fail(err); }
  }
  load();
  const reload = debounce(load, 300);
  const stop = follow("", { hello: load, submission: reload, leaderboard: reload, reveal: reload });
  const tick = setInterval(() => tickTimes(list), 1000);
  return () => { stop(); clearInterval(tick); };
}

function challengeView(slug) {
  const state = { ch: null, history: [], loaded: false, publicRanks: new Map() };
  const title = el("h1", {}, slug);
  const meta = el("p", { class: "muted" });
  const description = el("details", { class: "description" }, el("summary", {}, "About this challenge"));
  const publicBox = el("section", { id: "public-board", "aria-labelledby": "public-h" });
  const privateBox = el("section", { id: "private-board", "aria-labelledby": "private-h", hidden: true });
  const barredBox = el("section", { id: "disqualified", "aria-labelledby": "disqualified-h", hidden: true });
  const feed = el("ol", { class: "feed", id: "feed", "aria-live": "polite", "aria-relevant": "additions" });
  const chart = el("figure", { class: "chart", id: "chart" });
  main.replaceChildren(title, meta, description,
    el("div", { class: "grid" },
      el("div", {}, el("h2", { id: "public-h" }, "Public leaderboard"), publicBox,
        el("div", {}, el("h2", { id: "private-h", hidden: true }, "Private leaderboard"), privateBox), barredBox),
      el("div", {}, el("h2", {}, "Live submissions"), feed, el("h2", {}, "Score over time"), chart)));
  let publicBoard = null;

  async function loadAll() {
    try {
      const [{ challenge: ch }, lb, hist] = await Promise.all([
        getJSON(`/api/v1/challenges/${encodeURIComponent(slug)}`),
        getJSON(`/api/v1/challenges/${encodeURIComponent(slug)}/leaderboard`),
        getJSON(`/api/v1/challenges/${encodeURIComponent(slug)}/history`),
      ]);
      state.ch = ch;
      document.title = `${ch.title} — Hackarena`;
      title.textContent = ch.title;
      meta.replaceChildren(`${ch.task} · ranked by ${ch.primary_metric} (${ch.higher_is_better ? "higher" : "lower"} is better) · `,
        el("span", { "data-closes": ch.closes_at ?? "" }, ch.status === "open" ? timeLeft(ch.closes_at) : ch.status));
      const body = el("div");
      body.innerHTML = ch.description_html; // rendered and sanitized by the server
      description.replaceChildren(description.firstChild, body);
      publicBoard = new Board(`Best public ${ch.primary_metric} per team`, ch.primary_metric);
      publicBox.replaceChildren(publicBoard.table);
      showPublic(lb.entries);
      showDisqualified(lb.disqualified ?? []);
      state.barred = (lb.disqualified ?? []).map((d) => d.team).sort().join("\n");
      state.history = hist.points;
      drawChart(chart, state.history, ch.primary_metric, ch.higher_is_better);
      state.loaded = true;
      await loadPrivate();
    } catch (err) { fail(err); }
  }

  // Teams the organizers disqualified are on neither board: say who and
  // why, so no one wonders where a team went.
  function showDisqualified(list) {
    barredBox.hidden = list.length === 0;
    barredBox.replaceChildren(el("h2", { id: "disqualified-h" }, "Disqualified"),
      el("ul", {}, ...list.map((d) => el("li", { "data-team": d.team },
        el("a", { href: "#/team/" + encodeURIComponent(d.team) }, d.team), ` — ${d.reason}`))));
  }

  async function loadDisqualified() {
    try {
      const { disqualified } = await getJSON(`/api/v1/challenges/${encodeURIComponent(slug)}/disqualifications`);
      const barred = disqualified.map((d) => d.team).sort().join("\n");
      showDisqualified(disqualified);
      if (barred === state.barred) return;
      // The chart draws only what ranks: fetch it again without them.
      state.barred = barred;
      state.history = (await getJSON(`/api/v1/challenges/${encodeURIComponent(slug)}/history`)).points;
      drawChart(chart, state.history, state.ch.primary_metric, state.ch.higher_is_better);
    } catch (err) { fail(err); }
  }

  function showPublic(entries) {
    state.publicRanks = new Map(entries.map((e) => [e.team, e.rank]));
    publicBoard.render(entries);
  }

  async function loadPrivate() {
    try {
      const lb = await getJSON(`/api/v1/challenges/${encodeURIComponent(slug)}/leaderboard?board=private`);
      const board = new Board(`Final standings on the private test set (change against the public board)`,
        state.ch.primary_metric, { compareTo: state.publicRanks });
      board.render(lb.entries);
      privateBox.replaceChildren(board.table);
      privateBox.hidden = false;
      document.getElementById("private-h").hidden = false;
    } catch (err) {
      if (err.status !== 403) throw err; // hidden until the reveal
    }
  }

  const items = new Map();
  function addToFeed(ev) {
    const score = ev.public?.[state.ch?.primary_metric] ?? (ev.public ? Object.values(ev.public)[0] : undefined);
    const when = ev.finished_at ?? ev.queued_at;
    const li = el("li", { "data-submission": ev.id },
      el("time", { datetime: when }, formatTime(when)),
      el("a", { href: "#/team/" + encodeURIComponent(ev.team) }, ev.team),
      el("span", { class: "badge " + ev.status }, ev.status + (ev.reason ? `: ${ev.reason}` : "")),
      score !== undefined ? el("span", { class: "num" }, formatScore(score)) : null);
    const old = items.get(ev.id);
    if (old) old.replaceWith(li); else feed.prepend(li);
    items.set(ev.id, li);
    while (feed.children.length > 50) {
      items.delete(feed.lastElementChild.dataset.submission);
      feed.lastElementChild.remove();
    }
  }

  const stop = follow(slug, {
    hello: (data) => { if (!state.loaded || data.reset) loadAll(); },
    backlog: addToFeed,
    submission: (ev) => {
      addToFeed(ev);
      if (ev.status === "scored" && state.loaded && !state.history.some((p) => p.submission_id === ev.id)) {
        const score = ev.public?.[state.ch.primary_metric];
        if (score !== undefined) {
          state.history.push({ team: ev.team, submission_id: ev.id, at: ev.finished_at, score });
          drawChart(chart, state.history, state.ch.primary_metric, state.ch.higher_is_better);
        }
      }
    },
    // How far a running submission has got: its feed line shows the share
    // of the hidden examples answered.
    progress: (ev) => {
      const li = items.get(ev.id);
      if (li && !li.querySelector(".badge.running")) return; // final already
      if (!li) addToFeed({ id: ev.id, team: ev.team, status: "running", queued_at: new Date().toISOString() });
      const badge = items.get(ev.id).querySelector(".badge");
      const pct = ev.total > 0 ? Math.floor((100 * ev.done) / ev.total) : 0;
      badge.textContent = `running ${pct}%`;
      badge.dataset.progress = String(pct);
    },
    leaderboard: (data) => {
      if (!state.loaded) return;
      showPublic(data.entries);
      if (!privateBox.hidden) loadPrivate();
      loadDisqualified(); // a disqualification changes the board too
    },
    reveal: () => { if (state.loaded) loadPrivate(); },
  });
  const tick = setInterval(() => tickTimes(meta), 1000);
  return () => { stop(); clearInterval(tick); };
}

function teamView(name) {
  document.title = `${name} — Hackarena`;
  const rows = el("tbody");
  const people = el("ul", { id: "team-members", class: "members" });
  const barred = el("div", { id: "team-disqualified" });
  main.replaceChildren(el("h1", {}, name), barred, el("h2", {}, "Members"), people, el("h2", {}, "Submissions"),
    el("table", { id: "team-submissions" },
      el("caption", {}, "Newest first; private scores appear once a challenge is revealed. Only a team's finals count on the private board."),
      el("thead", {}, el("tr", {}, ...["When", "Challenge", "Status", "Public", "Private", "Run", "Final"].map((h) => el("th", { scope: "col" }, h)))),
      rows));
  async function load() {
    try {
      const [{ submissions }, { team }] = await Promise.all([
        getJSON(`/api/v1/teams/${encodeURIComponent(name)}/submissions`),
        getJSON(`/api/v1/teams/${encodeURIComponent(name)}`),
      ]);
      people.replaceChildren(...team.members.map((m) => el("li", { "data-member": m.name }, m.name,
        m.captain ? el("span", { class: "badge captain" }, "captain") : null)));
      barred.replaceChildren(...team.disqualified.map((d) => el("p", { class: "disqualified", role: "status" },
        `Disqualified from ${d.challenge} on ${formatTime(d.at)}: ${d.reason}`)));
      const scores = (m) => (m ? Object.entries(m).map(([k, v]) => `${k} ${formatScore(v)}`).join(", ") : "");
      rows.replaceChildren(...submissions.map((s) => el("tr", {},
        el("td", {}, el("time", { datetime: s.queued_at }, formatTime(s.queued_at))),
        el("td", {}, el("a", { href: "#/c/" + encodeURIComponent(s.challenge) }, s.challenge)),
        el("td", {}, el("span", { class: "badge " + s.status }, s.status + (s.reason ? `: ${s.reason}` : "")),
          s.excluded ? el("span", { class: "badge excluded", title: s.excluded.reason }, "excluded: " + s.excluded.reason) : null),
        el("td", { class: "num" }, scores(s.public)),
        el("td", { class: "num" }, scores(s.private)),
        el("td", { class: "run" }, formatResources(s.resources)),
        el("td", {}, s.final ? el("span", { class: "badge final", title: s.final === "selected" ? "selected by the team" : "its best by public score (the team selected none)" }, s.final === "selected" ? "final" : "final (default)") : ""))));
      if (submissions.length === 0) rows.replaceChildren(el("tr", {}, el("td", { colspan: "7", class: "muted" }, "No submissions yet.")));
    } catch (err) { fail(err); }
  }
  load();
  const reload = debounce(load, 300);
  return follow("", {
    submission: (ev) => { if (ev.team === name) reload(); },
    final: (ev) => { if (ev.team === name) reload(); },
    leaderboard: reload, // a disqualification or exclusion
    reveal: reload,
  });
}

addEventListener("hashchange", route);
route();
