// weft dashboard: reads weftd's JSON API (the CLI's), draws hosts, networks, a topology picture,
// the traffic matrix, top talkers and recent drops; refreshes itself. No external assets.
// Data is always written as text (textContent / SVG text nodes), never parsed as HTML.
"use strict";

const REFRESH_MS = 5000;
const DECIDE_MS = 30000;         // suggestions replay the whole window: asked less often
const TOKEN_KEY = "weft-token";
const SVG = "http://www.w3.org/2000/svg";
const PALETTE = ["#2563eb", "#d97706", "#059669", "#7c3aed", "#db2777", "#0891b2", "#65a30d", "#dc2626"];
let timer = null;
let dropsAvailable = null;     // unknown until the API's description has been read
let busy = false;
let again = false;             // a refresh was asked for while one was running
let generation = 0;            // bumped when the token changes: answers to older requests are stale
let tenantToken = false;       // learnt from a 403 on /v1/hosts: then hosts and status are not asked again

// -- the token ---------------------------------------------------------------------------------

function takeTokenFromFragment() {
  const m = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (m) {
    sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname + location.search);   // out of the address bar
  }
}

function token() { return sessionStorage.getItem(TOKEN_KEY); }

class Unauthorized extends Error {}

async function api(path) {
  const headers = { "Accept": "application/json" };
  const t = token();
  if (t) headers["Authorization"] = "Bearer " + t;
  const res = await fetch(path, { headers, cache: "no-store", credentials: "omit" });
  if (res.status === 401) throw new Unauthorized("the API refused the token");
  const text = await res.text();
  let data = null;
  if ((res.headers.get("content-type") || "").includes("json")) {
    try { data = JSON.parse(text); } catch (e) { data = null; }
  } else {
    data = text;
  }
  return { ok: res.ok, status: res.status, data };
}

// -- small DOM helpers -------------------------------------------------------------------------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") node.className = v; else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
}

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = String(text);
  return node;
}

function fillTable(id, rows, emptyText) {
  const body = document.querySelector(`#${id} tbody`);
  const cols = document.querySelectorAll(`#${id} thead th`).length;
  body.replaceChildren();
  if (!rows.length) {
    body.append(el("tr", {}, el("td", { class: "empty", colspan: cols }, emptyText)));
    return;
  }
  for (const cells of rows) {
    const tr = el("tr");
    for (const c of cells) {
      if (c instanceof Node) tr.append(el("td", {}, c));
      else tr.append(el("td", typeof c === "number" ? { class: "num" } : {}, c === null || c === undefined ? "-" : c));
    }
    body.append(tr);
  }
}

function bytes(n) {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
  return (i ? n.toFixed(1) : String(n)) + " " + units[i];
}

