// ThreadDesk front end: one ES module, no framework, no build step.
// Pages are server-rendered (askama); this adds keyboard triage, optimistic actions, the live
// stream and small comforts. Routes and the CSRF token come from the page (data-* on <body>,
// <meta name="csrf-token">). No inline scripts or styles (strict CSP).

const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));
const body = document.body;
const PAGE = body.dataset.page || "plain";
const API = body.dataset.api || "/api/v1";
const ME = body.dataset.userId || "";

// ---------- Storage (never throws: private mode, quotas) ----------
const local = {
  get: (k) => { try { return localStorage.getItem(k); } catch { return null; } },
  set: (k, v) => { try { localStorage.setItem(k, v); } catch { /* UI preference only */ } },
  del: (k) => { try { localStorage.removeItem(k); } catch { /* UI preference only */ } },
};
const session = {
  get: (k) => { try { return sessionStorage.getItem(k); } catch { return null; } },
  set: (k, v) => { try { sessionStorage.setItem(k, v); } catch { /* best effort */ } },
  del: (k) => { try { sessionStorage.removeItem(k); } catch { /* best effort */ } },
  json: (k) => { try { return JSON.parse(sessionStorage.getItem(k) || "null"); } catch { return null; } },
};

// Pages are server-rendered; one exception for speed: the queue opens a conversation in place
// (see "Opening an item in place" below), with a fragment the server renders from the same
// template as the conversation page.

// ---------- Theme ----------
// A class on <html>, rendered by the server from the `td_theme` cookie (a UI preference, one
// year), so the page's first frame is already in the chosen theme: no flash of the other one.
const THEMES = ["system", "light", "dark"];
const THEME_COOKIE = "td_theme";
function applyTheme(theme) {
  const html = document.documentElement;
  html.classList.remove("theme-light", "theme-dark");
  if (theme === "light" || theme === "dark") html.classList.add(`theme-${theme}`);
}
function currentTheme() {
  const html = document.documentElement;
  return html.classList.contains("theme-dark") ? "dark" : html.classList.contains("theme-light") ? "light" : "system";
}
// A UI-preference cookie (the theme, the clock) for a year, or removed (`keep` false).
function savePref(name, value, keep = true) {
  const secure = location.protocol === "https:" ? "; Secure" : "";
  document.cookie = `${name}=${value}; Path=/; Max-Age=${keep ? 31536000 : 0}; SameSite=Lax${secure}`;
}
function setTheme(theme) {
  savePref(THEME_COOKIE, theme, theme !== "system");
  applyTheme(theme);
  $$('#theme-choice input[name="theme"]').forEach((r) => { r.checked = r.value === theme; });
}

// ---------- Toasts (aria-live region in base.html) ----------
function toast(message, { error = false, action = null, timeout = error ? 9000 : 6000 } = {}) {
  const region = $("#toasts");
  if (!region) return;
  const el = document.createElement("div");
  el.className = error ? "toast toast-error" : "toast";
  if (error) el.setAttribute("role", "alert");
  const msg = document.createElement("span");
  msg.className = "toast-msg";
  msg.textContent = message;
  el.append(msg);
  if (action) {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = action.label;
    b.addEventListener("click", () => { el.remove(); action.run(); });
    el.append(b);
  }
  region.append(el);
  while (region.children.length > 3) region.firstElementChild.remove();
  setTimeout(() => el.remove(), timeout);
}

// ---------- API ----------
class ApiError extends Error {
  constructor(message, status) { super(message); this.status = status; }
}
function csrfToken() {
  return $('meta[name="csrf-token"]')?.content || "";
}
async function api(path, { method = "GET", json } = {}) {
  const headers = { Accept: "application/json" };
  const opts = { method, headers, credentials: "same-origin" };
  if (method !== "GET") headers["X-CSRF-Token"] = csrfToken();
  if (json !== undefined) {
    headers["Content-Type"] = "application/json";
    opts.body = JSON.stringify(json);
  }
  let res;
  try {
    res = await fetch(API + path, opts);
  } catch {
    throw new ApiError("Can't reach ThreadDesk — check your connection and try again.", 0);
  }
  let data = null;
  try { data = await res.json(); } catch { /* empty or not JSON */ }
  if (res.status === 401) throw new ApiError("Your session has ended. Sign in again.", 401);
  if (!res.ok) throw new ApiError((data && data.error) || `Request failed (${res.status}).`, res.status);
  return data;
}
const itemPath = (key) => `/items/${encodeURIComponent(key)}`;
const act = (key, action, payload = {}) => {
  dropFragment(key);
  return api(`${itemPath(key)}/${action}`, { method: "POST", json: payload });
};
function showError(err) {
  const action = err.status === 401 ? { label: "Sign in", run: () => { location.href = "/signin"; } } : null;
  toast(err.message || "Something went wrong.", { error: true, action });
}

// ---------- Time ----------
// Labels in the reader's time, in English like the rest of the page, with the clock style of
// the browser's locale (`3:05 PM` or `15:05`). The server writes the same labels by the same
// rules (src/web/local_time.rs) from the `td_clock` cookie kept below, so a page arrives with
// its final labels and nothing changes in its first frames; this relabels as time passes, and
// where the server could not know (first visit, a daylight-saving change in between).
const DAY = 86400000;
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const WEEKDAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
let hour12 = null; // from the locale, when first needed (an Intl object costs the start-up)
const uses12h = () => (hour12 ??= /^h1[12]$/.test(new Intl.DateTimeFormat(undefined, { hour: "numeric" }).resolvedOptions().hourCycle || ""));
const pad2 = (n) => String(n).padStart(2, "0");
function clockLabel(ms) {
  const d = new Date(ms);
  const h = d.getHours();
  return uses12h() ? `${h % 12 || 12}:${pad2(d.getMinutes())} ${h < 12 ? "AM" : "PM"}` : `${pad2(h)}:${pad2(d.getMinutes())}`;
}
const weekday = (ms) => WEEKDAYS[new Date(ms).getDay()];
function dateLabel(ms) {
  const d = new Date(ms);
  const day = `${MONTHS[d.getMonth()]} ${d.getDate()}`;
  return d.getFullYear() === new Date().getFullYear() ? day : `${day}, ${d.getFullYear()}`;
}
const startOfDay = (d) => new Date(d.getFullYear(), d.getMonth(), d.getDate()).getTime();
function dayDiff(ms) {
  return Math.round((startOfDay(new Date()) - startOfDay(new Date(ms))) / DAY);
}
function relTime(ms) {
  const diff = Date.now() - ms;
  if (diff < 45000) return "now";
  if (diff < 3600000) return `${Math.max(1, Math.round(diff / 60000))}m`;
  const days = dayDiff(ms);
  if (days <= 0) return clockLabel(ms);
  if (days === 1) return "Yesterday";
  if (days < 7) return weekday(ms);
  return dateLabel(ms);
}
function postTime(ms) {
  const days = dayDiff(ms);
  const clock = clockLabel(ms);
  if (days <= 0) return clock;
  if (days === 1) return `Yesterday ${clock}`;
  if (days < 7) return `${weekday(ms)} ${clock}`;
  return `${dateLabel(ms)} ${clock}`;
}
function futureTime(ms) {
  const days = -dayDiff(ms);
  const clock = clockLabel(ms);
  if (days <= 0) return `today ${clock}`;
  if (days === 1) return `tomorrow ${clock}`;
  if (days < 7) return `${weekday(ms)} ${clock}`;
  return `${dateLabel(ms)} ${clock}`;
}
function timeLabel(t, ms) {
  const f = t.dataset.format;
  return f === "future" ? futureTime(ms) : f === "clock" ? clockLabel(ms) : t.classList.contains("post-time") ? postTime(ms) : relTime(ms);
}
// Only what differs is written: an unchanged page is not laid out or painted again.
function refreshTimes(root = document) {
  for (const t of $$("time[data-ts]", root)) {
    const ms = Number(t.dataset.ts);
    if (!ms) continue;
    const label = timeLabel(t, ms);
    if (t.textContent !== label) t.textContent = label;
    const iso = new Date(ms).toISOString(); // as the server writes it (a row updated live differs)
    if (t.getAttribute("datetime") !== iso) t.dateTime = iso;
  }
}
// The full date in the browser's own words, on hover.
let longDate = null;
document.addEventListener("pointerover", (e) => {
  const t = e.target instanceof Element ? e.target.closest("time[data-ts]") : null;
  const ms = Number(t?.dataset.ts);
  if (!ms) return;
  longDate ??= new Intl.DateTimeFormat(undefined, { dateStyle: "full", timeStyle: "short" });
  t.title = longDate.format(ms);
});
// The browser's UTC offset and clock style, for the server's labels (a UI preference cookie).
const CLOCK_COOKIE = "td_clock";
function saveClock() {
  const value = `${-new Date().getTimezoneOffset()}.${uses12h() ? 12 : 24}`;
  if (!document.cookie.split("; ").includes(`${CLOCK_COOKIE}=${value}`)) savePref(CLOCK_COOKIE, value);
}

