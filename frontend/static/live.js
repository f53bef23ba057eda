// live.js: one EventSource per page on /api/v1/events. The browser
// reconnects by itself and sends Last-Event-ID, and the server replays what
// was missed; when it cannot (the id is too old, the server restarted
// without it), it sends a fresh "hello" and the page reloads its state.

const indicator = () => document.getElementById("live");

function showState(text, on) {
  const el = indicator();
  if (!el) return;
  el.textContent = text;
  el.className = "live " + (on ? "on" : "off");
}

// follow opens the stream for one challenge ("" for all) and calls
// handlers[eventType](data, event). It returns a function that closes it.
export function follow(challenge, handlers) {
  let source = null;
  let retry = null;
  let closed = false;
  const url = "/api/v1/events" + (challenge ? "?challenge=" + encodeURIComponent(challenge) : "");

  function open() {
    source = new EventSource(url);
    source.onopen = () => showState("live", true);
    source.onerror = () => {
      if (closed) return;
      if (source.readyState === EventSource.CLOSED) {
        // The server refused the stream (an error answer): try again
        // from scratch in a while.
        showState("offline — retrying", false);
        retry = setTimeout(open, 5000);
      } else {
        showState("reconnecting…", false);
      }
    };
    for (const type of ["hello", "backlog", "submission", "progress", "leaderboard", "reveal", "final"]) {
      source.addEventListener(type, (ev) => {
        const handler = handlers[type];
        if (!handler) return;
        let data;
        try { data = JSON.parse(ev.data); } catch { return; }
        handler(data, ev);
      });
    }
  }
  open();
  return () => {
    closed = true;
    clearTimeout(retry);
    if (source) source.close();
  };
}