function bits(n) {
  const units = ["bit/s", "kbit/s", "Mbit/s", "Gbit/s"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
  return n.toFixed(i ? 1 : 0) + " " + units[i];
}

function ago(ts) {
  if (!ts) return "-";
  const s = Math.max(0, Date.now() / 1000 - ts);
  return s < 90 ? `${Math.round(s)} s ago` : `${Math.round(s / 60)} min ago`;
}

function tenantColour(tenants, name) {
  const i = tenants.indexOf(name);
  return PALETTE[(i < 0 ? 0 : i) % PALETTE.length];
}

// -- the sections ------------------------------------------------------------------------------

function renderHosts(hosts) {
  fillTable("hosts", hosts.map(h => [h.name, h.tunnel_ip,
    el("span", { class: h.connected ? "ok" : "bad" }, h.connected ? "connected" : "disconnected"),
    h.config_error ? el("span", { class: "bad", title: h.config_error }, h.config || "error") : (h.config || "-"),
    h.ports_bound, h.flows]), "no hosts registered");
}

function renderNetworks(networks) {
  fillTable("networks", networks.map(n => [n.ref, (n.cidrs || [n.cidr]).join(" "), n.vni, n.router || "-", n.ports]),
            "no networks");
}

function renderPorts(ports) {
  fillTable("ports", ports.map(p => [p.ref, (p.ips || []).join(" ") || "-", p.mac, p.host || "unbound",
                                     (p.security_groups || []).join(", ") || "-"]), "no ports");
}

function renderTopology(hosts, networks, ports, routers) {
  const box = document.getElementById("topology");
  const tenants = [...new Set(networks.map(n => n.tenant))].sort();
  const columns = hosts.map(h => ({ name: h.name, sub: h.tunnel_ip, up: h.connected, ports: [] }));
  const byHost = new Map(columns.map(c => [c.name, c]));
  let unbound = null;
  for (const p of ports) {
    let col = p.host ? byHost.get(p.host) : null;
    if (!col && p.host) {        // a host the token may not list (a tenant's view): its name only
      col = { name: p.host, sub: "", up: null, ports: [] };
      byHost.set(p.host, col);
      columns.push(col);
    }
    if (!col) {
      if (!unbound) unbound = { name: "unbound", sub: "no NIC seen", up: null, ports: [] };
      col = unbound;
    }
    col.ports.push(p);
  }
  if (unbound) columns.push(unbound);
  const SLOT = 78, PAD = 14, HOST_Y = 10, HOST_H = 86, GAP = 22, BAR_H = 16, BAR_GAP = 30;
  let x = PAD;
  const portAt = new Map();
  for (const c of columns) {
    c.x = x;
    c.w = Math.max(150, c.ports.length * SLOT + 2 * PAD);
    c.ports.forEach((p, i) => portAt.set(p.ref, { x: x + PAD + SLOT / 2 + i * SLOT, y: HOST_Y + HOST_H - 18, port: p }));
    x += c.w + GAP;
  }
  const width = Math.max(x + 150, 600);
  const barsTop = HOST_Y + HOST_H + 50;
  const netY = new Map(networks.map((n, i) => [n.ref, barsTop + i * BAR_GAP]));
  const height = barsTop + Math.max(networks.length, 1) * BAR_GAP + 20;
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, width, height, role: "img",
                            "aria-label": "topology: hosts, ports, networks and routers" });
  root.append(svg("title", {}, "weft topology"));
  // links first, so that boxes and bars are drawn over their ends
  for (const { x: px, y: py, port } of portAt.values()) {
    const ny = netY.get(`${port.tenant}/${port.network}`);
    if (ny === undefined) continue;
    root.append(svg("line", { x1: px, y1: py, x2: px, y2: ny, stroke: tenantColour(tenants, port.tenant),
                              "stroke-width": 1.5, "stroke-opacity": 0.7 }));
  }
  const routerX = x + 40;
  routers.forEach((r, i) => {
    const ys = r.networks.map(n => netY.get(n.network)).filter(y => y !== undefined);
    const ry = ys.length ? (Math.min(...ys) + Math.max(...ys)) / 2 : barsTop;
    const rx = routerX + (i % 3) * 30;
    for (const y of ys) root.append(svg("line", { x1: rx, y1: ry, x2: x - GAP, y2: y + BAR_H / 2, stroke: "#475569" }));
    const g = svg("g", { class: "router" });
    g.append(svg("title", {}, `router ${r.ref}`));
    g.append(svg("polygon", { points: `${rx},${ry - 11} ${rx + 11},${ry} ${rx},${ry + 11} ${rx - 11},${ry}`,
                              fill: "#f8fafc", stroke: "#475569", "stroke-width": 2 }));
    g.append(svg("text", { x: rx + 14, y: ry + 4 }, r.ref));
    root.append(g);
  });
  for (const c of columns) {
    const g = svg("g", { class: "host" });
    g.append(svg("title", {}, `host ${c.name}`));
    g.append(svg("rect", { x: c.x, y: HOST_Y, width: c.w, height: HOST_H, rx: 6, fill: "#f1f5f9",
                           stroke: c.up === null ? "#94a3b8" : c.up ? "#127a3a" : "#b42318", "stroke-width": 2 }));
    g.append(svg("text", { x: c.x + 8, y: HOST_Y + 16, "font-weight": "bold" }, c.name));
    g.append(svg("text", { x: c.x + 8, y: HOST_Y + 30, fill: "#6b7280" }, c.sub || ""));
    root.append(g);
  }
  for (const { x: px, y: py, port } of portAt.values()) {
    const g = svg("g", { class: "port" });
    g.append(svg("title", {}, `port ${port.ref} ${(port.ips || []).join(" ")}`));
    g.append(svg("circle", { cx: px, cy: py, r: 6, fill: tenantColour(tenants, port.tenant) }));
    g.append(svg("text", { x: px, y: py - 10, "text-anchor": "middle" }, port.name));
    root.append(g);
  }
  networks.forEach(n => {
    const y = netY.get(n.ref);
    const g = svg("g", { class: "network" });
    g.append(svg("title", {}, `network ${n.ref} ${(n.cidrs || [n.cidr]).join(" ")}`));
    g.append(svg("rect", { x: PAD, y, width: x - GAP - PAD, height: BAR_H, rx: 3,
                           fill: tenantColour(tenants, n.tenant), "fill-opacity": 0.85 }));
    g.append(svg("text", { x: PAD + 6, y: y + 12, fill: "#fff" }, `${n.ref}  ${(n.cidrs || [n.cidr]).join(" ")}  vni ${n.vni}`));
    root.append(g);
  });
  box.replaceChildren(root);
}

