// kosmos-fl dashboard: polls /dashboard/api/state and renders tables and SVG charts.
// Plain JavaScript, no dependencies, no build step (servers often have no internet access).
"use strict";

const POLL_MS = 1000;
const COLORS = ["#1f6feb", "#cf222e", "#1a7f37", "#bf8700", "#8250df", "#0a7ea4", "#d1242f", "#57606a"];
const SVG_NS = "http://www.w3.org/2000/svg";

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

// A small line chart: series = [{name, points: [[x, y], ...]}]; axes scaled to the data.
function lineChart(container, series, opts = {}) {
  const W = 560, H = 220, L = 48, R = 12, T = 12, B = 36;
  const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, role: "img" });
  const pts = series.flatMap((s) => s.points).filter((p) => Number.isFinite(p[1]));
  if (!pts.length) {
    svg.append(svgEl("text", { x: W / 2, y: H / 2, "text-anchor": "middle" }, "waiting for the first round…"));
    container.replaceChildren(svg);
    return;
  }
  const xs = pts.map((p) => p[0]), ys = pts.map((p) => p[1]);
  const x0 = Math.min(...xs), x1 = Math.max(...xs, x0 + 1);
  let y0 = Math.min(...ys), y1 = Math.max(...ys);
  if (opts.zero) y0 = Math.min(0, y0);
  if (y1 - y0 < 1e-9) { y1 += 1; y0 -= opts.zero ? 0 : 1; }
  const sx = (x) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
  const sy = (y) => H - B - ((y - y0) / (y1 - y0)) * (H - T - B);
  for (let i = 0; i <= 4; i++) {
    const y = y0 + ((y1 - y0) * i) / 4;
    svg.append(svgEl("line", { x1: L, x2: W - R, y1: sy(y), y2: sy(y), class: "grid" }));
    svg.append(svgEl("text", { x: L - 4, y: sy(y) + 4, "text-anchor": "end" }, y.toPrecision(3)));
  }
  const step = Math.max(1, Math.ceil((x1 - x0) / 10));
  for (let x = x0; x <= x1; x += step) {
    svg.append(svgEl("text", { x: sx(x), y: H - B + 14, "text-anchor": "middle" }, x));
  }
  svg.append(svgEl("text", { x: (L + W - R) / 2, y: H - 4, "text-anchor": "middle" }, opts.xlabel || "round"));
  svg.append(svgEl("line", { x1: L, x2: L, y1: T, y2: H - B, class: "axis" }));
  svg.append(svgEl("line", { x1: L, x2: W - R, y1: H - B, y2: H - B, class: "axis" }));
  const legend = svgEl("g", { class: "legend" });
  series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length];
    const p = s.points.filter((q) => Number.isFinite(q[1]));
    if (p.length) {
      const d = p.map((q, j) => `${j ? "L" : "M"}${sx(q[0]).toFixed(1)},${sy(q[1]).toFixed(1)}`).join(" ");
      svg.append(svgEl("path", { d, fill: "none", stroke: color, "stroke-width": 2, "data-series": s.name }));
      for (const q of p) svg.append(svgEl("circle", { cx: sx(q[0]), cy: sy(q[1]), r: 3, fill: color }));
    }
    const lx = L + 8 + i * 110;
    legend.append(svgEl("rect", { x: lx, y: T, width: 10, height: 10, fill: color }));
    legend.append(svgEl("text", { x: lx + 14, y: T + 9 }, s.name));
  });
  svg.append(legend);
  container.replaceChildren(svg);
}

// Horizontal bars: items = [[label, value], ...]
function barChart(container, items) {
  const W = 560, rowH = 20, L = 100, R = 60, T = 6;
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
    svg.append(svgEl("text", { x: L + w + 4, y: y + 14 }, v.toFixed(3)));
  });
  container.replaceChildren(svg);
}

