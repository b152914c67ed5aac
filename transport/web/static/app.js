// Herald's inbox page. It is a client of the public API like any other:
// REST (/v1/notifications, /v1/preferences) is the source of truth, and the
// live stream (/v1/stream, docs/websocket.md) says what changed since. Every
// delta is applied to whatever the page holds, in the order of its seq; a
// reconnect resumes from the last seq applied, so nothing is reloaded unless
// the server says the page fell too far behind (resync_required).
"use strict";

const TOKEN_KEY = "herald.token";
const PAGE_SIZE = 20;
const TOPIC = "observation/signal/notification/";
const BACKOFF_MIN = 500;
const BACKOFF_MAX = 10000;
// Before its first delta the page does not know its seq, so it reads the
// inbox once the stream is open (anything later then arrives as a delta);
// should the stream not open, it reads it anyway after this long.
const FIRST_LOAD_FALLBACK = 1500;

const root = document.documentElement;
const dev = root.dataset.dev === "true";
const $ = (id) => document.getElementById(id);

class APIError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details || {};
  }
}

const state = {
  token: null,
  filter: "all",
  items: new Map(), // id → item as the API lists it, whatever the filter
  view: [], // ids shown, in the API's order
  next: null, // cursor of the next page of the current filter
  floor: null, // the oldest item loaded while more pages remain
  loaded: false,
  loading: null, // the running reload
  again: false, // another reload was asked for while one ran
  fetching: 0, // REST reads in flight whose answers deltas must follow
  pending: [], // deltas received meanwhile
  expanded: new Set(), // ids whose history is open
  history: new Map(), // id → its history, or the error reading it
  busy: new Set(), // ids with an action in flight
  nodes: new Map(), // id → its <li>
  ws: null,
  connected: false,
  seq: null, // the last seq applied; null before the first
  backoff: BACKOFF_MIN,
  timer: null,
  firstLoad: null,
  stats: { resumes: 0, resumedFrames: 0, resyncs: 0, loads: 0 },
};

// ---- REST ----

// signedOut is what a read answered after its session ended: the answer
// belongs to no one on the page any more, and nobody is told.
const signedOut = () => new APIError(-1, "client.signed_out", "signed out meanwhile");

async function api(method, path, { consistency } = {}) {
  const token = state.token;
  const headers = { Accept: "application/json", Authorization: "Bearer " + token };
  if (consistency) headers["X-Consistency-Token"] = consistency;
  let resp;
  try {
    resp = await fetch(path, { method, headers, cache: "no-store" });
  } catch (err) {
    throw new APIError(0, "network.unreachable", "Herald cannot be reached (" + err.message + ")");
  }
  let body = null;
  const text = await resp.text().catch(() => "");
  if (state.token !== token) throw signedOut();
  if (text) {
    try {
      body = JSON.parse(text);
    } catch {
      // Not the envelope (a proxy's error page, say): reported below by status.
    }
  }
  if (!resp.ok) {
    const e = (body && body.error) || {};
    const err = new APIError(resp.status, e.code || "http." + resp.status, e.message || resp.statusText || "request failed", e.details);
    if (resp.status === 401) signOut(err);
    throw err;
  }
  if (!body || !("data" in body)) throw new APIError(resp.status, "client.bad_answer", "the answer to " + method + " " + path + " is not Herald's envelope");
  return { data: body.data, meta: body.meta || {} };
}

// fetching runs a read whose answer the deltas received meanwhile must be
// applied over: a delta describes a change after something the answer may
// not show yet, and applying deltas in order converges whatever the answer
// showed.
async function fetching(read) {
  state.fetching++;
  try {
    return await read();
  } finally {
    if (--state.fetching === 0) {
      const deltas = state.pending;
      state.pending = [];
      deltas.forEach(apply);
      render();
    }
  }
}

function listPath(cursor) {
  const q = new URLSearchParams({ limit: String(PAGE_SIZE) });
  if (state.filter === "unread") q.set("unread", "true");
  if (state.filter === "archived") q.set("archived", "true");
  if (cursor) q.set("cursor", cursor);
  return "/v1/notifications?" + q;
}