function renderMatrix(id, rows, limit) {
  const box = document.getElementById(id);
  if (rows === null) { box.replaceChildren(el("p", { class: "empty" }, "no traffic collectors in this weftd")); return; }
  if (!rows.length) { box.replaceChildren(el("p", { class: "empty" }, "no traffic seen in this window")); return; }
  const totals = new Map();
  for (const r of rows) {
    totals.set(r.src, (totals.get(r.src) || 0) + r.bytes);
    totals.set(r.dst, (totals.get(r.dst) || 0) + r.bytes);
  }
  const names = [...totals.keys()].sort((a, b) => totals.get(b) - totals.get(a)).slice(0, limit).sort();
  const cell = new Map(rows.map(r => [r.src + "\u0000" + r.dst, r]));
  const max = Math.max(...rows.map(r => r.bytes), 1);
  const table = el("table", { class: "heatmap" });
  const head = el("tr", {}, el("th", {}, "from \\ to"));
  for (const d of names) head.append(el("th", { class: "col" }, d));
  table.append(el("thead", {}, head));
  const body = el("tbody");
  for (const s of names) {
    const tr = el("tr", {}, el("th", { class: "row" }, s));
    for (const d of names) {
      const r = cell.get(s + "\u0000" + d);
      const td = el("td", { class: "cell" });
      if (r && r.bytes > 0) {
        const level = Math.log1p(r.bytes) / Math.log1p(max);
        td.style.background = `rgba(37, 99, 235, ${(0.08 + 0.85 * level).toFixed(3)})`;
        td.style.color = level > 0.55 ? "#fff" : "#1d2430";
        td.textContent = bytes(r.bytes);
        td.title = `${s} → ${d}: ${bytes(r.bytes)}, ${r.packets} packets`;
        td.dataset.bytes = String(r.bytes);
      }
      tr.append(td);
    }
    body.append(tr);
  }
  table.append(body);
  box.replaceChildren(table);
}

function renderTop(rows) {
  fillTable("top", (rows || []).map(r => [r.src, r.dst, bytes(r.bytes), bits(r.rate_bps || 0), ago(r.last_seen)]),
            rows === null ? "no traffic collectors in this weftd" : "no traffic seen in this window");
}