// ---------- Snooze ----------
function morningHour() {
  const h = Number(local.get("td:morning"));
  return h >= 5 && h <= 12 ? h : 9;
}
function snoozePreset(id) {
  const now = new Date();
  const d = new Date(now);
  if (id === "later") {
    const ms = now.getTime() + 3 * 3600000;
    return Math.ceil(ms / 900000) * 900000; // next quarter hour
  }
  d.setHours(morningHour(), 0, 0, 0);
  if (id === "tomorrow") {
    d.setDate(d.getDate() + 1);
  } else {
    const toMonday = ((8 - d.getDay()) % 7) || 7;
    d.setDate(d.getDate() + toMonday);
  }
  return d.getTime();
}
function fillSnoozeLabels(root = document) {
  for (const el of $$("[data-when]", root)) el.textContent = futureTime(snoozePreset(el.dataset.when));
}
function localInputValue(ms) {
  const d = new Date(ms - new Date(ms).getTimezoneOffset() * 60000);
  return d.toISOString().slice(0, 16);
}
let snoozeCallback = null;
function openSnooze(onPick) {
  const dlg = $("#snooze-dialog");
  if (!dlg) return;
  snoozeCallback = onPick;
  fillSnoozeLabels(dlg);
  const input = $("#snooze-at", dlg);
  input.min = localInputValue(Date.now());
  input.value = localInputValue(snoozePreset("tomorrow"));
  dlg.showModal();
  $(".snooze-option", dlg)?.focus();
}
function pickSnooze(ms) {
  const dlg = $("#snooze-dialog");
  dlg?.close();
  const cb = snoozeCallback;
  snoozeCallback = null;
  if (cb) cb(ms);
}
$("#snooze-dialog")?.addEventListener("click", (e) => {
  const opt = e.target.closest("[data-snooze]");
  if (opt) pickSnooze(snoozePreset(opt.dataset.snooze));
});
$("#snooze-custom")?.addEventListener("submit", (e) => {
  e.preventDefault();
  const ms = new Date($("#snooze-at").value).getTime();
  if (!Number.isFinite(ms) || ms <= Date.now()) {
    toast("Pick a time in the future.", { error: true });
    return;
  }
  pickSnooze(ms);
});

// ---------- Undo memory (survives navigation between queue and conversation) ----------
function remember(key, action, detail) {
  session.set("td:last", JSON.stringify({ key, action, detail, at: Date.now() }));
}
// What a read answered: the message to mark unread from to take it back.
const readBack = (res) => (res?.unread_from ? { post_id: res.unread_from } : undefined);
function undoToast(message) {
  toast(message, { action: { label: "Undo", run: undo } });
}
// An action Mattermost refused, said once per page session wherever the user is (the
// conversation lists it with Retry / Discard; the queue's notice after a reload).
function announceFailed(data) {
  const seen = new Set(session.json("td:failed-seen") || []);
  for (const u of data.failed) {
    if (typeof u.id !== "number" || seen.has(u.id)) continue;
    seen.add(u.id);
    const title = data.item?.title;
    const open = conv && conv.key === data.key ? null : {
      label: "Show",
      run: () => { if (data.item) openInPlace(data.key); else location.reload(); },
    };
    toast(`${u.what}${title ? ` on “${title}”` : ""} was not delivered: ${u.reason || "Mattermost did not accept it"}.`, { error: true, action: open });
  }
  session.set("td:failed-seen", JSON.stringify([...seen].slice(-200)));
}

// What takes an action back: done / snooze are cleared (`undo`), read and unread flip back.
const UNDO = { done: "undo", snooze: "undo", read: "unread", unread: "read" };
async function undo() {
  const last = session.json("td:last");
  if (!last) { toast("Nothing to undo."); return; }
  session.del("td:last");
  const keys = Array.isArray(last.keys) ? last.keys : [last.key];
  const back = UNDO[last.action] || "undo";
  const restored = queue && back === "undo" ? keys.filter((k) => queue.restore(k)) : [];
  try {
    // A read goes back to unread from the first message that was unread before it.
    if (keys.length > 1) {
      await api(`/bulk/${back}`, { method: "POST", json: back === "unread" ? { keys, unread_from: last.detail || {} } : { keys } });
      for (const k of keys) dropFragment(k);
    } else {
      const from = back === "unread" && (last.detail?.post_id || last.detail?.[keys[0]]);
      await act(keys[0], back, from ? { post_id: from } : {});
    }
    toast("Undone.");
    if (queue) queue.refreshSoon();
    if (back !== "undo" && queue) queue.reconcile();
    if (conv && keys.includes(conv.key)) conv.refresh();
  } catch (err) {
    showError(err);
    for (const k of restored) queue.hide(k);
  }
}

// ---------- Queue page ----------
const KIND_LABEL = { thread: "Thread", direct: "Direct message", group: "Group message" };
function rowClass(it) {
  let c = "item";
  if (it.unread) c += " unread";
  if (it.urgent) c += " urgent";
  if (it.mentions > 0) c += " mentioned";
  if (it.done) c += " done";
  if (it.snoozed_until) c += " snoozed";
  return c;
}
function badgeSummary(it) {
  const p = [];
  if (it.urgent) p.push("urgent");
  if (it.mentions > 0) p.push(it.mentions === 1 ? "1 mention" : `${it.mentions} mentions`);
  if (it.unread_replies > 0) p.push(`${it.unread_replies} new`);
  else if (it.unread) p.push("unread");
  return p.join(", ");
}
// The snippet as text, with the words a search found in <mark>s (ranges in UTF-16 offsets).
function setSnippet(node, text, marks = []) {
  node.textContent = "";
  let at = 0;
  for (const [s, e] of marks) {
    if (!(s >= at && e > s && e <= text.length)) continue;
    if (s > at) node.append(text.slice(at, s));
    const m = document.createElement("mark");
    m.textContent = text.slice(s, e);
    node.append(m);
    at = e;
  }
  if (at < text.length) node.append(text.slice(at));
}
function fillRow(li, it) {
  const selected = li.classList.contains("selected");
  li.className = rowClass(it) + (selected ? " selected" : "");
  Object.assign(li.dataset, {
    key: it.key, kind: it.kind, unread: String(!!it.unread), following: String(!!it.following),
    done: String(!!it.done), snoozedUntil: it.snoozed_until ? String(it.snoozed_until) : "",
    activity: String(it.last_activity_at || 0), teamId: it.team_id || "", permalink: it.permalink || "",
  });
  $(".item-link", li).href = `/items/${encodeURIComponent(it.key)}`;
  const check = $(".item-check input", li);
  if (check) { check.value = it.key; check.setAttribute("aria-label", `Select ${it.title}`); }
  // What the buttons post without JavaScript (the queue is a form then; see queue.html).
  for (const [action, path] of [["done", "done"], ["snooze", "snooze"], ["toggle-unread", it.unread ? "read" : "unread"]]) {
    $(`[data-action="${action}"]`, li)?.setAttribute("formaction", `${itemPath(it.key)}/${path}`);
  }
  $(".item-title", li).textContent = it.title;
  const team = $(".item-team", li);
  team.textContent = it.team_name || "";
  team.hidden = !it.team_name;
  $(".item-kind", li).textContent = KIND_LABEL[it.kind] || "";
  // A row the search found by one of its messages keeps showing that message when a live
  // update (which carries the latest snippet, not the match) refreshes it.
  if (it.matched_post_id) li.dataset.match = it.matched_post_id;
  if (!li.dataset.match || it.matched_post_id) setSnippet($(".item-snippet", li), it.snippet || "", it.snippet_marks);
  $(".badge-urgent", li).hidden = !it.urgent;
  const m = $(".badge-mentions", li);
  m.hidden = !(it.mentions > 0);
  $(".n", m).textContent = it.mentions;
  const u = $(".badge-unread", li);
  u.hidden = !(it.unread_replies > 0);
  $(".n", u).textContent = it.unread_replies;
  $(".badge-summary", li).textContent = badgeSummary(it);
  const sn = $(".snoozed-until", li);
  sn.hidden = !it.snoozed_until;
  $("time", sn).dataset.ts = it.snoozed_until || "";
  $(".item-time", li).dataset.ts = it.last_activity_at;
  refreshTimes(li);
}