// reload reads the current filter's first page and the unread count.
function reload(opts = {}) {
  if (state.loading) {
    state.again = true;
    return state.loading;
  }
  clearTimeout(state.firstLoad);
  state.stats.loads++;
  state.loading = fetching(async () => {
    const filter = state.filter;
    try {
      const [page, count] = await Promise.all([
        api("GET", listPath(null), opts),
        api("GET", "/v1/notifications/unread-count", opts),
      ]);
      setBadge(count.data.count);
      if (filter !== state.filter) return; // another reload follows
      state.items = new Map(page.data.map((it) => [it.id, it]));
      state.view = page.data.map((it) => it.id);
      setNext(page.meta.next_cursor, page.data);
      state.loaded = true;
    } catch (err) {
      report(err);
    } finally {
      state.loading = null;
      if (state.again || filter !== state.filter) {
        state.again = false;
        reload();
      }
    }
  });
  render();
  return state.loading;
}

async function loadMore() {
  if (!state.next) return;
  const filter = state.filter;
  const button = $("load-more");
  button.disabled = true;
  try {
    await fetching(async () => {
      const page = await api("GET", listPath(state.next));
      if (filter !== state.filter) return;
      for (const it of page.data) {
        state.items.set(it.id, it);
        if (!state.view.includes(it.id)) state.view.push(it.id);
      }
      setNext(page.meta.next_cursor, page.data);
    });
  } catch (err) {
    report(err);
  } finally {
    button.disabled = false;
  }
}

function setNext(cursor, page) {
  state.next = cursor || null;
  // Below the last item loaded lie pages not read yet: a delta about an
  // item there must not show it out of order.
  state.floor = state.next && page.length ? page[page.length - 1] : null;
}

// ensure reads one notification a delta brought into the view.
async function ensure(id) {
  try {
    await fetching(async () => {
      const { data } = await api("GET", "/v1/notifications/" + encodeURIComponent(id));
      if (!state.items.has(id)) state.items.set(id, data);
      reconcile(id);
    });
  } catch (err) {
    report(err);
  }
}

// ---- actions ----

const ACTIONS = { read: "read", unread: "unread", archive: "archive", unarchive: "unarchive" };

async function act(id, action) {
  if (state.busy.has(id)) return;
  state.busy.add(id);
  render();
  try {
    const { data } = await api("POST", "/v1/notifications/" + encodeURIComponent(id) + "/" + action);
    // Connected, the delta says what changed, in order with every other
    // change; otherwise read back this write (the consistency token waits
    // for the inbox to show it) and the count.
    if (!state.connected) await refresh(id, data.position);
  } catch (err) {
    report(err);
  } finally {
    state.busy.delete(id);
    render();
  }
}

async function refresh(id, position) {
  await fetching(async () => {
    const [item, count] = await Promise.all([
      api("GET", "/v1/notifications/" + encodeURIComponent(id), { consistency: position }),
      api("GET", "/v1/notifications/unread-count", { consistency: position }),
    ]);
    state.items.set(id, item.data);
    reconcile(id);
    setBadge(count.data.count);
  });
}

async function readAll() {
  const button = document.querySelector('[data-action="read-all"]');
  button.disabled = true;
  try {
    const { data } = await api("POST", "/v1/notifications/read-all");
    if (!state.connected) await reload({ consistency: data.position });
  } catch (err) {
    report(err);
  } finally {
    button.disabled = false;
  }
}

// ---- deltas ----

function onDelta(frame) {
  if (state.fetching > 0) state.pending.push(frame);
  else {
    apply(frame);
    render();
  }
}