function renderDrops(rows, note) {
  document.getElementById("drops-note").textContent = note || "";
  fillTable("drops", (rows || []).map(r => [r.src, r.dst, r.proto, r.dport,
    r.reason, [r.group, r.rule].filter(Boolean).join(" / ") || "-", r.packets, ago(r.last_seen)]),
    note ? "—" : "no drops in this window");
}

function ruleText(r) {
  const ports = r.port_min == null ? "" : r.port_max != null && r.port_max !== r.port_min
    ? ` ${r.port_min}-${r.port_max}` : ` ${r.port_min}`;
  const peer = r.remote_sg ? r.remote_sg : (r.remote_cidr || "any");
  return `${r.direction} ${r.proto || "any"}${ports} ${r.direction === "ingress" ? "from" : "to"} ${peer}`;
}

function renderDecisions(sg, placement) {
  fillTable("sg-suggest", sg && sg.ok ? sg.data.groups.map(g => [g.name, g.members.join(", "),
    g.rules.map(ruleText).join("; ") || "-", `${g.covers.connections} conn., ${bytes(g.covers.bytes)}`]) : [],
    sg && !sg.ok ? `no suggestion: ${(sg.data && sg.data.error) || sg.status}` : "no traffic to suggest from");
  fillTable("placement", placement && placement.ok ? placement.data.moves.map(m =>
    [m.vm, m.from, m.to, bytes(m.bytes_saved)]) : [],
    placement === null ? "placement is for admin tokens" : placement.ok
      ? "no move cuts cross-host traffic" : `no plan: ${(placement.data && placement.data.error) || placement.status}`);
}

let decidedAt = 0;
async function refreshDecisions(networks, since) {
  const select = document.getElementById("suggest-tenant");
  const tenants = [...new Set(networks.map(n => n.tenant))].sort();
  if (select.options.length !== tenants.length || [...select.options].some((o, i) => o.value !== tenants[i])) {
    const chosen = select.value;
    select.replaceChildren(...tenants.map(t => el("option", { value: t }, t)));
    if (tenants.includes(chosen)) select.value = chosen;
  }
  if (Date.now() - decidedAt < DECIDE_MS || !select.value) return;
  decidedAt = Date.now();
  const q = `since=${encodeURIComponent(since)}`;
  const [sg, placement] = await Promise.all([
    api(`/v1/suggestions/security-groups?tenant=${encodeURIComponent(select.value)}&${q}`),
    tenantToken ? Promise.resolve(null) : api(`/v1/suggestions/placement?${q}`)]);
  renderDecisions(sg, placement);
}

// -- the loop ----------------------------------------------------------------------------------

async function detectDrops() {
  // the drop reasons come with a later weftd: look in the API's own description first, so that
  // a weftd without them costs no failed request (and no console error)
  const spec = await api("/openapi.yaml");
  dropsAvailable = spec.ok && typeof spec.data === "string" && spec.data.includes("/v1/traffic/drops:");
}