function render(state) {
  const now = state.now;
  const srv = state.server;
  document.getElementById("server").textContent =
    `${srv.usecase} ${srv.usecase_version} · ${srv.strategy} · ${srv.num_clients} clients per session · ` +
    `${srv.num_rounds} rounds · experiment "${srv.experiment}" · MLflow ${srv.mlflow_ui || srv.mlflow_tracking_uri}`;
  const conn = document.getElementById("conn");
  conn.textContent = srv.superlink_alive ? "live" : "SuperLink down";
  conn.className = "badge " + (srv.superlink_alive ? "ok" : "bad");

  // session
  const s = state.session;
  const setText = (id, v) => { document.getElementById(id).textContent = v; };
  if (s) {
    setText("session-id", s.session_id);
    const st = document.getElementById("session-status");
    st.textContent = s.status;
    st.className = "state " + s.status;
    setText("session-round", `${s.round} / ${s.num_rounds}`);
    document.getElementById("round-bar").style.width = `${(100 * s.round) / Math.max(1, s.num_rounds)}%`;
    setChildren(document.getElementById("session-run"), [link(s.links.run, s.mlflow_run_id || "–", "run-link")]);
    setChildren(document.getElementById("session-model"), [link(s.links.model, s.model_uri || "–", "model-link")]);
    setText("session-reason", s.reason || "");
  } else {
    setText("session-id", "no session yet");
    setText("session-status", `waiting for clients (${state.waiting} of ${srv.num_clients})`);
  }

  // clients
  const eligible = state.clients.filter((c) => c.state === "eligible" || c.state === "training").length;
  setText("clients-count", `${state.clients.length} connected · ${eligible} eligible · ${state.waiting} waiting`);
  setChildren(
    document.querySelector("#clients tbody"),
    state.clients.map((c) => {
      const tr = el("tr", { "data-sid": c.sid });
      const crit = c.criteria_met === null ? "pending" : c.criteria_met ? "met" : `not met: ${c.reason || ""}`;
      const stateCell = el("td");
      stateCell.append(el("span", { class: "state " + c.state }, c.state));
      tr.append(el("td", {}, c.sid.slice(0, 8)), el("td", {}, c.name || "–"), el("td", {}, c.address),
        el("td", { title: JSON.stringify(c.data_summary || {}) }, crit), stateCell,
        el("td", {}, ago(c.last_seen, now)));
      return tr;
    }),
  );

  // rounds table and charts
  const rounds = state.rounds;
  setChildren(
    document.querySelector("#rounds tbody"),
    rounds.map((r) => {
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
    }),
  );
  const metricNames = ["RMSE", "MAE"];
  lineChart(
    document.getElementById("chart-metrics"),
    metricNames.map((m) => ({ name: m, points: rounds.map((r) => [r.round, r.metrics[m]]) })),
    { zero: true },
  );
  lineChart(
    document.getElementById("chart-loss"),
    [{ name: "train loss", points: rounds.filter((r) => r.round > 0).map((r) => [r.round, r.train_loss]) }],
    { zero: true },
  );
  lineChart(
    document.getElementById("chart-time"),
    [{ name: "seconds", points: rounds.filter((r) => r.round > 0).map((r) => [r.round, r.round_seconds]) }],
    { zero: true },
  );
  const units = Object.entries(state.per_unit_rmse).sort((a, b) => a[0].localeCompare(b[0]));
  barChart(document.getElementById("chart-units"), units);
  setChildren(
    document.querySelector("#units tbody"),
    units.map(([u, v]) => {
      const tr = el("tr", { "data-unit": u });
      tr.append(el("td", {}, u), el("td", { "data-metric": "RMSE" }, fmt(v)));
      return tr;
    }),
  );

  // errors and finished sessions
  setChildren(
    document.getElementById("errors"),
    state.errors.length
      ? state.errors.map((e) =>
          el("li", { class: e.level }, `${new Date(e.ts * 1000).toISOString().slice(11, 19)} ${e.level} ${e.logger}: ${e.message}`))
      : [el("li", { class: "muted" }, "none")],
  );
  setChildren(
    document.querySelector("#done tbody"),
    state.sessions_done.map((d) => {
      const tr = el("tr", { "data-session": d.session_id });
      const st = el("td");
      st.append(el("span", { class: "state " + d.status }, d.status));
      tr.append(el("td", {}, d.session_id), st, el("td", {}, d.model_uri || "–"),
        el("td", {}, d.mlflow_run_id || "–"), el("td", {}, d.reason || ""));
      return tr;
    }),
  );
  document.body.dataset.updated = String(now);
}

async function poll() {
  try {
    const resp = await fetch("/dashboard/api/state", { cache: "no-store", credentials: "same-origin" });
    if (!resp.ok) throw new Error(`HTTP ${resp.status}`);
    render(await resp.json());
  } catch (err) {
    const conn = document.getElementById("conn");
    conn.textContent = `server unreachable (${err.message})`;
    conn.className = "badge bad";
  } finally {
    setTimeout(poll, POLL_MS);
  }
}
poll();