function createQueue() {
  const list = $("#queue");
  if (!list) return null;
  const filter = body.dataset.filter || "all";
  const team = body.dataset.team || "";
  const q = (body.dataset.q || "").toLowerCase();
  const removed = new Map(); // key -> row element (for undo / failure restore)
  const pending = new Set(); // keys with a request in flight
  let countsTimer = 0;

  const rows = () => $$(":scope > li.item:not([hidden])", list);
  const find = (key) => rows().find((r) => r.dataset.key === key) || null;
  const selected = () => $(":scope > li.item.selected", list);

  function select(row, { focus = true } = {}) {
    if (!row) return;
    for (const r of $$(":scope > li.selected", list)) r.classList.remove("selected");
    row.classList.add("selected");
    session.set("td:sel", row.dataset.key);
    // Hidden behind a conversation opened in place: no focus or scrolling (`shown` comes back here).
    if (body.dataset.page !== "queue") return;
    if (focus) $(".item-link", row).focus({ preventScroll: true });
    row.scrollIntoView({ block: "nearest" });
  }
  function move(delta) {
    const all = rows();
    if (!all.length) return;
    const i = all.indexOf(selected());
    const next = i < 0 ? (delta > 0 ? 0 : all.length - 1) : Math.min(all.length - 1, Math.max(0, i + delta));
    select(all[next]);
    prefetch(all[next].dataset.key);
    lastDelta = delta > 0 ? 1 : -1;
    warm();
  }
  // When idle, fetch ahead the rows a key press would open next: the selected one, the one after
  // it in the direction of the last move, the one before (see "Prefetch" below); back from a
  // conversation (`closed`), the one after it first: the selected one has just been read.
  let lastDelta = 1;
  let warming = false;
  function warmOrder(closed) {
    const all = rows();
    const i = all.indexOf(selected());
    if (i < 0) return [];
    const order = closed ? [all[i + lastDelta], all[i], all[i - lastDelta]] : [all[i], all[i + lastDelta], all[i - lastDelta]];
    return order.map((r) => r?.dataset.key);
  }
  function warm({ closed = false } = {}) {
    // Back from a conversation, a reader opens the next one soon: its fetch starts now (the
    // request costs the key's task next to nothing), the lay-out waits for idle time.
    if (closed && !conv && !list.hidden) prefetch(...warmOrder(true));
    if (warming) return;
    warming = true;
    idle(() => {
      warming = false;
      if (conv || list.hidden) return;
      prefetch(...warmOrder(closed));
      renderAhead();
    });
  }
  // The selected row's key, then the next one's in the direction of the last move.
  function nearby() {
    const all = rows();
    const i = all.indexOf(selected());
    return i < 0 ? [] : [all[i], all[i + lastDelta]].filter(Boolean).map((r) => r.dataset.key);
  }
  function updateEmpty() {
    const empty = rows().length === 0;
    list.hidden = empty;
    const e = $("#empty");
    if (e) e.hidden = !empty;
  }
  function insertSorted(row) {
    const at = Number(row.dataset.activity);
    const before = rows().find((r) => r !== row && Number(r.dataset.activity) < at);
    list.insertBefore(row, before || null);
  }
  function hide(key) {
    const row = find(key);
    if (!row) return null;
    const all = rows();
    const i = all.indexOf(row);
    const wasSelected = row.classList.contains("selected");
    row.remove();
    row.classList.remove("selected");
    removed.set(key, row);
    if (wasSelected) {
      const rest = rows();
      if (rest.length) select(rest[Math.min(i, rest.length - 1)], { focus: list.contains(document.activeElement) || document.activeElement === body });
    }
    updateEmpty();
    return row;
  }
  function restore(key) {
    const row = removed.get(key);
    if (!row || find(key)) return false;
    removed.delete(key);
    insertSorted(row);
    updateEmpty();
    select(row);
    return true;
  }
  function matches(it) {
    const now = Date.now();
    const snoozed = !!it.snoozed_until && it.snoozed_until > now;
    let ok;
    switch (filter) {
      case "done": ok = it.done; break;
      case "snoozed": ok = snoozed && !it.done; break;
      case "mentions": ok = !it.done && !snoozed && (it.mentions > 0 || it.urgent); break;
      case "direct": ok = !it.done && !snoozed && (it.kind === "direct" || it.kind === "group"); break;
      case "threads": ok = !it.done && !snoozed && it.kind === "thread"; break;
      default: ok = !it.done && !snoozed;
    }
    if (ok && team) ok = it.team_id === team;
    // (A row found by one of its messages still matches: the server searched them.)
    if (ok && q) ok = !!find(it.key)?.dataset.match || [it.title, it.snippet, it.team_name].some((s) => (s || "").toLowerCase().includes(q));
    return ok;
  }
  function newRow() {
    const tpl = $("#tpl-item");
    return tpl ? tpl.content.firstElementChild.cloneNode(true) : null;
  }
  function upsert(it, { animate = true } = {}) {
    let row = find(it.key);
    if (!row) {
      row = removed.get(it.key) || newRow();
      removed.delete(it.key);
      if (!row) return;
      fillRow(row, it);
      insertSorted(row);
      if (animate) {
        row.classList.add("arriving");
        setTimeout(() => row.classList.remove("arriving"), 700);
      }
    } else {
      const moved = row.dataset.activity !== String(it.last_activity_at);
      fillRow(row, it);
      if (moved) insertSorted(row);
    }
    updateEmpty();
    if (!selected()) select(row, { focus: false });
  }
  // Keys whose live events came while the user's own action on them was in flight: those
  // events are not applied (they may predate the action), but what they said may still be
  // news — e.g. Mattermost refused the action and its value was read back — so once the action
  // is answered the row is read again (`settle`).
  // The read is dropped if a newer event for the key arrives while it is under way.
  const missed = new Set();
  const heard = new Map(); // key -> events received for it so far
  function settle(key) {
    pending.delete(key);
    if (!missed.delete(key)) return;
    const before = heard.get(key) || 0;
    const apply = (item) => { if ((heard.get(key) || 0) === before) onEvent({ key, item }); };
    api(itemPath(key)).then(
      (d) => apply(d.item),
      (err) => { if (err.status === 404) apply(null); },
    );
  }
  function onEvent(data) {
    if (!data || typeof data.key !== "string") return;
    heard.set(data.key, (heard.get(data.key) || 0) + 1);
    if (pending.has(data.key)) { missed.add(data.key); return; }
    if (data.item && matches(data.item)) upsert(data.item);
    else if (find(data.key)) { hide(data.key); removed.delete(data.key); }
    refreshSoon();
  }
  // A page opened at `?limit=` (and `?cursor=`, a later page of the queue) keeps its size and
  // place when it asks the API.
  const here = new URLSearchParams(location.search);
  function params(extra = {}) {
    const p = new URLSearchParams();
    if (filter !== "all") p.set("filter", filter);
    if (team) p.set("team", team);
    if (body.dataset.q) p.set("q", body.dataset.q);
    if (here.get("limit")) p.set("limit", here.get("limit"));
    for (const [k, v] of Object.entries(extra)) p.set(k, v);
    return p.toString();
  }
  function setCounts(counts) {
    if (!counts) return;
    for (const el of $$("[data-count]")) {
      const n = counts[el.dataset.count];
      el.textContent = n > 0 ? String(n) : "";
    }
    document.title = counted(titleBase);
  }
  function refreshSoon() {
    clearTimeout(countsTimer);
    countsTimer = setTimeout(async () => {
      try { setCounts((await api(`/items?${params()}`)).counts); } catch { /* next event retries */ }
    }, 700);
  }
  // After a reconnect: make the list exactly what the server says (counts you can trust).
  async function reconcile() {
    try {
      const data = await api(`/items?${params(here.get("cursor") ? { cursor: here.get("cursor") } : {})}`);
      const keys = new Set();
      for (const it of data.items || []) { keys.add(it.key); upsert(it, { animate: false }); }
      if (!data.next_cursor) for (const r of rows()) if (!keys.has(r.dataset.key) && !pending.has(r.dataset.key)) hide(r.dataset.key);
      setCounts(data.counts);
    } catch { /* keep what we have */ }
  }
  async function loadMore(button) {
    const cursor = body.dataset.nextCursor;
    if (!cursor) return;
    button.setAttribute("aria-busy", "true");
    try {
      const data = await api(`/items?${params({ cursor })}`);
      for (const it of data.items || []) if (!find(it.key)) { const r = newRow(); if (r) { fillRow(r, it); list.append(r); } }
      body.dataset.nextCursor = data.next_cursor || "";
      if (!data.next_cursor) button.closest(".more")?.remove();
      updateEmpty();
    } catch (err) { showError(err); } finally { button.removeAttribute("aria-busy"); }
  }

  // Triage: optimistic, restored on failure.
  async function removeWith(row, action, payload, message) {
    const key = row.dataset.key;
    pending.add(key);
    row.classList.add("leaving");
    await new Promise((r) => setTimeout(r, 160));
    row.classList.remove("leaving");
    hide(key);
    try {
      await act(key, action, payload);
      remember(key, action);
      undoToast(message);
    } catch (err) {
      restore(key);
      showError(err);
    } finally {
      settle(key);
      refreshSoon();
    }
  }
  const done = (row) => row && removeWith(row, "done", {}, "Marked done. It comes back on new activity.");
  const snooze = (row) => row && openSnooze((until) => removeWith(row, "snooze", { until }, `Snoozed until ${futureTime(until)}.`));
  async function toggleUnread(row) {
    if (!row) return;
    const key = row.dataset.key;
    const makeUnread = row.dataset.unread !== "true";
    const flip = (v) => { row.dataset.unread = String(v); row.classList.toggle("unread", v); };
    flip(makeUnread);
    pending.add(key);
    try {
      const res = await act(key, makeUnread ? "unread" : "read");
      remember(key, makeUnread ? "unread" : "read", readBack(res));
      toast(makeUnread ? "Marked unread." : "Marked read.");
    } catch (err) { flip(!makeUnread); showError(err); } finally { settle(key); refreshSoon(); }
  }
  async function toggleFollow(row) {
    if (!row || row.dataset.kind !== "thread") return;
    const follow = row.dataset.following !== "true";
    row.dataset.following = String(follow);
    try {
      await act(row.dataset.key, follow ? "follow" : "unfollow");
      toast(follow ? "Following the thread." : "Unfollowed. You'll follow again if you're mentioned.");
    } catch (err) { row.dataset.following = String(!follow); showError(err); }
  }
  function open(row, hash = "") {
    if (!row) return;
    session.set("td:sel", row.dataset.key);
    // A row found by one of its messages opens at that message.
    openInPlace(row.dataset.key, { hash: hash || (row.dataset.match ? `#post-${row.dataset.match}` : "") });
  }

  list.addEventListener("focusin", (e) => {
    const row = e.target.closest("li.item");
    if (row && !row.classList.contains("selected")) select(row, { focus: false });
  });
  // The fragment of a row being clicked is fetched from the press on (a click ends on release).
  list.addEventListener("pointerdown", (e) => {
    const link = e.button === 0 && e.target.closest("a.item-link");
    if (link) prefetch(link.closest("li.item")?.dataset.key);
  });
  list.addEventListener("click", (e) => {
    // A plain click on a row opens it in place; with a modifier (new tab, …) the link is a link.
    const link = e.target.closest("a.item-link");
    if (link && e.button === 0 && !(e.ctrlKey || e.metaKey || e.shiftKey || e.altKey)) {
      e.preventDefault();
      const row = link.closest("li.item");
      select(row, { focus: false });
      open(row);
      return;
    }
    const b = e.target.closest("button[data-action]");
    if (!b) return;
    e.preventDefault(); // the queue is a form for pages without JavaScript
    const row = b.closest("li.item");
    select(row, { focus: false });
    if (b.dataset.action === "done") done(row);
    else if (b.dataset.action === "snooze") snooze(row);
    else if (b.dataset.action === "toggle-unread") toggleUnread(row);
  });
  // Selection (x, or a row's checkbox): e / s / u and the bar act on every selected row.
  const bar = $("#bulk-bar");
  const checkOf = (r) => $(".item-check input", r);
  const picks = () => rows().filter((r) => checkOf(r)?.checked);
  function syncPicks() {
    let n = 0;
    for (const r of rows()) {
      const on = !!checkOf(r)?.checked;
      r.classList.toggle("picked", on);
      if (on) n++;
    }
    list.classList.toggle("picking", n > 0);
    if (!bar) return;
    bar.hidden = n === 0;
    $("#bulk-count", bar).textContent = n === 1 ? "1 selected:" : `${n} selected:`;
    $('[data-bulk="clear"]', bar).hidden = n === 0;
  }
  function pick(row) {
    const c = row && checkOf(row);
    if (!c) return;
    c.checked = !c.checked;
    syncPicks();
  }
  function clearPicks() {
    for (const r of rows()) { const c = checkOf(r); if (c) c.checked = false; }
    syncPicks();
  }
  // Every row shown (the page, as filtered), or none when they all are.
  function pickAll() {
    const shown = rows();
    const all = shown.length > 0 && shown.every((r) => checkOf(r)?.checked);
    for (const r of shown) { const c = checkOf(r); if (c) c.checked = !all; }
    syncPicks();
  }
  const BULK_DONE = { done: "marked done", snooze: "snoozed", read: "marked read", unread: "marked unread", undo: "back in the inbox" };
  async function bulk(action, payload = {}) {
    const sel = picks();
    if (!sel.length) return;
    const keys = sel.map((r) => r.dataset.key);
    // Done and snooze take rows out of the view; so does sending them back from Done / Snoozed.
    const leaves = action === "done" || action === "snooze" || (action === "undo" && (filter === "done" || filter === "snoozed"));
    const was = new Map(sel.map((r) => [r.dataset.key, r.dataset.unread]));
    const setUnread = (r, v) => { r.dataset.unread = String(v); r.classList.toggle("unread", v); };
    for (const k of keys) pending.add(k);
    clearPicks();
    if (leaves) for (const k of keys) hide(k);
    else for (const r of sel) setUnread(r, action === "unread");
    const putBack = (k) => {
      if (leaves) restore(k);
      else { const r = find(k); if (r) setUnread(r, was.get(k) === "true"); }
    };
    try {
      const res = await api(`/bulk/${action}`, { method: "POST", json: { keys, ...payload } });
      const failed = (res.results || []).filter((r) => !r.ok);
      for (const f of failed) putBack(f.key);
      const changed = keys.filter((k) => !failed.some((f) => f.key === k));
      for (const k of changed) dropFragment(k);
      if (changed.length && UNDO[action]) {
        // A read is taken back from each item's first message that was unread.
        const detail = Object.fromEntries((res.results || []).filter((r) => r.ok && r.unread_from).map((r) => [r.key, r.unread_from]));
        session.set("td:last", JSON.stringify({ keys: changed, action, detail, at: Date.now() }));
      }
      if (failed.length) {
        toast(`${failed.length} of ${keys.length} could not be changed: ${failed[0].error}`, { error: true });
      } else {
        const n = changed.length === 1 ? "1 item" : `${changed.length} items`;
        if (UNDO[action]) undoToast(`${n} ${BULK_DONE[action]}.`);
        else toast(`${n} ${BULK_DONE[action]}.`);
      }
    } catch (err) {
      for (const k of keys) putBack(k);
      showError(err);
    } finally {
      for (const k of keys) settle(k);
      refreshSoon();
    }
  }
  list.addEventListener("change", (e) => { if (e.target.closest(".item-check")) syncPicks(); });
  bar?.addEventListener("click", (e) => {
    const b = e.target.closest("[data-bulk]");
    if (!b) return;
    e.preventDefault(); // a form for pages without JavaScript
    const action = b.dataset.bulk;
    if (action === "clear") clearPicks();
    else if (action === "snooze") openSnooze((until) => bulk("snooze", { until }));
    else bulk(action);
  });
  syncPicks();

  // A link to the next page (for pages without JavaScript): here the rows are appended in place.
  $('[data-action="load-more"]')?.addEventListener("click", (e) => { e.preventDefault(); loadMore(e.currentTarget); });

  // Type-ahead filtering of the visible rows; Enter searches on the server (names, and every
  // cached message). While rows are hidden by what is typed, the empty state says so (not
  // "Inbox zero").
  const box = $("#filter-box");
  const emptyBox = $("#empty");
  const emptyAsServed = emptyBox && {
    title: $(".empty-title", emptyBox).textContent, text: $(".empty-text", emptyBox).textContent,
    zero: emptyBox.classList.contains("inbox-zero"),
  };
  box?.addEventListener("input", () => {
    const needle = box.value.trim().toLowerCase();
    for (const r of $$(":scope > li.item", list)) {
      const text = `${$(".item-title", r).textContent} ${$(".item-snippet", r).textContent} ${$(".item-team", r).textContent}`.toLowerCase();
      r.hidden = !!needle && !text.includes(needle);
    }
    if (emptyAsServed) {
      const typed = !!needle && needle !== (body.dataset.q || "").toLowerCase();
      $(".empty-title", emptyBox).textContent = typed ? "No row shown here matches" : emptyAsServed.title;
      $(".empty-text", emptyBox).textContent = typed ? "Press Enter to search the names and every message cached for you." : emptyAsServed.text;
      emptyBox.classList.toggle("inbox-zero", emptyAsServed.zero && !typed);
    }
    updateEmpty();
  });

  // Initial selection: the item last opened, else the first.
  const initial = find(session.get("td:sel") || "") || rows()[0];
  if (initial) select(initial, { focus: false });
  warm();
  if (session.get("td:focus-filter")) { session.del("td:focus-filter"); box?.focus(); }

  return {
    find, hide, restore, onEvent, reconcile, refreshSoon, move, nearby,
    // The rows around the selected one, next (in the direction of the last move) first.
    around: () => { const o = warmOrder(true); return [o[0], o[2]]; },
    current: () => selected(),
    // With rows selected (x), e / s / u act on them all.
    done: () => (picks().length ? bulk("done") : done(selected())),
    snooze: () => (picks().length ? openSnooze((until) => bulk("snooze", { until })) : snooze(selected())),
    toggleUnread: () => (picks().length ? bulk(picks().some((r) => r.dataset.unread === "true") ? "read" : "unread") : toggleUnread(selected())),
    pick: () => pick(selected()),
    pickAll,
    clearPicks,
    hasPicks: () => picks().length > 0,
    toggleFollow: () => toggleFollow(selected()),
    open: (hash) => open(selected(), hash),
    permalink: () => selected()?.dataset.permalink,
    escape: () => { const s = selected(); if (s) $(".item-link", s).focus(); },
    // Shown again after an in-place conversation: the selection as it was, focused.
    shown: () => { const s = selected(); if (s) select(s); warm({ closed: true }); },
    focusFilter: () => { box?.focus(); box?.select(); },
  };
}