function apply(frame) {
  const kind = frame.topic.startsWith(TOPIC) ? frame.topic.slice(TOPIC.length) : "";
  const data = frame.data || {};
  const it = state.items.get(data.id);
  switch (kind) {
    case "created":
      // The whole notification as it was created: it replaces what a
      // read answered before this delta was applied.
      state.items.set(data.id, data);
      reconcile(data.id);
      break;
    case "read":
    case "unread":
    case "archived":
    case "unarchived":
      if (it) {
        if (kind === "read" || kind === "unread") it.isRead = kind === "read";
        else it.isArchived = kind === "archived";
        reconcile(data.id);
      } else if (entersView(kind)) {
        ensure(data.id);
      }
      if (state.expanded.has(data.id)) loadHistory(data.id);
      break;
    case "read_all":
      for (const item of state.items.values()) item.isRead = true;
      for (const id of [...state.items.keys()]) reconcile(id);
      for (const id of state.expanded) loadHistory(id);
      break;
    case "unread_count":
      setBadge(data.count);
      break;
  }
}

function entersView(kind) {
  switch (state.filter) {
    case "all":
      return kind === "unarchived";
    case "unread":
      return kind === "unread" || kind === "unarchived";
    default:
      return kind === "archived";
  }
}

function matches(it) {
  switch (state.filter) {
    case "all":
      return !it.isArchived;
    case "unread":
      return !it.isRead && !it.isArchived;
    default:
      return it.isArchived;
  }
}

// timeKey splits an RFC 3339 time into milliseconds and the nanoseconds
// below them: the API's times have microseconds, which a Date drops, and
// the two together exceed what a number holds exactly.
function timeKey(s) {
  const frac = /\.(\d+)/.exec(s);
  return [Date.parse(s), frac ? Number((frac[1] + "000000000").slice(3, 9)) : 0];
}

// newer orders as the API does: newest first by createdAt, then by id.
function newer(a, b) {
  const [am, an] = timeKey(a.createdAt);
  const [bm, bn] = timeKey(b.createdAt);
  if (am !== bm) return am > bm;
  if (an !== bn) return an > bn;
  return a.id > b.id;
}

// reconcile shows or hides one item as the filter and the pages loaded say.
function reconcile(id) {
  const it = state.items.get(id);
  const at = state.view.indexOf(id);
  const show = it && matches(it) && (!state.floor || it.id === state.floor.id || newer(it, state.floor));
  if (show && at < 0) {
    let i = 0;
    while (i < state.view.length && newer(state.items.get(state.view[i]), it)) i++;
    state.view.splice(i, 0, id);
  } else if (!show && at >= 0) {
    state.view.splice(at, 1);
  }
}

// ---- the stream ----

function connect() {
  clearTimeout(state.timer);
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  // A browser cannot set the Authorization header of a WebSocket: the
  // token goes as a subprotocol, which the server never echoes.
  let ws;
  try {
    ws = new WebSocket(scheme + "//" + location.host + "/v1/stream", ["herald.v1", "bearer." + state.token]);
  } catch (err) {
    signOut(new APIError(0, "client.bad_token", "this cannot be a token (" + err.message + ")"));
    return;
  }
  const since = state.seq;
  let opened = 0; // when it opened
  state.ws = ws;
  if ($("conn-state").dataset.state !== "reconnecting") setConn("connecting");
  ws.onopen = () => {
    opened = Date.now();
    state.connected = true;
    if (since !== null) {
      // First, before the server starts streaming live deltas.
      ws.send(JSON.stringify({ type: "resume", since }));
      state.stats.resumes++;
    } else {
      // Nothing to resume from (a first connection, or one cut off
      // before its first delta): read the inbox now that every later
      // change comes as a delta.
      reload();
    }
    setConn("connected");
  };
  ws.onmessage = (ev) => onFrame(ws, since !== null, ev.data);
  ws.onclose = (ev) => {
    if (state.ws !== ws) return; // replaced, or signed out
    state.ws = null;
    state.connected = false;
    if (ev.code === 4001) {
      signOut(new APIError(401, "auth.invalid_token", "the stream ended: the token is missing, invalid or expired"));
      return;
    }
    setConn("reconnecting");
    // A session that lasted was healthy: start the backoff over. One the
    // server ended at once (1011, say) counts as a failed attempt.
    if (opened && Date.now() - opened >= 1000) state.backoff = BACKOFF_MIN;
    const delay = state.backoff;
    state.backoff = Math.min(state.backoff * 2, BACKOFF_MAX);
    state.timer = setTimeout(connect, delay);
    // A refused upgrade (401) looks like a network failure from here; a
    // cheap read tells them apart, and api signs out on a 401.
    // Unreachable is what the connection state already says.
    if (!opened) api("GET", "/v1/notifications/unread-count").catch((err) => err.status > 0 && report(err));
  };
}

