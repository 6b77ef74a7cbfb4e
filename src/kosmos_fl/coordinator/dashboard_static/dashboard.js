// kosmos-fl dashboard: polls /dashboard/api/state and renders tables and SVG charts.
// Plain JavaScript, no dependencies, no build step (servers often have no internet access).
// Every value is set as text (textContent / attributes), never as HTML: names and reasons come
// from clients.
"use strict";

const POLL_MS = 1000;
const COLORS = ["#1f6feb", "#cf222e", "#1a7f37", "#bf8700", "#8250df", "#0a7ea4", "#d1242f", "#57606a"];
const SVG_NS = "http://www.w3.org/2000/svg";
// the session shown ("" = follow the live one); kept across polls and new sessions
let selected = "";
let listedSessions = "";

function el(tag, attrs = {}, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}
function svgEl(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = String(text);
  return node;
}
function fmt(v, digits = 4) {
  return v === null || v === undefined || Number.isNaN(v) ? "–" : Number(v).toFixed(digits);
}
function withUnit(label, unit) {
  return unit ? `${label} (${unit})` : label;
}
function ago(ts, now) {
  if (!ts) return "–";
  const s = Math.max(0, now - ts);
  if (s < 60) return `${s.toFixed(0)} s ago`;
  if (s < 3600) return `${(s / 60).toFixed(0)} min ago`;
  return `${(s / 3600).toFixed(1)} h ago`;
}
function bytes(v) {
  if (v === null || v === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${v.toFixed(i ? 1 : 0)} ${units[i]}`;
}
function link(href, text, testid) {
  if (!href) return el("span", testid ? { "data-testid": testid } : {}, text);
  const a = el("a", { href, target: "_blank", rel: "noopener" }, text);
  if (testid) a.setAttribute("data-testid", testid);
  return a;
}
function setChildren(node, children) {
  node.replaceChildren(...children);
}
function setText(id, v) {
  document.getElementById(id).textContent = v;
}

// Axis ticks at 1, 2, 2.5 or 5 times a power of ten, covering [lo, hi]; integer steps for rounds.
function niceTicks(lo, hi, count, integer) {
  const raw = Math.max((hi - lo) / count, integer ? 1 : 1e-12);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw && (!integer || Number.isInteger(s)));
  const start = Math.floor(lo / step + 1e-9) * step, end = Math.ceil(hi / step - 1e-9) * step;
  const ticks = [];
  for (let v = start; v <= end + step / 2; v += step) ticks.push(Number(v.toFixed(10)));
  const decimals = Math.max(0, -Math.floor(Math.log10(step) + 1e-9) + (step / mag === 2.5 ? 1 : 0));
  return { ticks, lo: start, hi: end, label: (v) => v.toFixed(Math.min(decimals, 6)) };
}

// The legend as HTML above the plot: it never covers a line.
function legend(series) {
  const box = el("div", { class: "legend" });
  series.forEach((s, i) => {
    const item = el("span", { class: "legend-item" });
    item.append(el("span", { class: "swatch", style: `background:${COLORS[i % COLORS.length]}` }), el("span", {}, s.name));
    box.append(item);
  });
  return box;
}

// A line chart: series = [{name, points: [[x, y], ...]}]; opts: {zero, ylabel, xlabel, xmax, empty}.
function lineChart(container, series, opts = {}) {
  const W = 560, H = 220, L = 62, R = 14, T = 10, B = 38;
  const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, role: "img" });
  const pts = series.flatMap((s) => s.points).filter((p) => Number.isFinite(p[1]));
  if (!pts.length) {
    svg.append(svgEl("text", { x: W / 2, y: H / 2, "text-anchor": "middle" }, opts.empty || "waiting for the first round…"));
    container.replaceChildren(svg);
    return;
  }
  const xs = pts.map((p) => p[0]), ys = pts.map((p) => p[1]);
  // the x axis spans the planned rounds (opts.xmax): it does not rescale as rounds come in
  const x0 = Math.min(...xs), x1 = Math.max(...xs, opts.xmax ?? x0 + 1, x0 + 1);
  const xt = niceTicks(x0, x1, 8, true);
  let y0 = Math.min(...ys), y1 = Math.max(...ys);
  if (opts.zero) y0 = Math.min(0, y0);
  if (y1 - y0 < 1e-9) { y1 += Math.abs(y1) * 0.1 || 1; if (!opts.zero) y0 -= Math.abs(y0) * 0.1 || 1; }
  const yt = niceTicks(y0, y1, 4, false);
  const sx = (x) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
  const sy = (y) => H - B - ((y - yt.lo) / (yt.hi - yt.lo)) * (H - T - B);
  for (const y of yt.ticks) {
    svg.append(svgEl("line", { x1: L, x2: W - R, y1: sy(y), y2: sy(y), class: "grid" }));
    svg.append(svgEl("text", { x: L - 6, y: sy(y) + 4, "text-anchor": "end", class: "tick" }, yt.label(y)));
  }
  for (const x of xt.ticks.filter((v) => v >= x0 && v <= x1)) {
    svg.append(svgEl("line", { x1: sx(x), x2: sx(x), y1: H - B, y2: H - B + 4, class: "axis" }));
    svg.append(svgEl("text", { x: sx(x), y: H - B + 16, "text-anchor": "middle", class: "tick" }, x));
  }
  svg.append(svgEl("text", { x: (L + W - R) / 2, y: H - 4, "text-anchor": "middle", class: "axis-label" }, opts.xlabel || "round"));
  if (opts.ylabel) {
    const cy = (T + H - B) / 2;
    svg.append(svgEl("text", { x: 14, y: cy, "text-anchor": "middle", transform: `rotate(-90 14 ${cy})`, class: "axis-label", "data-testid": "ylabel" }, opts.ylabel));
  }
  svg.append(svgEl("line", { x1: L, x2: L, y1: T, y2: H - B, class: "axis" }));
  svg.append(svgEl("line", { x1: L, x2: W - R, y1: H - B, y2: H - B, class: "axis" }));
  series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length];
    const p = s.points.filter((q) => Number.isFinite(q[1]));
    if (!p.length) return;
    const d = p.map((q, j) => `${j ? "L" : "M"}${sx(q[0]).toFixed(1)},${sy(q[1]).toFixed(1)}`).join(" ");
    svg.append(svgEl("path", { d, fill: "none", stroke: color, "stroke-width": 2, "data-series": s.name }));
    for (const q of p) svg.append(svgEl("circle", { cx: sx(q[0]), cy: sy(q[1]), r: 3, fill: color }));
  });
  container.replaceChildren(...(series.length > 1 ? [legend(series)] : []), svg);
}

// Horizontal bars: items = [[label, value], ...]; the value printed with its unit.
function barChart(container, items, unit) {
  const W = 560, rowH = 20, L = 110, R = 90, T = 6;
  const H = Math.max(40, T * 2 + items.length * rowH);
  const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, style: `height:${H}px` });
  if (!items.length) {
    svg.append(svgEl("text", { x: W / 2, y: H / 2, "text-anchor": "middle" }, "no evaluation yet"));
    container.replaceChildren(svg);
    return;
  }
  const max = Math.max(...items.map((i) => i[1]), 1e-9);
  items.forEach(([label, v], i) => {
    const y = T + i * rowH;
    const w = (v / max) * (W - L - R);
    svg.append(svgEl("text", { x: L - 6, y: y + 14, "text-anchor": "end" }, label));
    svg.append(svgEl("rect", { x: L, y: y + 3, width: Math.max(1, w), height: rowH - 6, fill: COLORS[0] }));
    svg.append(svgEl("text", { x: L + w + 4, y: y + 14 }, `${v.toFixed(3)} ${unit}`.trim()));
  });
  container.replaceChildren(svg);
}

function renderHeader(state) {
  const srv = state.server;
  setText("server",
    `${srv.usecase} ${srv.usecase_version} · ${srv.strategy} · ${srv.num_clients} clients per session · ` +
    `${srv.num_rounds} rounds · RUL in ${state.units.target} · experiment "${srv.experiment}" · ` +
    `MLflow ${srv.mlflow_ui || srv.mlflow_store}`);
  const conn = document.getElementById("conn");
  conn.textContent = srv.superlink_alive ? "live" : "SuperLink down";
  conn.className = "badge " + (srv.superlink_alive ? "ok" : "bad");
  // units into the column heads: RMSE (hours)
  for (const th of document.querySelectorAll("th.unit-head")) {
    const m = th.dataset.metric;
    th.textContent = withUnit(th.textContent.replace(/ \(.*\)$/, ""), state.units[m]);
  }
  setText("per-client-eval", withUnit("eval RMSE on own data", state.units.RMSE));
  for (const id of ["metrics-unit", "units-unit", "history-unit"]) setText(id, `(${state.units.target})`);
}

function championText(ch) {
  if (!ch.known) return `${ch.model}: not known yet`;
  return ch.version ? `version ${ch.version} of ${ch.model}` : `none yet (${ch.model})`;
}
function decisionText(s) {
  if (s.champion === null || s.champion === undefined) return s.running ? "session still running" : "–";
  const v = s.registered_version ? `version ${s.registered_version} ` : "";
  return `${v}${s.champion ? "became champion" : "stayed a candidate"}: ${s.champion_reason || ""}`;
}

function renderSession(state) {
  const s = state.session;
  setText("champion", championText(state.champion));
  if (!s) {
    setText("session-id", "no session yet");
    setText("session-status", `waiting for clients (${state.waiting} of ${state.server.num_clients})`);
    setText("session-champion", "–");
    return;
  }
  setText("session-id", s.session_id + (s.live ? "" : " (past session)"));
  const st = document.getElementById("session-status");
  st.textContent = s.status;
  st.className = "state " + s.status;
  setText("session-round", `${s.round} / ${s.num_rounds}`);
  document.getElementById("round-bar").style.width = `${(100 * s.round) / Math.max(1, s.num_rounds)}%`;
  setChildren(document.getElementById("session-run"), [link(s.links.run, s.mlflow_run_id || "–", "run-link")]);
  setChildren(document.getElementById("session-model"), [link(s.links.model, s.model_uri || "–", "model-link")]);
  const dec = document.getElementById("session-champion");
  dec.textContent = decisionText(s);
  dec.className = s.champion ? "won" : "";
  setText("session-reason", s.reason || "");
}

function renderClients(state) {
  const now = state.now;
  const eligible = state.clients.filter((c) => c.state === "eligible" || c.state === "training").length;
  setText("clients-count", `${state.clients.length} connected · ${eligible} eligible · ${state.waiting} waiting`);
  setChildren(document.querySelector("#clients tbody"), state.clients.map((c) => {
    const tr = el("tr", { "data-sid": c.sid, "data-name": c.name || "" });
    const crit = c.criteria_met === null ? "pending" : c.criteria_met ? "met" : `not met: ${c.reason || ""}`;
    const stateCell = el("td");
    stateCell.append(el("span", { class: "state " + c.state }, c.state));
    tr.append(el("td", { class: "name", title: `connection ${c.sid}` }, c.name || "(no name yet)"), el("td", {}, c.address),
      el("td", { title: JSON.stringify(c.data_summary || {}) }, crit), stateCell, el("td", {}, ago(c.last_seen, now)));
    return tr;
  }));
  const u = state.units;
  setChildren(document.querySelector("#per-client tbody"), state.per_client.map((c) => {
    const tr = el("tr", { "data-client": c.name });
    tr.append(
      el("td", { class: "name" }, c.name), el("td", {}, c.client_id),
      el("td", { "data-col": "samples" }, c.samples === null ? "–" : `${c.samples} ${u.samples}`),
      el("td", { "data-col": "rounds" }, c.rounds),
      el("td", { "data-col": "last_loss" }, fmt(c.last_loss)),
      el("td", { "data-col": "eval_rmse" }, c.eval_rmse === null ? "–" : `${fmt(c.eval_rmse)} ${u.RMSE}`),
      el("td", { "data-col": "rejected", class: c.rejected ? "bad" : "" }, c.rejected),
      el("td", { "data-col": "last_rejection" }, c.last_rejection || ""),
      el("td", {}, c.connected ? "yes" : "no"),
    );
    return tr;
  }));
}

function renderRounds(state) {
  const rounds = state.rounds, u = state.units, xmax = state.session?.num_rounds;
  setChildren(document.querySelector("#rounds tbody"), rounds.map((r) => {
    const tr = el("tr", { "data-round": r.round });
    tr.append(
      el("td", {}, r.round),
      el("td", { "data-metric": "RMSE" }, fmt(r.metrics.RMSE)),
      el("td", { "data-metric": "MAE" }, fmt(r.metrics.MAE)),
      el("td", { "data-metric": "PCC" }, fmt(r.metrics.PCC)),
      el("td", { "data-metric": "train_loss" }, fmt(r.train_loss)),
      el("td", {}, fmt(r.round_seconds, 1)),
      el("td", {}, r.round ? `${bytes(r.bytes_received)} / ${bytes(r.bytes_sent)}` : "–"),
    );
    return tr;
  }));
  lineChart(document.getElementById("chart-metrics"),
    ["RMSE", "MAE"].map((m) => ({ name: m, points: rounds.map((r) => [r.round, r.metrics[m]]) })),
    { zero: true, xmax, ylabel: withUnit("error", u.RMSE) });
  lineChart(document.getElementById("chart-loss"),
    [{ name: "train loss", points: rounds.filter((r) => r.round > 0).map((r) => [r.round, r.train_loss]) }],
    { zero: true, xmax, ylabel: u.train_loss });
  lineChart(document.getElementById("chart-time"),
    [{ name: "seconds", points: rounds.filter((r) => r.round > 0).map((r) => [r.round, r.round_seconds]) }],
    { zero: true, xmax, ylabel: withUnit("time", u.seconds) });
  const units = Object.entries(state.per_unit_rmse).sort((a, b) => a[0].localeCompare(b[0]));
  barChart(document.getElementById("chart-units"), units, u.RMSE);
  setChildren(document.querySelector("#units tbody"), units.map(([name, v]) => {
    const tr = el("tr", { "data-unit": name });
    tr.append(el("td", {}, name), el("td", { "data-metric": "RMSE" }, fmt(v)));
    return tr;
  }));
}

function renderSessions(state) {
  const list = state.sessions;
  const key = list.map((d) => `${d.session_id}:${d.status}`).join(",");
  const select = document.getElementById("session-select");
  if (key !== listedSessions) { // rebuilt only when the list changes: an open drop-down stays open
    listedSessions = key;
    setChildren(select, [el("option", { value: "" }, "the live session"),
      ...list.map((d) => el("option", { value: d.session_id }, `${d.session_id} (${d.status})`))]);
  }
  select.value = selected;
  setChildren(document.querySelector("#done tbody"), list.map((d) => {
    const tr = el("tr", { "data-session": d.session_id, class: "pick" + (d.session_id === state.session?.session_id ? " shown" : "") });
    const st = el("td");
    st.append(el("span", { class: "state " + d.status }, d.status));
    tr.append(el("td", {}, d.session_id), st, el("td", {}, fmt(d.rmse)), el("td", {}, d.model_uri || "–"),
      el("td", {}, d.champion === true ? "became champion" : d.champion === false ? "candidate" : "–"),
      el("td", {}, d.mlflow_run_id || "–"), el("td", {}, d.reason || ""));
    tr.addEventListener("click", () => pick(d.session_id));
    return tr;
  }));
  const done = list.filter((d) => Number.isFinite(d.rmse)).reverse();
  lineChart(document.getElementById("chart-history"),
    [{ name: "final RMSE", points: done.map((d, i) => [i + 1, d.rmse]) }],
    { zero: true, xlabel: "session (oldest first)", ylabel: withUnit("RMSE", state.units.RMSE), empty: "no finished session yet" });
}

function render(state) {
  renderHeader(state);
  renderSession(state);
  renderClients(state);
  renderRounds(state);
  renderSessions(state);
  setChildren(document.getElementById("errors"), state.errors.length
    ? state.errors.map((e) =>
        el("li", { class: e.level }, `${new Date(e.ts * 1000).toISOString().slice(11, 19)} ${e.level} ${e.logger}: ${e.message}`))
    : [el("li", { class: "muted" }, "none")]);
  document.body.dataset.shown = state.session ? state.session.session_id : "";
  document.body.dataset.updated = String(state.now);
}

let timer = null;
let pollSeq = 0; // a poll started by a click supersedes the one in flight
async function poll() {
  clearTimeout(timer);
  const seq = ++pollSeq;
  try {
    const q = selected ? `?session=${encodeURIComponent(selected)}` : "";
    const resp = await fetch(`/dashboard/api/state${q}`, { cache: "no-store", credentials: "same-origin" });
    if (resp.status === 404 && selected) { selected = ""; return; } // that session's folder is gone
    if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
    const state = await resp.json();
    if (seq === pollSeq) render(state);
  } catch (err) {
    const conn = document.getElementById("conn");
    conn.textContent = `server unreachable (${err.message})`;
    conn.className = "badge bad";
  } finally {
    if (seq === pollSeq) timer = setTimeout(poll, POLL_MS);
  }
}
function pick(sessionId) {
  selected = sessionId;
  poll();
}
document.getElementById("session-select").addEventListener("change", (e) => pick(e.target.value));

// The operator's "start a session now" (kosmos-fl session start): the same admin-side endpoint,
// posted as JSON (a cross-site form cannot), with the page's own credentials; the answer is shown.
async function startSession() {
  const answer = document.getElementById("start-answer");
  answer.textContent = "asking the server…";
  try {
    const resp = await fetch("/sessions/start", {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json" },
      body: "{}",
    });
    const body = await resp.json();
    answer.textContent = body.message || `HTTP ${resp.status}`;
  } catch (err) {
    answer.textContent = `could not ask the server (${err.message})`;
  }
  pick("");
}
document.getElementById("start-session").addEventListener("click", startSession);
poll();