// ---------- Conversation page ----------
// An action not delivered yet, as `_undelivered.html` renders it.
function buildUndelivered(u) {
  const li = el("li", u.state === "failed" ? "post pending failed" : "post pending");
  li.id = `outbox-${u.id}`;
  li.dataset.outboxId = String(u.id);
  const body = el("div", "post-body");
  const status = el("div", "post-status");
  if (u.state === "failed") {
    const icon = el("span", "icon i-x");
    icon.setAttribute("aria-hidden", "true");
    status.append(icon, ` ${u.what} — not delivered: ${u.reason || ""}`);
  } else {
    status.textContent = "Sending…";
  }
  body.append(status);
  if (typeof u.message === "string") {
    const md = el("div", "md");
    md.append(el("p", "plain", u.message));
    body.append(md);
  }
  if (u.state !== "sending") {
    const bar = el("div", "undelivered-actions");
    const button = (label, action) => {
      const b = el("button", "btn btn-sm", label);
      b.type = "button";
      b.dataset.action = action;
      return b;
    };
    if (u.state === "failed") bar.append(button("Retry", "outbox-retry"));
    bar.append(button("Discard", "outbox-discard"));
    body.append(bar);
  }
  li.append(el("div", "post-gutter"), body);
  return li;
}

function el(tag, className, text) {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text !== undefined) e.textContent = text;
  return e;
}
function buildReactions(container, reactions) {
  container.replaceChildren();
  for (const r of reactions || []) container.append(reactionButton(r));
  const add = el("button", "reaction reaction-add");
  add.type = "button";
  add.dataset.action = "react-picker";
  add.setAttribute("aria-label", "Add reaction");
  add.title = "Add reaction";
  const icon = el("span", "icon i-smile");
  icon.setAttribute("aria-hidden", "true");
  add.append(icon);
  container.append(add);
}
function reactionButton(r) {
  const b = el("button", r.mine ? "reaction mine" : "reaction");
  b.type = "button";
  b.dataset.action = "react";
  b.dataset.emoji = r.emoji;
  b.title = `:${r.emoji}:`;
  b.setAttribute("aria-pressed", String(!!r.mine));
  if (r.image_url) {
    const img = el("img", "emoji");
    img.src = r.image_url;
    img.alt = `:${r.emoji}:`;
    b.append(img);
  } else {
    b.append(el("span", "emoji", r.glyph || `:${r.emoji}:`));
  }
  b.append(el("span", "count", String(r.count)));
  return b;
}
function humanSize(n) {
  if (n < 1024) return `${n} B`;
  const units = ["KB", "MB", "GB", "TB"];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[i]}`;
}
function buildPost(p, cont) {
  const li = el("li", "post");
  li.classList.toggle("post-root", !!p.is_root);
  li.classList.toggle("cont", cont);
  li.classList.toggle("deleted", !!p.deleted);
  li.id = `post-${p.id}`;
  li.tabIndex = -1;
  Object.assign(li.dataset, { postId: p.id, authorId: p.author.id, ts: String(p.create_at) });
  if (typeof p.outbox_marker === "string") li.dataset.marker = p.outbox_marker;
  const gutter = el("div", "post-gutter");
  if (cont) {
    const t = el("time", "post-time-mini");
    t.dataset.ts = p.create_at;
    t.dataset.format = "clock";
    gutter.append(t);
  } else {
    const img = el("img", "avatar");
    Object.assign(img, { src: p.author.avatar_url, alt: "", width: 36, height: 36, loading: "lazy" });
    gutter.append(img);
  }
  const main = el("div", "post-body");
  const head = el("div", "post-head");
  head.hidden = cont;
  const time = el("time", "post-time");
  time.dataset.ts = p.create_at;
  head.append(el("span", "author", p.author.display_name), el("span", "username", `@${p.author.username}`), time);
  main.append(head);
  fillPostContent(main, p);
  li.append(gutter, main);
  li.dataset.sig = postSig(p);
  refreshTimes(li);
  return li;
}
function fillPostContent(main, p) {
  for (const old of $$(":scope > .md, :scope > .post-deleted, :scope > .edited, :scope > .files, :scope > .reactions", main)) old.remove();
  if (p.deleted) {
    main.append(el("p", "post-deleted", "This message was deleted."));
  } else {
    const md = el("div", "md");
    md.innerHTML = p.html; // rendered and sanitised by the server (web/render.rs)
    main.append(md);
    if (p.edited) { const e = el("span", "edited", "(edited)"); e.title = "This message was edited"; main.append(e); }
  }
  if (p.files && p.files.length) {
    const ul = el("ul", "files");
    ul.setAttribute("aria-label", "Attachments");
    for (const f of p.files) {
      const li = el("li", "file");
      const a = el("a");
      a.href = f.url;
      if (f.mime && f.mime.startsWith("image/") && f.mime !== "image/svg+xml") {
        li.classList.add("file-image");
        Object.assign(a, { target: "_blank", rel: "noopener", title: f.name });
        const img = el("img");
        Object.assign(img, { src: f.thumbnail_url, alt: f.name, loading: "lazy" });
        a.append(img);
      } else {
        a.className = "file-chip";
        a.download = f.name;
        const icon = el("span", "icon i-file");
        icon.setAttribute("aria-hidden", "true");
        a.append(icon, el("span", "file-name", f.name), el("span", "file-size", humanSize(f.size)));
      }
      li.append(a);
      ul.append(li);
    }
    main.append(ul);
  }
  const reactions = el("div", "reactions");
  reactions.hidden = !!p.deleted;
  buildReactions(reactions, p.reactions);
  main.append(reactions);
}
const postSig = (p) => JSON.stringify([p.html, p.edited, p.deleted, p.reactions, (p.files || []).map((f) => f.id)]);

// `inPlace`: opened from the queue without a page load (Back, Esc, done and snooze return to
// the queue that is still in the page); `hash` plays the role of the address's `#reply`.
function createConversation({ inPlace = false, hash = location.hash } = {}) {
  const root = $("#conv");
  if (!root) return null;
  const key = root.dataset.key;
  const posts = $("#posts");
  const form = $("#reply-form");
  const box = $("#reply-box");
  const status = $("#reply-status");
  const draftKey = `td:draft:${key}`;
  let sending = false;
  let refreshing = null;
  // The marker of the last reply sent whose post has not arrived yet.
  let awaiting = null;
  const arrived = (marker) => !!$(`:scope > .post[data-marker="${CSS.escape(marker)}"]`, posts);

  function setState(it) {
    if (!it) return;
    Object.assign(root.dataset, {
      unread: String(!!it.unread), following: String(!!it.following), done: String(!!it.done),
      snoozedUntil: it.snoozed_until ? String(it.snoozed_until) : "",
    });
    root.classList.toggle("done", !!it.done);
    root.classList.toggle("unread", !!it.unread);
    const ub = $('[data-action="toggle-unread"]', root);
    const ul = ub && $(".btn-label", ub);
    if (ul) {
      ul.textContent = it.unread ? ul.dataset.labelUnread : ul.dataset.labelRead;
      ub.setAttribute("formaction", `${itemPath(key)}/${it.unread ? "read" : "unread"}`);
    }
    // A toggle of the toolbar (pressed, its label, the form's next action) as `on` says.
    const toggle = (action, on, yes, no) => {
      const b = $(`[data-action="${action}"]`, root);
      if (!b) return;
      b.setAttribute("aria-pressed", String(on));
      b.setAttribute("formaction", `${itemPath(key)}/${on ? no : yes}`);
      const l = $(".btn-label", b);
      l.textContent = on ? l.dataset.labelOn : l.dataset.labelOff;
    };
    if (typeof it.saved === "boolean" && root.dataset.kind === "thread") {
      root.dataset.saved = String(it.saved);
      toggle("toggle-save", it.saved, "save", "unsave");
    }
    toggle("toggle-follow", !!it.following, "follow", "unfollow");
    const st = $("#conv-state");
    if (st) {
      st.replaceChildren();
      if (it.done) st.append(" · Done");
      if (it.snoozed_until) {
        const t = el("time");
        t.dataset.ts = it.snoozed_until;
        t.dataset.format = "future";
        st.append(" · Snoozed until ", t);
        refreshTimes(st);
      }
    }
  }
  const state = () => ({
    unread: root.dataset.unread === "true", following: root.dataset.following === "true",
    done: root.dataset.done === "true", snoozed_until: Number(root.dataset.snoozedUntil) || null,
    saved: root.dataset.saved === "true",
  });
  const nearBottom = () => window.innerHeight + window.scrollY >= document.body.scrollHeight - 160;

  // A change announced while a refresh is in flight may not be in its answer: run one more
  // refresh after it (several requests meanwhile coalesce into that one).
  let refreshAgain = false;
  async function refresh() {
    if (refreshing) { refreshAgain = true; return refreshing; }
    refreshing = (async () => {
      try {
        const data = await api(itemPath(key));
        setState(data.item);
        const stick = nearBottom();
        let prev = null;
        for (const p of data.posts || []) {
          let node = document.getElementById(`post-${p.id}`);
          const cont = !!prev && !p.is_root && prev.author.id === p.author.id && p.create_at - prev.create_at < 300000;
          if (!node) {
            node = buildPost(p, cont);
            node.classList.add("fresh");
            posts.append(node);
          } else if (node.dataset.sig !== postSig(p)) {
            fillPostContent($(".post-body", node), p);
            node.dataset.sig = postSig(p);
          }
          prev = p;
        }
        // What is not delivered yet comes last, as the server has it now (a reply it has sent
        // since is among the posts above).
        for (const n of $$(":scope > .post.pending", posts)) n.remove();
        const undelivered = data.undelivered || [];
        for (const u of undelivered) posts.append(buildUndelivered(u));
        if (awaiting && arrived(awaiting)) {
          awaiting = null;
          if (!status.dataset.refused) status.textContent = "Sent.";
        }
        if (undelivered.some((u) => u.state === "failed" && typeof u.message === "string")) {
          status.classList.add("error");
          status.dataset.refused = "1";
          status.textContent = "Mattermost did not take a message: it is kept below, with Retry and Discard.";
        } else if (status.dataset.refused) {
          delete status.dataset.refused;
          status.classList.remove("error");
          status.textContent = "";
        }
        if (stick) window.scrollTo({ top: document.body.scrollHeight });
      } catch (err) {
        if (err.status === 404) toast("This item is no longer available.", { error: true });
      } finally {
        refreshing = null;
        if (refreshAgain) { refreshAgain = false; refresh(); }
      }
    })();
    return refreshing;
  }

  // Reply: the text stays in the box (and in sessionStorage) until the server acknowledges.
  const saved = session.get(draftKey);
  if (saved && !box.value) { box.value = saved; status.textContent = "Draft restored."; }
  const grow = () => { box.rows = Math.min(14, Math.max(3, box.value.split("\n").length + 1)); };
  box.addEventListener("input", () => {
    if (box.value) session.set(draftKey, box.value); else session.del(draftKey);
    status.classList.remove("error");
    status.textContent = "";
    grow();
  });
  grow();
  async function send() {
    const message = box.value.trim();
    if (!message || sending) return;
    sending = true;
    const button = $('button[type="submit"]', form);
    button.setAttribute("aria-busy", "true");
    status.classList.remove("error");
    status.textContent = "Sending…";
    try {
      const res = await act(key, "reply", { message });
      if (box.value.trim() === message) { box.value = ""; grow(); }
      session.del(draftKey);
      // Shown as the refresh below will list it, until the server's own list replaces it —
      // unless the reply has arrived already (a refresh answered before this did).
      const marker = res?.reply_markers?.[0];
      if (marker && arrived(marker)) {
        status.textContent = "Sent.";
      } else {
        posts.append(buildUndelivered({ id: res?.outbox_ids?.[0], state: "sending", what: "Reply", message }));
        // "Sent." once its post is here (see refresh); while Mattermost does not answer, say so.
        awaiting = marker || null;
        if (!awaiting) status.textContent = ""; // nothing to follow it by: the placeholder says it
        const mine = awaiting;
        setTimeout(() => {
          if (awaiting && awaiting === mine && !status.dataset.refused && !arrived(mine)) {
            status.textContent = "Queued — it will be sent as soon as Mattermost answers.";
          }
        }, 2000);
      }
      window.scrollTo({ top: document.body.scrollHeight });
      refresh();
    } catch (err) {
      status.classList.add("error");
      status.textContent = `Not sent: ${err.message} Your text is still here.`;
      showError(err);
    } finally {
      sending = false;
      button.removeAttribute("aria-busy");
    }
  }
  form.addEventListener("submit", (e) => { e.preventDefault(); send(); });

  // Reactions.
  let reactTarget = null;
  async function react(postEl, emoji) {
    const container = $(".reactions", postEl);
    let b = $$(".reaction[data-emoji]", container).find((x) => x.dataset.emoji === emoji);
    const remove = b?.getAttribute("aria-pressed") === "true";
    const before = container.cloneNode(true);
    if (!b) {
      b = reactionButton({ emoji, count: 0, mine: false, glyph: $(`.react-choice[data-emoji="${CSS.escape(emoji)}"]`)?.textContent });
      container.insertBefore(b, $(".reaction-add", container));
    }
    const count = $(".count", b);
    const n = Number(count.textContent) + (remove ? -1 : 1);
    count.textContent = String(n);
    b.classList.toggle("mine", !remove);
    b.setAttribute("aria-pressed", String(!remove));
    if (n <= 0) b.remove();
    try {
      await act(key, "react", { emoji, post_id: postEl.dataset.postId, on: !remove });
    } catch (err) {
      container.replaceWith(before);
      showError(err);
    }
  }
  // An action not delivered: send it again, or give it up (Mattermost's state comes back).
  async function outbox(postEl, which) {
    for (const b of $$("button", postEl)) b.disabled = true;
    try {
      await act(key, which, { outbox_id: Number(postEl.dataset.outboxId) });
      if (which === "discard") toast("Discarded.");
    } catch (err) {
      showError(err);
    } finally {
      refresh();
    }
  }
  posts.addEventListener("click", (e) => {
    const b = e.target.closest("button[data-action]");
    if (!b) return;
    const postEl = b.closest(".post");
    if (b.dataset.action === "outbox-retry" || b.dataset.action === "outbox-discard") {
      e.preventDefault();
      outbox(postEl, b.dataset.action === "outbox-retry" ? "retry" : "discard");
    } else if (b.dataset.action === "react") react(postEl, b.dataset.emoji);
    else if (b.dataset.action === "react-picker") { reactTarget = postEl; $("#react-dialog")?.showModal(); }
  });
  $("#react-dialog")?.addEventListener("click", (e) => {
    const c = e.target.closest(".react-choice");
    if (!c) return;
    $("#react-dialog").close();
    if (reactTarget) react(reactTarget, c.dataset.emoji);
  });

  // Triage from the conversation: done/snooze return to the queue with an undo toast.
  async function leaveWith(action, payload, message) {
    const b = $(`[data-action="${action}"]`, root);
    b?.setAttribute("aria-busy", "true");
    try {
      await act(key, action, payload);
      remember(key, action);
      if (inPlace && queue) {
        queue.hide(key);
        toQueue();
        undoToast(message);
      } else {
        session.set("td:toast", message);
        location.href = "/";
      }
    } catch (err) { showError(err); } finally { b?.removeAttribute("aria-busy"); }
  }
  async function flipState(field, on, off, ok) {
    const s = state();
    const next = !s[field];
    setState({ ...s, [field]: next });
    try {
      const res = await act(key, next ? on : off);
      if (field === "unread") remember(key, next ? on : off, readBack(res));
      if (ok) toast(ok(next));
    } catch (err) { setState(s); showError(err); }
  }
  const api2 = {
    key, refresh, setState,
    done: () => leaveWith("done", {}, "Marked done. It comes back on new activity."),
    snooze: () => openSnooze((until) => leaveWith("snooze", { until }, `Snoozed until ${futureTime(until)}.`)),
    toggleUnread: () => flipState("unread", "unread", "read", (v) => (v ? "Marked unread." : "Marked read.")),
    toggleFollow: () => root.dataset.kind === "thread" && flipState("following", "follow", "unfollow",
      (v) => (v ? "Following the thread." : "Unfollowed. You'll follow again if you're mentioned.")),
    toggleSave: () => root.dataset.kind === "thread" && flipState("saved", "save", "unsave",
      (v) => (v ? "Saved in Mattermost." : "Removed from your saved messages.")),
    save: async () => {
      try { await act(key, "save"); toast("Saved in Mattermost."); } catch (err) { showError(err); }
    },
    reply: () => { box.focus(); box.setSelectionRange(box.value.length, box.value.length); },
    permalink: () => root.dataset.permalink,
    move: (delta) => {
      const all = $$(".post[data-post-id]", posts);
      if (!all.length) return;
      const cur = document.activeElement?.closest?.(".post");
      const i = all.indexOf(cur);
      const next = i < 0 ? (delta > 0 ? 0 : all.length - 1) : Math.min(all.length - 1, Math.max(0, i + delta));
      all[next].focus();
      all[next].scrollIntoView({ block: "nearest" });
    },
  };
  root.addEventListener("click", (e) => {
    if (inPlace && e.button === 0 && !(e.ctrlKey || e.metaKey || e.shiftKey || e.altKey) && e.target.closest("a.back")) {
      e.preventDefault();
      toQueue();
      return;
    }
    const b = e.target.closest(".toolbar [data-action]");
    if (!b || b.tagName === "A") return;
    e.preventDefault(); // the toolbar is a form for pages without JavaScript
    ({ done: api2.done, snooze: api2.snooze, "toggle-unread": api2.toggleUnread, "toggle-follow": api2.toggleFollow, "toggle-save": api2.toggleSave, save: api2.save })[b.dataset.action]?.();
  });
  const found = hash.startsWith("#post-") ? $(`.post[data-post-id="${CSS.escape(hash.slice(6))}"]`, posts) : null;
  if (hash === "#reply") api2.reply();
  else if (found) {
    found.classList.add("found");
    found.scrollIntoView({ block: "center" });
    found.focus({ preventScroll: true });
  } else if (nearBottom() === false && !saved) window.scrollTo({ top: document.body.scrollHeight });
  return api2;
}