function onFrame(ws, resumed, text) {
  if (state.ws !== ws) return;
  let f;
  try {
    f = JSON.parse(text);
  } catch {
    report(new APIError(0, "ws.bad_frame", "the stream sent a frame that is not JSON"));
    return;
  }
  switch (f.type) {
    case "event":
      // Ephemeral pushes carry no seq, and no inbox change.
      if (typeof f.seq !== "number") return;
      if (state.seq !== null && f.seq <= state.seq) return; // applied already
      if (state.seq !== null && f.seq !== state.seq + 1) {
        // The server never leaves a gap; should one show, resume from
        // the last delta applied rather than go on with a hole.
        ws.close(4000, "gap in seq");
        return;
      }
      state.seq = f.seq;
      if (resumed) state.stats.resumedFrames++;
      onDelta(f);
      break;
    case "resync_required":
      // Too far behind for a replay: read everything again, and carry
      // on from the seq the server gives.
      state.stats.resyncs++;
      state.seq = f.seq;
      reload();
      break;
    case "error":
      report(new APIError(0, (f.error && f.error.code) || "ws.error", (f.error && f.error.message) || "the stream refused a frame"));
      break;
  }
  renderStats();
}

// ---- history and preferences ----

async function loadHistory(id) {
  let entries;
  try {
    entries = (await api("GET", "/v1/notifications/" + encodeURIComponent(id) + "/history")).data;
  } catch (err) {
    entries = err;
    report(err);
  }
  // Closed meanwhile: keep it closed.
  if (state.expanded.has(id)) state.history.set(id, entries);
  render();
}

function historyPanel(id) {
  const box = el("div", { className: "history", "data-history-for": id });
  const entries = state.history.get(id);
  if (!entries) {
    box.append(el("p", { className: "muted", textContent: "Loading history…" }));
    return box;
  }
  if (entries instanceof Error) {
    box.append(el("p", { className: "muted", textContent: "History unavailable: " + entries.message }));
    return box;
  }
  const table = el("table");
  const head = el("tr");
  for (const h of ["When", "Event", "Stream", "Position"]) head.append(el("th", { textContent: h }));
  table.append(el("thead", {}, head));
  const body = el("tbody");
  for (const e of entries) {
    const row = el("tr", { "data-event-type": e.type });
    row.append(
      el("td", { textContent: new Date(e.recordedAt).toLocaleString(), title: e.recordedAt }),
      el("td", { className: "event", textContent: e.type }),
      el("td", { textContent: e.stream }),
      el("td", { textContent: e.position }),
    );
    body.append(row);
  }
  table.append(body);
  box.append(table);
  return box;
}

async function loadPreferences() {
  const box = $("prefs");
  let prefs = null;
  try {
    prefs = (await api("GET", "/v1/preferences")).data.preferences;
  } catch (err) {
    if (err.status !== 404) {
      box.dataset.state = "error";
      box.replaceChildren(el("p", { className: "muted", textContent: "Preferences unavailable: " + err.message }));
      if (err.status !== 401) report(err);
      return;
    }
  }
  const own = prefs || {};
  const categories = Object.entries(own.categories || {}).sort(([a], [b]) => a.localeCompare(b));
  const quiet = own.quietHours || {};
  if (own.globalSilent === undefined && categories.length === 0 && Object.keys(quiet).length === 0) {
    box.dataset.state = "empty";
    box.replaceChildren(el("p", { className: "muted", textContent: "No preferences set: the tenant's defaults apply." }));
    return;
  }
  box.dataset.state = "set";
  const list = el("dl", { className: "prefs-list" });
  const row = (k, v) => list.append(el("dt", { textContent: k }), el("dd", { textContent: v }));
  if (own.globalSilent !== undefined) row("Silence all", own.globalSilent ? "on" : "off");
  if (Object.keys(quiet).length) {
    row("Quiet hours", (quiet.start || "…") + "–" + (quiet.end || "…"));
    if (quiet.timezone) row("Time zone", quiet.timezone);
    if (quiet.mode) row("While quiet", quiet.mode);
  }
  const parts = [list];
  if (categories.length) {
    const channels = ["app", "push", "email", "sms"];
    const table = el("table", { className: "prefs-table" });
    const head = el("tr", {}, el("th", { textContent: "Category" }));
    for (const c of channels) head.append(el("th", { textContent: c }));
    table.append(el("thead", {}, head));
    const body = el("tbody");
    for (const [name, set] of categories) {
      const tr = el("tr", {}, el("td", { textContent: name }));
      for (const c of channels) {
        const v = set[c];
        tr.append(el("td", { className: v === undefined ? "muted" : v ? "on" : "off", textContent: v === undefined ? "–" : v ? "on" : "off" }));
      }
      body.append(tr);
    }
    table.append(body);
    parts.push(table);
  }
  box.replaceChildren(...parts);
}

