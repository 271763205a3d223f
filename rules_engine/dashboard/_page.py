"""The dashboard's one page: HTML, CSS and a little JavaScript, all inline (the machine it runs
on may be offline: nothing is fetched from anywhere but this server). It polls `/api/state`
every second, follows `/events` (server-sent events) into the log, draws each symbol's fill
prices over time as inline SVG with the rules' thresholds as labelled horizontal lines (from
the live watcher's snapshot; without one the chart says so), and posts halt/resume with the
token given in the page's address (`#token=...`) or typed into the token field."""

from __future__ import annotations

__all__ = ["PAGE"]

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>rules-engine</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 0; background: #f6f7f9; color: #1d232b; }
header { background: #1d232b; color: #fff; padding: 10px 16px; display: flex; gap: 18px;
         align-items: center; flex-wrap: wrap; }
header h1 { font-size: 16px; margin: 0; }
.pill { padding: 2px 8px; border-radius: 10px; background: #3a4452; }
.pill.bad { background: #b3261e; } .pill.good { background: #1e7b34; }
main { display: grid; grid-template-columns: 1fr 1fr; gap: 12px; padding: 12px; }
section { background: #fff; border: 1px solid #dde1e6; border-radius: 6px; padding: 8px 12px;
          overflow: auto; }
section.wide { grid-column: 1 / -1; }
h2 { font-size: 14px; margin: 4px 0 8px; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 3px 6px; border-bottom: 1px solid #eef0f2;
         white-space: nowrap; font-variant-numeric: tabular-nums; }
td.why { white-space: normal; color: #555; }
#log { font: 12px/1.5 ui-monospace, monospace; max-height: 260px; overflow: auto; margin: 0;
       padding: 0; list-style: none; }
#log li { border-bottom: 1px solid #f0f0f0; }
button { font: inherit; padding: 4px 12px; border-radius: 4px; border: 1px solid #888;
         cursor: pointer; }
#halt { background: #b3261e; color: #fff; border-color: #b3261e; }
svg { background: #fbfcfd; border: 1px solid #eef0f2; }
@media (max-width: 800px) { main { grid-template-columns: 1fr; } }
</style></head>
<body>
<header>
  <h1>rules-engine</h1>
  <span id="watcher" class="pill">watcher: ...</span>
  <span id="trading" class="pill">trading: ...</span>
  <span id="feeds" class="pill">feeds: ...</span>
  <span style="flex:1"></span>
  <input id="token" type="password" placeholder="token (if set)" size="14">
  <button id="halt" type="button">Halt</button>
  <button id="resume" type="button">Resume</button>
  <span id="control-result"></span>
</header>
<main>
  <section class="wide"><h2>Kill switch</h2><div id="halt-state">...</div></section>
  <section><h2>Rules</h2><table id="rules"><thead><tr><th>rule</th><th>state</th>
    <th>firings</th><th>why not yet / reason</th></tr></thead><tbody></tbody></table></section>
  <section><h2>Open orders</h2><table id="orders"><thead><tr><th>symbol</th><th>side</th>
    <th>type</th><th>price</th><th>size</th><th>filled</th><th>status</th><th>rule</th>
    </tr></thead><tbody></tbody></table></section>
  <section><h2>Positions and P&amp;L</h2><table id="positions"><thead><tr><th>rule</th>
    <th>symbol</th><th>position</th><th>avg cost</th><th>realised</th><th>unrealised</th>
    </tr></thead><tbody></tbody></table></section>
  <section><h2>Fill prices and thresholds</h2><div id="charts">no fills yet</div></section>
  <section class="wide"><h2>Event log <small id="log-count"></small></h2><ul id="log"></ul>
  </section>
</main>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
const hash = new URLSearchParams(location.hash.slice(1));
if (hash.get("token")) { $("token").value = hash.get("token"); }
function esc(v) {
  return String(v === null || v === undefined ? "-" : v).replace(/[&<>"']/g,
    (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
}
function rows(id, list, cells) {
  $(id).querySelector("tbody").innerHTML = list.map(
    (r) => "<tr>" + cells(r).map((c, i) => "<td" + (c && c.cls ? " class=" + c.cls : "") +
      ">" + esc(c && c.cls ? c.text : c) + "</td>").join("") + "</tr>").join("") ||
    "<tr><td colspan=8>none</td></tr>";
}
function pill(id, text, good) {
  $(id).textContent = text;
  $(id).className = "pill " + (good === true ? "good" : good === false ? "bad" : "");
}
function render(s) {
  const w = s.watcher;
  pill("watcher", w ? "watcher: " + (w.alive ? "running" : "stopped") : "watcher: none yet",
       w ? w.alive : null);
  pill("trading", "trading: " + s.trading, s.trading === "on");
  const live = s.live;
  const feeds = live ? {market: live.feed, orders: live.orders_feed} : s.feeds;
  pill("feeds", "market feed: " + feeds.market + " / orders feed: " + feeds.orders,
       live ? live.feed === "live" : null);
  const h = s.halt;
  $("halt-state").textContent = h ? "ON since " + h.since + " by " + h.by + (h.acknowledged ?
    " (acknowledged by the watcher)" : " (not acknowledged by a watcher yet)") : "off";
  const why = {};
  for (const n of s.not_yet) { why[n.rule] = n.waits_for + (n.condition.length ?
    ": " + n.condition.join(" / ") : ""); }
  // The watcher's live why-not-yet (its snapshot, or the row it keeps in the store).
  const stored = w && w.alive && s.live_not_yet ? s.live_not_yet.rules : [];
  for (const n of (live ? live.not_yet : stored) || []) { why[n.rule] = n.short; }
  const liveRules = {};
  if (live) { for (const r of live.rules) { liveRules[r.rule] = r; } }
  rows("rules", s.rules, (r) => [r.rule, (liveRules[r.rule] || r).status,
    (liveRules[r.rule] || r).firings, {cls: "why", text: r.reason || why[r.rule] || ""}]);
  rows("orders", s.open_orders, (o) => [o.symbol, o.side, o.type, o.price,
    o.size || (o.funds + " funds"), o.filled_size, o.status, o.rule || "(adopted)"]);
  rows("positions", s.positions, (p) => [p.rule, p.symbol, p.position, p.average_cost,
    p.realised, p.unrealised === null ? "unknown" : p.unrealised]);
  charts(s.fills, live ? live.thresholds || {} : null);
}
// `levels`: the live watcher's thresholds per symbol, or null with no live watcher.
function charts(fills, levels) {
  const by = {};
  for (const f of fills) { (by[f.symbol] = by[f.symbol] || []).push(f); }
  for (const sym of Object.keys(levels || {})) { by[sym] = by[sym] || []; }
  const names = Object.keys(by).sort();
  const note = levels ? "" : "<p id=thresholds-note><small>the rules' thresholds need a " +
    "running watcher (rules-engine run --http)</small></p>";
  if (!names.length) { $("charts").innerHTML = "no fills yet" + note; return; }
  const W = 560, H = 150, P = 34;
  $("charts").innerHTML = note + names.map((sym) => {
    const pts = by[sym], lv = (levels || {})[sym] || [];
    const ts = pts.map((f) => Date.parse(f.time)), ps = pts.map((f) => Number(f.price));
    const all = ps.concat(lv.map((l) => Number(l.value)));
    const t0 = Math.min(...ts), t1 = Math.max(...ts), p0 = Math.min(...all),
          p1 = Math.max(...all);
    const x = (t) => P + (t1 > t0 ? (t - t0) / (t1 - t0) : 0.5) * (W - 2 * P);
    const y = (p) => H - P / 2 - (p1 > p0 ? (p - p0) / (p1 - p0) : 0.5) * (H - P);
    const line = pts.map((f, i) => x(ts[i]).toFixed(1) + "," + y(ps[i]).toFixed(1)).join(" ");
    const dots = pts.map((f, i) => "<circle cx=" + x(ts[i]).toFixed(1) + " cy=" +
      y(ps[i]).toFixed(1) + " r=4 fill=" + (f.side === "buy" ? "#1e7b34" : "#b3261e") +
      "><title>" + esc(f.side + " " + f.size + " at " + f.price + ", " + f.time) +
      "</title></circle>").join("");
    const rules = lv.map((l) => "<g class=threshold data-rule='" + esc(l.rule) + "'><line x1=" +
      P + " x2=" + (W - 4) + " y1=" + y(Number(l.value)).toFixed(1) + " y2=" +
      y(Number(l.value)).toFixed(1) + " stroke=#e08a00 stroke-dasharray='5,3'/><text x=" +
      (W - 6) + " y=" + (y(Number(l.value)) - 3).toFixed(1) + " font-size=10 " +
      "text-anchor=end fill=#a35f00>" + esc(l.rule + ": " + l.field + " " + l.value) +
      "</text></g>").join("");
    return "<div><b>" + esc(sym) + "</b> <small>" + pts.length + " fills, " + esc(p0) +
      " to " + esc(p1) + "</small><br><svg class=chart data-symbol='" + esc(sym) +
      "' width=" + W + " height=" + H + " viewBox='0 0 " + W + " " + H + "'>" +
      "<text x=2 y=12 font-size=10>" + esc(p1) + "</text><text x=2 y=" + (H - 4) +
      " font-size=10>" + esc(p0) + "</text><polyline fill=none stroke=#5470c6 points='" +
      line + "'/>" + rules + dots + "</svg></div>";
  }).join("");
}
async function refresh() {
  try {
    const r = await fetch("/api/state", {cache: "no-store"});
    if (r.ok) { render(await r.json()); }
  } catch (e) { pill("watcher", "dashboard: cannot reach the server", false); }
}
let count = 0;
const events = new EventSource("/events");
events.addEventListener("log", (m) => {
  const e = JSON.parse(m.data);
  const li = document.createElement("li");
  li.className = "event";
  li.dataset.kind = e.kind;
  li.textContent = e.at.slice(11, 23) + "  " + e.kind.padEnd(22) + " " +
    [e.rule, e.client_oid].filter(Boolean).join(" ") + " " +
    (e.payload && Object.keys(e.payload).length ? JSON.stringify(e.payload) : "");
  if (li.textContent.length > 220) {
    li.title = li.textContent;
    li.textContent = li.textContent.slice(0, 220) + " ...";
  }
  const log = $("log");
  const atEnd = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
  log.appendChild(li);
  while (log.children.length > 500) { log.removeChild(log.firstChild); }
  if (atEnd) { log.scrollTop = log.scrollHeight; }
  $("log-count").textContent = "(" + (++count) + ")";
});
async function control(what) {
  const headers = {"X-Rules-Engine": "1"};
  if ($("token").value) { headers["Authorization"] = "Bearer " + $("token").value; }
  const r = await fetch("/api/" + what, {method: "POST", headers: headers});
  const body = await r.json();
  $("control-result").textContent = !r.ok ? (body.error || ("HTTP " + r.status)) :
    what === "halt" ? "halt requested" : body.resumed ? "resumed" : "the switch was not on";
  refresh();
}
$("halt").addEventListener("click", () => control("halt"));
$("resume").addEventListener("click", () => control("resume"));
refresh();
setInterval(refresh, 1000);
</script>
</body></html>
"""