// ---------- Opening an item in place ----------
// Opening a conversation from the queue is not a page load: the server renders the same
// conversation (`_conversation.html`) without the page frame (`GET /fragments/items/{key}`),
// it takes the queue's place in <main>, and history.pushState gives it the item's real
// address. The queue stays in the page, hidden, with its selection, scroll position and live
// updates; Back (popstate), Esc, the back arrow, done and snooze show it again. The rows' links
// keep their real href: without JavaScript, with a modifier key, or if the fragment cannot be
// fetched, opening is a normal page load.
//
// Prefetch: moving the selection with j/k, or pressing on a row, fetches its fragment ahead (one
// request in flight, the latest wanted rows queued behind it, the last 4 kept for 30 s); a live
// event or an action on an item drops its copy, and a conversation shown from a copy requested
// before such a change refreshes itself at once. Holding j down costs at most one request at a
// time, and an item's messages are read from Mattermost (backfill) at most once, as on opening.
// When the queue is idle (shown, or the selection has stopped moving) the selected row, then the
// next one in the direction of the last move, then the one before, are fetched the same way, so
// that `Enter` (or `j` then `Enter`) does not wait for the network. A copy that has arrived is
// parsed (and given local times) when the page is idle, and the copies of the selected row and
// of the next one are put in the page ahead, styled and laid out while idle but invisible (no
// room taken, not painted, out of the accessibility tree, not focusable: `.conv-ahead`), so that
// opening one shows it without parsing, style or layout of the whole conversation on the key.
const FRAGMENTS = "/fragments/items/";
const FRAGMENT_KEEP = 4;
const FRAGMENT_TTL = 30000;
const fragments = new Map(); // key -> { html, key, asked, at, dom, ahead }, oldest first
const changedAt = new Map(); // key -> when a live event or an action last changed it
let allChangedAt = -1; // the live stream reconnected: anything may have changed
let prefetching = null; // { key, promise }
let prefetchQueue = []; // keys wanted after the one in flight, first first
let opening = 0; // a newer open (or Back) supersedes a slower one
let queueView = null; // { title, scrollY } of the queue while a conversation is shown
let titleBase = body.dataset.page === "queue" ? document.title.replace(/^\(\d+\) /, "") : document.title;
const inPlaceOpen = () => !!queueView && !!conv;
const idle = (fn, timeout = 500) => (window.requestIdleCallback ? requestIdleCallback(fn, { timeout }) : setTimeout(fn, 50));