// ---- rendering ----

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === "className" || k === "textContent" || k === "title" || k === "type" || k === "href") node[k] = v;
    else node.setAttribute(k, v);
  }
  node.append(...children);
  return node;
}

function setBadge(n) {
  const badge = $("unread-badge");
  badge.textContent = n > 99 ? "99+" : String(n);
  badge.dataset.count = String(n);
  badge.classList.toggle("zero", n === 0);
  document.title = n > 0 ? "(" + n + ") Herald inbox" : "Herald inbox";
}

function setConn(s) {
  const conn = $("conn-state");
  conn.dataset.state = s;
  conn.querySelector(".conn-label").textContent =
    { connecting: "Connecting…", connected: "Live", reconnecting: "Reconnecting…", idle: "Not connected" }[s] || s;
  renderStats();
}

function renderStats() {
  const conn = $("conn-state");
  conn.dataset.seq = state.seq === null ? "" : String(state.seq);
  conn.dataset.resumes = String(state.stats.resumes);
  conn.dataset.resumedFrames = String(state.stats.resumedFrames);
  conn.dataset.resyncs = String(state.stats.resyncs);
  $("stat-seq").textContent = state.seq === null ? "–" : String(state.seq);
  $("stat-resumes").textContent = state.stats.resumes + (state.stats.resumes === 1 ? " time" : " times");
  $("stat-resyncs").textContent = String(state.stats.resyncs);
}

function ago(iso) {
  const s = Math.round((Date.now() - Date.parse(iso)) / 1000);
  if (s < 45) return "just now";
  const m = Math.round(s / 60);
  if (m < 60) return m + " min ago";
  const h = Math.round(m / 60);
  if (h < 24) return h + " h ago";
  return new Date(iso).toLocaleDateString(undefined, { day: "numeric", month: "short", year: "numeric" });
}

function safeURL(u) {
  try {
    const url = new URL(u, location.href);
    return url.protocol === "https:" || url.protocol === "http:" ? url.href : null;
  } catch {
    return null;
  }
}

function itemNode(it) {
  const li = el("li", { className: "item", "data-notification-id": it.id });
  const actions = el("div", { className: "actions" });
  const add = (action, label) => actions.append(el("button", { type: "button", "data-action": action, textContent: label }));
  if (it.isRead) add("unread", "Mark unread");
  else add("read", "Mark read");
  if (it.isArchived) add("unarchive", "Unarchive");
  else add("archive", "Archive");
  const open = state.expanded.has(it.id);
  actions.append(el("button", { type: "button", "data-action": "history", "aria-expanded": String(open), textContent: "History" }));
  if (state.busy.has(it.id)) actions.querySelectorAll("button").forEach((b) => (b.disabled = true));

  const time = el("time", { datetime: it.createdAt, title: new Date(it.createdAt).toLocaleString(), textContent: ago(it.createdAt) });
  const body = el("div", { className: "item-body" },
    el("div", { className: "item-meta" }, el("span", { className: "type", textContent: it.type }), time),
    el("p", { className: "content", textContent: it.content || "(no content)" }));
  const href = it.actionUrl ? safeURL(it.actionUrl) : null;
  if (href) body.append(el("a", { className: "open-link", href, target: "_blank", rel: "noopener noreferrer", textContent: "Open ↗" }));
  li.append(el("span", { className: "dot", "aria-hidden": "true" }), body, actions);
  if (open) li.append(historyPanel(it.id));
  li.dataset.read = String(!!it.isRead);
  li.dataset.archived = String(!!it.isArchived);
  return li;
}