async function refresh() {
  if (busy) { again = true; return; }
  busy = true;
  const gen = generation, used = token();
  const since = document.getElementById("since").value;
  try {
    if (dropsAvailable === null) await detectDrops();
    const adminOnly = p => (tenantToken ? Promise.resolve({ ok: false, status: 403, data: null }) : api(p));
    const [hosts, networks, ports, routers, status] = await Promise.all([
      adminOnly("/v1/hosts"), api("/v1/networks"), api("/v1/ports"), api("/v1/routers"), adminOnly("/v1/status")]);
    if (gen !== generation) return;            // asked with a token that is no longer the one
    // a tenant token (weft token create --tenant T) reads its tenant's objects, not the hosts
    const tenantOnly = tenantToken = hosts.status === 403;
    if (tenantOnly) hosts.data = [];
    for (const r of [tenantOnly ? networks : hosts, networks, ports, routers]) {
      if (!r.ok) throw new Error((r.data && r.data.error) || `HTTP ${r.status}`);
    }
    renderHosts(hosts.data);
    if (tenantOnly) fillTable("hosts", [], "hosts are for admin tokens; this one is a tenant's");
    renderNetworks(networks.data);
    renderPorts(ports.data);
    renderTopology(hosts.data, networks.data, ports.data, routers.data);
    const q = `since=${encodeURIComponent(since)}`;
    const [mt, mv, top] = await Promise.all([`/v1/traffic/matrix?by=tenant&${q}`,
      `/v1/traffic/matrix?by=vm&${q}`, `/v1/traffic/top?n=10&${q}`].map(api));
    if (gen !== generation) return;
    const traffic = r => (r.ok ? r.data : null);
    renderMatrix("matrix-tenant", traffic(mt), 20);
    renderMatrix("matrix-vm", traffic(mv), 24);
    renderTop(traffic(top));
    if (dropsAvailable && tenantToken) {
      // drop samples may name other tenants' ports (an isolation drop): an admin's view
      renderDrops([], "drop samples need an admin token");
    } else if (dropsAvailable) {
      const drops = await api(`/v1/traffic/drops?${q}`);
      renderDrops(drops.ok ? drops.data : [], drops.ok ? "" : `drops: ${(drops.data && drops.data.error) || drops.status}`);
    } else {
      renderDrops([], "this weftd reports no drop reasons yet (GET /v1/traffic/drops)");
    }
    await refreshDecisions(networks.data, since);
    if (gen !== generation) return;
    const st = status.ok ? status.data : {};
    const up = hosts.data.filter(h => h.connected).length;
    document.getElementById("state").textContent =
      (tenantOnly ? "tenant view" : `${up}/${hosts.data.length} hosts connected`) +
      ` · ${networks.data.length} networks · ${ports.data.length} ports` +
      (st.model_version !== undefined && st.model_version !== null ? ` · model v${st.model_version}` : "") +
      ` · updated ${new Date().toLocaleTimeString()}`;
    document.body.dataset.loaded = "1";
  } catch (e) {
    if (gen !== generation) return;            // the token changed meanwhile: not about this one
    if (e instanceof Unauthorized) {
      signOut(used ? "the API refused the token: enter it again" : "");
      return;
    }
    document.getElementById("state").textContent = `error: ${e.message}`;
  } finally {
    busy = false;
    if (again) { again = false; if (timer !== null) refresh(); }
  }
}

function signOut(message) {
  generation++;
  sessionStorage.removeItem(TOKEN_KEY);
  tenantToken = false;
  clearInterval(timer);
  timer = null;
  document.getElementById("main").hidden = true;
  document.getElementById("signout").hidden = true;
  document.getElementById("login").hidden = false;
  document.getElementById("login-error").textContent = message || "";
  document.getElementById("state").textContent = "signed out";
}

function start() {
  generation++;
  document.getElementById("login").hidden = true;
  document.getElementById("main").hidden = false;
  document.getElementById("signout").hidden = !token();
  refresh();
  clearInterval(timer);
  timer = setInterval(refresh, REFRESH_MS);
}

document.addEventListener("DOMContentLoaded", () => {
  takeTokenFromFragment();
  document.getElementById("login-form").addEventListener("submit", ev => {
    ev.preventDefault();
    const value = document.getElementById("token").value.trim();
    if (!value) return;
    sessionStorage.setItem(TOKEN_KEY, value);
    document.getElementById("token").value = "";
    start();
  });
  document.getElementById("signout").addEventListener("click", () => signOut(""));
  document.getElementById("since").addEventListener("change", () => { decidedAt = 0; refresh(); });
  document.getElementById("suggest-tenant").addEventListener("change", () => { decidedAt = 0; refresh(); });
  start();      // without a token (the unix socket) it works; on TCP a 401 asks for one
});