const AHEAD = 2; // at most this many conversations laid out ahead in the page
function dropAhead(f, { later = false } = {}) {
  if (!f?.ahead) return;
  if (later) discard(f.ahead);
  else f.ahead.remove();
  f.ahead = null;
}
// Remove `box` after the next frame (taking a laid-out subtree out costs time on the key), its
// ids gone at once so that they are unique in the page again.
function discard(box) {
  box.removeAttribute("id");
  for (const n of $$("[id], [data-ahead-id]", box)) { n.removeAttribute("id"); delete n.dataset.aheadId; }
  requestAnimationFrame(() => setTimeout(() => box.remove(), 0));
}
function forget(key) {
  dropAhead(fragments.get(key));
  fragments.delete(key);
}
function dropFragment(key) {
  forget(key);
  const now = performance.now();
  changedAt.set(key, now);
  if (changedAt.size > 200) for (const [k, t] of changedAt) if (now - t > FRAGMENT_TTL) changedAt.delete(k);
}
function dropAllFragments() {
  for (const f of fragments.values()) dropAhead(f);
  fragments.clear();
  allChangedAt = performance.now();
}
// Whether the item changed after this copy was asked for.
const stale = (f) => Math.max(changedAt.get(f.key) ?? -1, allChangedAt) >= f.asked;
function fetchFragment(key) {
  const asked = performance.now();
  return fetch(FRAGMENTS + encodeURIComponent(key), { credentials: "same-origin", headers: { Accept: "text/html" } })
    .then(async (res) => {
      if (!res.ok || res.redirected) throw new ApiError(`Request failed (${res.status}).`, res.status);
      return { html: await res.text(), key, asked, at: Date.now(), dom: null, ahead: null };
    });
}
// The fragment's nodes, parsed outside the document. Server-rendered and escaped by askama;
// message HTML sanitised by web/render.rs (the same markup the conversation page has). No
// scripts: the CSP allows none but this module.
function parseFragment(f) {
  if (!f.dom) {
    const t = document.createElement("template");
    t.innerHTML = f.html;
    refreshTimes(t.content);
    f.dom = t.content;
  }
  return f.dom;
}
const fresh = (f) => Date.now() - f.at < FRAGMENT_TTL;
const wanted = (key) => !!key && !(fragments.has(key) && fresh(fragments.get(key))) && prefetching?.key !== key;
// Fetch `keys` ahead, in this order, instead of whatever was queued (the one in flight goes on).
function prefetch(...keys) {
  prefetchQueue = keys.filter(wanted);
  if (!prefetching) prefetchPump();
}
function prefetchPump() {
  const key = prefetchQueue.shift();
  if (!key) return;
  const promise = fetchFragment(key);
  prefetching = { key, promise };
  promise.then((f) => {
    if (stale(f)) return;
    forget(key);
    fragments.set(key, f);
    while (fragments.size > FRAGMENT_KEEP) forget(fragments.keys().next().value);
    idle(() => { if (fragments.get(key) === f) { parseFragment(f); renderAhead(); } }, 200);
  }, () => { /* opening fetches again */ }).finally(() => {
    prefetching = null;
    prefetchQueue = prefetchQueue.filter(wanted);
    prefetchPump();
  });
}
// Lay out ahead the copies of the rows `Enter` (or `j` then `Enter`) would open, each in a
// `.conv-ahead` box at the end of <main>; the others' boxes are removed. Only while the queue is
// shown (the boxes go when one is opened, and their ids are held as data until then).
function renderAhead() {
  if (conv || !queue) return;
  const keys = queue.nearby().slice(0, AHEAD);
  for (const f of fragments.values()) if (f.ahead && !keys.includes(f.key)) dropAhead(f);
  const main = $("#main");
  for (const key of keys) {
    const f = fragments.get(key);
    if (!f || f.ahead || !fresh(f) || stale(f)) continue;
    const box = el("div", "conv-ahead");
    box.append(parseFragment(f));
    f.dom = null; // its nodes are in the box now
    if (!$("#conv", box)) continue; // opened the ordinary way (the page load shows the problem)
    // Ids are unique in the page: a box laid out ahead holds its ids as data until it is shown
    // (no style rule selects by id, so the layout done now is the one shown).
    for (const n of $$("[id]", box)) { n.dataset.aheadId = n.id; n.removeAttribute("id"); }
    main.append(box);
    void box.offsetHeight; // style and layout now, while idle, rather than on the key
    f.ahead = box;
  }
}
function fragmentFor(key) {
  const kept = fragments.get(key);
  fragments.delete(key); // used once: the open conversation keeps itself current
  if (kept && fresh(kept)) return Promise.resolve(kept);
  dropAhead(kept);
  if (prefetching?.key === key) return prefetching.promise.catch(() => fetchFragment(key));
  return fetchFragment(key);
}