// render rebuilds each item's node when what it shows changed, and keeps
// the others, so that focus and the node a click is aimed at stay put.
function render() {
  const list = $("inbox");
  const shown = new Set(state.view);
  for (const [id, node] of state.nodes) {
    if (!shown.has(id)) {
      node.remove();
      state.nodes.delete(id);
    }
  }
  let prev = null;
  for (const id of state.view) {
    const it = state.items.get(id);
    const sig = JSON.stringify([it, state.expanded.has(id), state.busy.has(id), state.history.get(id) ?? null, ago(it.createdAt)]);
    let node = state.nodes.get(id);
    if (!node || node.dataset.sig !== sig) {
      const fresh = itemNode(it);
      fresh.dataset.sig = sig;
      if (node) node.replaceWith(fresh);
      node = fresh;
      state.nodes.set(id, node);
    }
    const want = prev ? prev.nextSibling : list.firstChild;
    if (want !== node) list.insertBefore(node, want);
    prev = node;
  }
  list.dataset.loads = String(state.stats.loads);
  list.dataset.loaded = String(state.loaded && !state.loading);
  const empty = $("empty");
  empty.hidden = state.view.length > 0 || !state.loaded;
  empty.textContent = { all: "Your inbox is empty.", unread: "No unread notifications.", archived: "Nothing archived." }[state.filter];
  $("load-more").hidden = !state.next;
  for (const b of document.querySelectorAll("[data-filter]")) b.setAttribute("aria-pressed", String(b.dataset.filter === state.filter));
}

// ---- errors and sign-in ----

function report(err) {
  // signOut told the user of a 401 already.
  if (err instanceof APIError && (err.status === 401 || err.status === -1)) return;
  $("error-code").textContent = err.code || "error";
  $("error-message").textContent = err.message;
  $("error").hidden = false;
}

function claims(token) {
  try {
    const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part + "=".repeat((4 - (part.length % 4)) % 4)));
  } catch {
    return {};
  }
}

function open(token) {
  state.token = token;
  const c = claims(token);
  $("who-sub").textContent = c.preferred_username || c.sub || "unknown user";
  $("who-tenant").textContent = c.organizer_id || c.tenant || "";
  $("who-tenant").hidden = !$("who-tenant").textContent;
  $("who-avatar").textContent = ($("who-sub").textContent[0] || "?").toUpperCase();
  $("who").hidden = false;
  $("picker").hidden = true;
  $("paste").hidden = true;
  $("app").hidden = false;
  connect();
  if (!state.token) return; // the token could not even be sent
  state.firstLoad = setTimeout(() => state.loaded || reload(), FIRST_LOAD_FALLBACK);
  loadPreferences();
  render();
}

function signOut(reason) {
  endSession();
  showSignIn(reason ? "Signed out: " + (reason.code ? reason.code + ": " : "") + reason.message : "");
}

function endSession() {
  sessionStorage.removeItem(TOKEN_KEY);
  const ws = state.ws;
  state.ws = null;
  state.connected = false;
  if (ws) ws.close(1000, "signed out");
  clearTimeout(state.timer);
  clearTimeout(state.firstLoad);
  Object.assign(state, { token: null, items: new Map(), view: [], next: null, floor: null, loaded: false, seq: null, pending: [], backoff: BACKOFF_MIN });
  state.expanded.clear();
  state.history.clear();
  $("app").hidden = true;
  $("who").hidden = true;
  $("error").hidden = true;
  setConn("idle");
  render();
}

function showSignIn(message) {
  const box = dev ? "picker" : "paste";
  $(box).hidden = false;
  const msg = $(box + "-message");
  msg.textContent = message;
  msg.hidden = !message;
  (dev ? $("picker-sub") : $("paste-token")).focus();
}

