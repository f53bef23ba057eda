// dom.js: small helpers to build elements safely (text is always set as
// text, never parsed as HTML) and to format what the page shows.

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === true) node.setAttribute(k, "");
    else if (v !== null && v !== undefined && v !== "" && v !== false) node.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : String(c));
  }
  return node;
}

export async function getJSON(path) {
  const resp = await fetch(path, { headers: { Accept: "application/json" } });
  const body = await resp.json().catch(() => ({}));
  if (!resp.ok) {
    const err = new Error(body?.error?.message || `${path}: HTTP ${resp.status}`);
    err.status = resp.status;
    throw err;
  }
  return body;
}

export function formatScore(v) {
  if (typeof v !== "number" || !isFinite(v)) return "—";
  return Math.abs(v) >= 1000 ? v.toFixed(1) : v.toFixed(4);
}

export function formatTime(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  const sameDay = d.toDateString() === new Date().toDateString();
  return sameDay ? d.toLocaleTimeString() : d.toLocaleString();
}

// timeLeft says how long until iso, in words a room can read.
export function timeLeft(iso) {
  if (!iso) return "no deadline";
  let s = Math.round((new Date(iso) - Date.now()) / 1000);
  if (s <= 0) return "closed";
  const d = Math.floor(s / 86400); s -= d * 86400;
  const h = Math.floor(s / 3600); s -= h * 3600;
  const m = Math.floor(s / 60); s -= m * 60;
  if (d > 0) return `${d}d ${h}h left`;
  if (h > 0) return `${h}h ${m}m left`;
  return `${m}m ${String(s).padStart(2, "0")}s left`;
}

// tickTimes keeps every [data-closes] element's countdown current.
export function tickTimes(root) {
  for (const node of root.querySelectorAll("[data-closes]")) {
    node.textContent = timeLeft(node.dataset.closes);
  }
}