async function openInPlace(key, { hash = "", push = true } = {}) {
  const href = itemPath(key) + hash;
  if (!queue) { location.href = href; return; }
  const seq = ++opening;
  let f;
  try {
    f = await fragmentFor(key);
  } catch {
    if (seq === opening) location.href = href; // the page load shows whatever the problem is
    return;
  }
  fragments.delete(key); // the prefetch it waited for may have kept it
  if (seq !== opening) return;
  if (push) {
    history.scrollRestoration = "manual"; // the queue's scroll position is put back by showQueue
    history.pushState({ td: "item", key }, "", href);
  }
  showConversation(f, hash);
}
// The page title has the Inbox count as the sidebar shows it in front ("(12) Inbox ·
// ThreadDesk"; none at inbox zero), as the server renders the queue's: a tab in the background
// says how far from zero the queue is. `titleBase` is the title without it.
function counted(base) {
  const n = $('[data-count="all"]')?.textContent.trim();
  return n ? `(${n}) ${base}` : base;
}
function showTitle(base) {
  titleBase = base;
  document.title = counted(base);
}
function showConversation(f, hash) {
  const main = $("#main");
  const layout = $(".queue-layout", main);
  if (!conv) queueView = { title: titleBase, scrollY: window.scrollY };
  conv = null;
  // The other boxes laid out ahead go (their ids at once: ids are unique in the page).
  for (const g of fragments.values()) dropAhead(g, { later: true });
  for (const box of $$(":scope > .conv-ahead", main)) if (box !== f.ahead) discard(box);
  let view = $("#conv-view", main);
  if (f.ahead?.isConnected) {
    // Laid out ahead (renderAhead): shown as it is, its box becomes the view.
    if (view) discard(view);
    view = f.ahead;
    for (const n of $$("[data-ahead-id]", view)) { n.id = n.dataset.aheadId; delete n.dataset.aheadId; }
    view.id = "conv-view";
    view.classList.remove("conv-ahead");
  } else {
    if (!view) {
      view = el("div");
      view.id = "conv-view";
      main.append(view);
    }
    // Parsed and given local times before it is in the document (when idle, if it was
    // prefetched): one layout, in createConversation.
    view.replaceChildren(parseFragment(f));
  }
  f.dom = null; // its nodes are in the document: a copy is shown once
  f.ahead = null;
  const root = $("#conv", view);
  if (!root) { location.reload(); return; }
  if (layout) layout.hidden = true;
  view.hidden = false;
  body.dataset.page = "item";
  body.dataset.itemKey = root.dataset.key;
  showTitle(`${root.dataset.title} · ThreadDesk`);
  if (window.scrollY) window.scrollTo(0, 0);
  prefetchQueue = []; // what the queue wanted ahead: the conversation's own requests first
  conv = createConversation({ inPlace: true, hash });
  // (A message found by a search has the focus already.)
  if (hash !== "#reply" && !root.contains(document.activeElement)) root.focus({ preventScroll: true });
  if (stale(f)) conv.refresh();
  // While it is read, fetch the rows around it in the queue (what `Esc`, `j`/`k`, `Enter`
  // opens next: the one after it first).
  const opened = conv;
  idle(() => { if (conv === opened && queue) prefetch(...queue.around()); }, 1000);
}
function showQueue() {
  opening++;
  if (!queueView) return;
  const main = $("#main");
  const view = $("#conv-view", main);
  if (view) { view.hidden = true; view.replaceChildren(); }
  conv = null;
  const layout = $(".queue-layout", main);
  if (layout) layout.hidden = false;
  body.dataset.page = "queue";
  delete body.dataset.itemKey;
  showTitle(queueView.title);
  window.scrollTo(0, queueView.scrollY);
  queueView = null;
  queue.shown();
  if (session.get("td:focus-filter")) { session.del("td:focus-filter"); queue.focusFilter(); }
}
// Leave the conversation for the queue: when it was opened in place, the queue is shown at once
// and the history goes back behind it (its popstate then finds the queue shown already).
function toQueue() {
  if (inPlaceOpen() && history.state?.td === "item") {
    showQueue();
    history.back();
  } else {
    location.href = "/";
  }
}
addEventListener("popstate", () => {
  if (!queue) return; // only the queue page puts entries of its own in the history
  const m = /^\/items\/([^/]+)$/.exec(location.pathname);
  if (!m) { showQueue(); return; }
  let key;
  try { key = decodeURIComponent(m[1]); } catch { location.reload(); return; }
  if (!conv || conv.key !== key) openInPlace(key, { hash: location.hash, push: false });
});