async function pick(ev) {
  ev.preventDefault();
  const button = ev.submitter || document.querySelector('[data-action="pick"]');
  button.disabled = true;
  // Reading the inbox and preferences of the token's own user needs no
  // permission code: only another user's data would.
  const req = { sub: $("picker-sub").value.trim(), tenant: $("picker-tenant").value.trim(), permissions: [] };
  try {
    const resp = await fetch("/dev/token", {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify(req),
    });
    const body = await resp.json().catch(() => null);
    if (!resp.ok || !body || !body.data) {
      const e = (body && body.error) || {};
      const fields = e.details && e.details.fields ? " (" + Object.entries(e.details.fields).map(([k, v]) => k + " " + v).join("; ") + ")" : "";
      throw new APIError(resp.status, e.code || "http." + resp.status, (e.message || "the token endpoint refused") + fields);
    }
    if (location.pathname === "/inbox") {
      sessionStorage.setItem(TOKEN_KEY, body.data.token);
      open(body.data.token);
    } else {
      location.assign("/inbox#token=" + encodeURIComponent(body.data.token));
    }
  } catch (err) {
    const msg = $("picker-message");
    msg.textContent = (err.code ? err.code + ": " : "") + err.message;
    msg.hidden = false;
  } finally {
    button.disabled = false;
  }
}

function usePasted(ev) {
  ev.preventDefault();
  const token = $("paste-token").value.trim().replace(/^Bearer\s+/i, "");
  if (!token) return;
  $("paste-token").value = "";
  sessionStorage.setItem(TOKEN_KEY, token);
  open(token);
}

// ---- wiring ----

function wire() {
  $("picker-form").addEventListener("submit", pick);
  $("paste-form").addEventListener("submit", usePasted);
  document.addEventListener("click", (ev) => {
    const target = ev.target.closest("[data-action], [data-filter]");
    if (!target || target.disabled) return;
    if (target.dataset.filter) {
      if (target.dataset.filter === state.filter) return;
      state.filter = target.dataset.filter;
      state.view = [];
      state.next = null;
      state.floor = null;
      state.loaded = false;
      reload();
      return;
    }
    const id = target.closest("[data-notification-id]")?.dataset.notificationId;
    const action = target.dataset.action;
    if (id && ACTIONS[action]) act(id, ACTIONS[action]);
    else if (id && action === "history") {
      if (state.expanded.delete(id)) state.history.delete(id);
      else {
        state.expanded.add(id);
        loadHistory(id);
      }
      render();
    } else if (action === "read-all") readAll();
    else if (action === "load-more") loadMore();
    else if (action === "dismiss-error") $("error").hidden = true;
    else if (action === "sign-out") signOut(null);
  });
  // The relative times age.
  setInterval(() => state.token && render(), 30000);
  // Back online: try at once rather than wait out the backoff.
  window.addEventListener("online", () => {
    if (state.token && !state.ws) {
      state.backoff = BACKOFF_MIN;
      connect();
    }
  });
}

function start() {
  wire();
  $("picker-tenant").value = root.dataset.devTenant || "";
  renderStats();
  takeFragmentToken();
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (dev && location.pathname === "/") showSignIn("");
  else if (token) open(token);
  else showSignIn("");
  // A link with a token opened in this tab while the page is shown.
  window.addEventListener("hashchange", () => {
    const token = location.pathname === "/inbox" && takeFragmentToken();
    if (!token) return;
    endSession();
    sessionStorage.setItem(TOKEN_KEY, token);
    open(token);
  });
}

// takeFragmentToken keeps a token handed over in the URL fragment (by the
// picker, or in a link an operator made), which never reaches a server: in
// this tab's storage only, and out of the address bar, so that it is not
// bookmarked, shared or kept in the history.
function takeFragmentToken() {
  const fragment = new URLSearchParams(location.hash.slice(1));
  const token = fragment.get("token");
  if (!token) return null;
  history.replaceState(null, "", location.pathname + location.search);
  sessionStorage.setItem(TOKEN_KEY, token);
  return token;
}

start();