// ---------- Live stream (SSE) ----------
function connectLive() {
  if (!window.EventSource || !ME || !(queue || conv)) return;
  const dot = $("#live-dot");
  const mark = (cls, title) => { if (dot) { dot.className = `live-dot ${cls}`; dot.title = title; } };
  let es;
  let wasDown = false;
  const start = () => {
    es = new EventSource(body.dataset.eventsUrl || `${API}/events`);
    es.addEventListener("open", () => {
      mark("live", "Live updates: connected");
      if (wasDown) { dropAllFragments(); queue?.reconcile(); conv?.refresh(); }
      wasDown = false;
    });
    es.addEventListener("error", () => {
      wasDown = true;
      mark("down", "Live updates: reconnecting…");
      if (es.readyState === EventSource.CLOSED) setTimeout(start, 15000); // e.g. session ended
    });
    es.addEventListener("item", (ev) => {
      let data;
      try { data = JSON.parse(ev.data); } catch { return; }
      if (data && typeof data.key === "string") dropFragment(data.key);
      if (data && Array.isArray(data.failed)) announceFailed(data);
      queue?.onEvent(data);
      if (conv && data && data.key === conv.key) conv.refresh();
    });
    es.addEventListener("reload", () => location.reload());
    // Saved searches changed (here, in another tab, or on another device): the sidebar's list
    // as the server renders it, with the search shown marked.
    es.addEventListener("searches", (ev) => {
      let data;
      try { data = JSON.parse(ev.data); } catch { return; }
      const box = $("#saved-searches");
      if (!box || typeof data?.html !== "string") return;
      const tpl = document.createElement("template");
      tpl.innerHTML = data.html;
      const next = tpl.content.querySelector("#saved-searches");
      if (!next) return;
      const shown = body.dataset.search;
      const link = shown ? next.querySelector(`[data-search="${CSS.escape(shown)}"]`) : null;
      if (link) { link.classList.add("active"); link.setAttribute("aria-current", "page"); }
      // Focus on a link (or its remove button) of the old list moves to the same one in the new.
      const focused = box.contains(document.activeElement) ? document.activeElement.closest(".side-saved")?.querySelector("[data-search]")?.dataset.search : null;
      const wasButton = document.activeElement?.classList.contains("side-remove");
      box.replaceWith(next);
      if (focused) {
        const again = next.querySelector(`[data-search="${CSS.escape(focused)}"]`);
        (wasButton ? again?.closest(".side-saved")?.querySelector(".side-remove") : again)?.focus();
      }
      // The search shown: "Saved", or the button to save it.
      const savedNote = $("#search-saved");
      const saveForm = $("#save-search-form");
      if (savedNote && saveForm) { savedNote.hidden = !link; saveForm.hidden = !!link; }
    });
  };
  start();
  addEventListener("pagehide", () => es?.close());
}

// ---------- Keyboard ----------
const keymap = new Map();
const on = (keys, fn) => keymap.set(keys, fn);
const current = () => conv || queue; // the conversation when one is shown (also in place)
on("j", () => current()?.move(1));
on("k", () => current()?.move(-1));
on("ArrowDown", () => conv || queue?.move(1));
on("ArrowUp", () => conv || queue?.move(-1));
on("o", () => conv || queue?.open());
on("Enter", () => conv || queue?.open());
on("e", () => current()?.done());
on("s", () => current()?.snooze());
on("u", () => current()?.toggleUnread());
on("f", () => current()?.toggleFollow());
on("z", () => undo());
on("x", () => { if (!conv) queue?.pick(); });
on("a", () => { if (!conv) queue?.pickAll(); });
on("r", () => (conv ? conv.reply() : queue?.open("#reply")));
on("v", () => { const url = current()?.permalink(); if (url) window.open(url, "_blank", "noopener"); });
on("/", () => {
  const box = conv ? null : $("#filter-box");
  if (box) { box.focus(); box.select(); } else { session.set("td:focus-filter", "1"); toQueue(); }
});
on("?", () => $("#shortcuts-dialog")?.showModal());
on("g i", () => { location.href = "/"; });

let pendingSeq = "";
let seqTimer = 0;
document.addEventListener("keydown", (e) => {
  if (e.defaultPrevented || e.isComposing) return;
  const t = e.target;
  const typing = t instanceof Element && !!t.closest("input, textarea, select, [contenteditable]");
  const dialog = $("dialog[open]");
  if (dialog) {
    if (dialog.id === "snooze-dialog" && !typing && /^[1-3]$/.test(e.key)) {
      e.preventDefault();
      $$(".snooze-option", dialog)[Number(e.key) - 1]?.click();
    }
    return; // Esc closes dialogs natively
  }
  if (e.key === "Escape") {
    if (typing) {
      if (t.id === "filter-box" && queue) { e.preventDefault(); queue.escape(); }
      else if (t.id === "reply-box") { t.blur(); $("#posts .post:last-child")?.focus(); }
      else t.blur();
    } else if (conv) {
      toQueue();
    } else if (queue?.hasPicks()) {
      queue.clearPicks();
    }
    return;
  }
  if (typing) {
    if ((e.ctrlKey || e.metaKey) && e.key === "Enter" && t.id === "reply-box") {
      e.preventDefault();
      $("#reply-form")?.requestSubmit();
    }
    return;
  }
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  // Enter on a focused button or link does what it says; ours only opens the selected row.
  if (e.key === "Enter" && t instanceof Element && t.closest("button, a:not(.item-link)")) return;
  const combo = pendingSeq ? `${pendingSeq} ${e.key}` : e.key;
  clearTimeout(seqTimer);
  if (keymap.has(combo)) {
    e.preventDefault();
    pendingSeq = "";
    keymap.get(combo)(e);
  } else if ([...keymap.keys()].some((k) => k.startsWith(`${combo} `))) {
    e.preventDefault();
    pendingSeq = combo;
    seqTimer = setTimeout(() => { pendingSeq = ""; }, 1500);
  } else {
    pendingSeq = "";
  }
});

// ---------- Page-wide wiring ----------
document.addEventListener("click", (e) => {
  const b = e.target.closest("[data-action]");
  if (!b) return;
  if (b.dataset.action === "close-dialog") b.closest("dialog")?.close();
  else if (b.dataset.action === "shortcuts") $("#shortcuts-dialog")?.showModal();
});
// Click on a dialog's backdrop closes it (delegated: conversations opened in place bring theirs).
document.addEventListener("click", (e) => { if (e.target instanceof HTMLDialogElement) e.target.close(); });
$("#theme-toggle")?.addEventListener("click", () => {
  const next = THEMES[(THEMES.indexOf(currentTheme()) + 1) % THEMES.length];
  setTheme(next);
  toast(`Theme: ${next}`);
});
for (const r of $$('#theme-choice input[name="theme"]')) {
  r.checked = r.value === currentTheme();
  r.addEventListener("change", () => setTheme(r.value));
}
const morning = $("#morning-hour");
if (morning) {
  morning.value = String(morningHour());
  morning.addEventListener("change", () => { local.set("td:morning", morning.value); fillSnoozeLabels(); });
}
fillSnoozeLabels($("main") || document);
idle(saveClock);
// Before the cookie, the theme was kept in localStorage: carried over once, when idle (reading
// localStorage at start-up costs the first frame a few milliseconds).
idle(() => {
  const old = local.get("td:theme");
  if (old === null) return;
  local.del("td:theme");
  if ((old === "light" || old === "dark") && currentTheme() === "system") setTheme(old);
});

const queue = PAGE === "queue" ? createQueue() : null;
let conv = PAGE === "item" ? createConversation() : null;
refreshTimes();
setInterval(() => refreshTimes(), 60000);
connectLive();
const pendingToast = session.get("td:toast");
if (pendingToast && queue) { session.del("td:toast"); undoToast(pendingToast); }
