// netlab web: draws the snapshots the server pushes (server-sent events on /api/stream).
// Plain script, no build step. Every text from the lab goes into the page as text
// (textContent), never as HTML.
"use strict";

const STATE_COLORS = {
  "Normal": "#c6efce", "Failover": "#ffd966", "Ready to switch": "#bdd7ee",
  "Failback": "#9fc5e8", "Permanent failover": "#e4b9e4",
};
const ACTION_QUESTIONS = {
  failover: (vm) => `Fail ${vm} over to its replica at the SP?`,
  undo: (vm) => `Undo the failover of ${vm}? This DISCARDS everything written on the ` +
    `replica since failover (use failback to keep it).`,
  failback: (vm) => `Fail ${vm} back? The source is powered off and the replica's ` +
    `changes are copied to it.`,
};

let cy = null;
let snapshot = null;
let structure = "";
let busy = false;
let seenEvents = 0;

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function clock(epoch) {
  if (!epoch) return "";
  const d = new Date(epoch * 1000);
  return d.toTimeString().slice(0, 8) + "." + String(d.getMilliseconds()).padStart(3, "0");
}

function ago(epoch) {
  if (!epoch) return "never";
  const s = Math.max(0, Date.now() / 1000 - epoch);
  return s < 90 ? `${s.toFixed(0)} s ago` : `${(s / 60).toFixed(0)} min ago`;
}

// ----- the picture ---------------------------------------------------------------------

const GRAPH_STYLE = [
  { selector: "node.node", style: {
    "shape": "round-rectangle", "width": 136, "height": 50, "background-color": "data(fill)",
    "border-width": 2, "border-color": "data(border)", "label": "data(label)",
    "text-wrap": "wrap", "text-valign": "center", "font-size": 10.5, "color": "#222" } },
  { selector: "node.node.off", style: { "border-style": "dashed", "color": "#777" } },
  { selector: "node.segment", style: {
    "shape": "ellipse", "width": 116, "height": 44, "background-color": "#e8e8e8",
    "border-width": 1, "border-color": "#777", "label": "data(label)", "text-wrap": "wrap",
    "text-valign": "center", "font-size": 10 } },
  { selector: "node.site", style: {
    "label": "data(label)", "text-valign": "top", "text-halign": "center", "font-size": 12,
    "padding": 14, "background-opacity": 0.5, "border-width": 1, "shape": "round-rectangle",
    "color": "#333" } },
  { selector: "node.tenant", style: { "background-color": "#f7fbff", "border-color": "#6fa8dc" } },
  { selector: "node.provider", style: { "background-color": "#fffaf0", "border-color": "#e69138" } },
  { selector: "node.cloud", style: { "background-color": "#fff2cc", "border-color": "#bf9000" } },
  { selector: "edge.link", style: { "width": 1.5, "line-color": "#888", "curve-style": "straight" } },
  { selector: "edge.link.off", style: { "line-style": "dashed", "line-color": "#bbb" } },
  { selector: "edge.tunnel", style: {
    "width": 3, "line-style": "dashed", "curve-style": "unbundled-bezier",
    "control-point-distances": -50, "line-color": "#bbb", "label": "data(label)",
    "font-size": 10, "text-wrap": "wrap", "text-background-color": "#ffffff",
    "text-background-opacity": 0.85, "target-arrow-shape": "triangle",
    "target-arrow-color": "#bbb", "color": "#666" } },
  { selector: "edge.tunnel.connected", style: {
    "line-color": "#1f4e9a", "target-arrow-color": "#1f4e9a", "color": "#1f4e9a" } },
  { selector: "edge.tunnel.failed", style: {
    "line-color": "#c62828", "target-arrow-color": "#c62828", "color": "#c62828" } },
  { selector: "edge.tunnel.checking", style: { "line-color": "#6fa8dc" } },
];

function tunnelClass(info) {
  if (!info || info.power !== "on") return "tunnel off";
  if (info.connectivity === "Connected") return "tunnel connected";
  if (info.connectivity === "Failed connectivity") return "tunnel failed";
  return "tunnel checking";
}

function tunnelLabel(key, info, first) {
  if (!first) return "";
  if (!info || info.power !== "on") return `WireGuard ${key} (off)`;
  return `WireGuard ${key}: ${info.connectivity}\nhandshake ${ago(info.latest_handshake)}`;
}

function drawGraph(elements, tunnels) {
  const ids = elements.map((e) => e.data.id).join("|");
  const withTunnels = elements.map((e) => {
    if (!e.data.tunnel) return e;
    const info = tunnels[e.data.tunnel];
    return { ...e, classes: tunnelClass(info),
             data: { ...e.data, label: tunnelLabel(e.data.tunnel, info, e.data.id.endsWith(":0")) } };
  });
  if (!cy || ids !== structure) {
    if (cy) cy.destroy();
    structure = ids;
    cy = cytoscape({ container: $("graph"), elements: withTunnels, style: GRAPH_STYLE,
                     layout: { name: "preset" }, autoungrabify: true });
    cy.fit(undefined, 16);
    window.cy = cy;  // for tests and the curious, in the console
    return;
  }
  cy.batch(() => {
    for (const e of withTunnels) {
      const found = cy.getElementById(e.data.id);
      if (found.empty()) continue;
      found.data(e.data);
      if (e.classes !== undefined) found.classes(e.classes);
    }
  });
}

function drawLegend() {
  const legend = $("legend");
  if (legend.childElementCount) return;
  legend.append(el("strong", {}, "replica state:"));
  for (const [state, color] of Object.entries(STATE_COLORS)) {
    const chip = el("span", {}, state);
    chip.style.background = color;
    legend.append(chip);
  }
  const off = el("span", {}, "powered off (dashed)");
  off.style.background = "#eeeeee";
  legend.append(off);
}

// ----- the panels ----------------------------------------------------------------------

function drawOperation(op) {
  const box = $("operation");
  box.replaceChildren();
  if (!op) { box.append(el("p", { class: "quiet" }, "none yet")); return; }
  box.append(el("p", { "data-command": op.command, "data-outcome": op.outcome },
    el("strong", {}, `${op.command} ${op.vms.join(", ")}`), " ",
    el("span", { class: `outcome-${op.outcome}` }, op.outcome),
    op.started ? el("span", { class: "quiet" }, ` started ${clock(op.started)}`) : null));
  const byName = Object.fromEntries(op.steps.map((s) => [s.name, s]));
  const rows = op.planned || op.steps.map((s) => ({ step: s.step, name: s.name, done: true }));
  const list = el("ol", { class: "steps" });
  let currentMarked = false;
  for (const row of rows) {
    const done = row.done !== false;
    const step = byName[row.name];
    const item = el("li", { "data-step": row.name, "data-done": done ? "yes" : "no" },
      el("strong", {}, row.name), step ? ` ${clock(step.time)} ${step.message}` : "");
    if (!done && !currentMarked && op.outcome === "running") {
      item.className = "current";
      currentMarked = true;
    }
    list.append(item);
  }
  box.append(list);
}

function drawRecovery(recoveries, vms) {
  const box = $("recovery");
  box.replaceChildren();
  if (!recoveries.length) box.append(el("p", { class: "quiet" }, "no failover yet"));
  for (const r of recoveries) {
    box.append(el("p", { class: "recovery", "data-vms": r.vms.join(" ") },
      el("strong", {}, `${r.seconds.toFixed(3)} s`),
      ` recovery time of ${r.vms.join(", ")} (command start to first reply), ${clock(r.time)}`));
  }
  for (const vm of vms.filter((v) => v.rpo_seconds !== null && v.rpo_seconds !== undefined)) {
    box.append(el("p", { class: "rpo", "data-vm": vm.name },
      el("strong", {}, `RPO ${vm.rpo_seconds.toFixed(1)} s`),
      ` for ${vm.name}: writes after its restore point were not replicated`));
  }
}

function drawTunnels(tunnels) {
  const box = $("tunnels");
  box.replaceChildren();
  const keys = Object.keys(tunnels);
  if (!keys.length) box.append(el("p", { class: "quiet" }, "no NEA pair in this lab"));
  for (const key of keys) {
    const t = tunnels[key];
    const conn = t.connectivity || "-";
    box.append(el("div", { class: "tunnel", "data-tunnel": key, "data-power": t.power,
                           "data-connectivity": conn },
      el("strong", {}, key), ` power ${t.power}, `,
      el("span", { class: `conn-${conn.split(" ")[0]}` }, conn),
      t.power === "on" ? el("span", { class: "handshake", "data-epoch": t.latest_handshake || "" },
                            `, last handshake ${ago(t.latest_handshake)}`) : null,
      t.detail ? el("div", { class: "quiet" }, t.detail) : null));
  }
}

function drawArp(arp) {
  const box = $("arp");
  box.replaceChildren();
  for (const [key, rows] of Object.entries(arp)) {
    const table = el("table", { class: "arp", "data-network": key },
      el("caption", {}, `LAN ${key}`));
    for (const row of rows) {
      const who = row.answerers.length
        ? row.answerers.map((a) => el("div", {}, `${a.node} (${a.role}) `,
                                      el("span", { class: "mac" }, a.mac)))
        : [el("span", { class: "quiet" }, "nobody")];
      const cls = row.conflict ? "conflict" : (row.failed_over ? "failed-over" : "");
      table.append(el("tr", { class: cls, "data-address": row.address,
                              "data-answerers": row.answerers.map((a) => a.node).join(" "),
                              "data-macs": row.answerers.map((a) => a.mac).join(" ") },
        el("td", {}, row.address), el("td", {}, row.vm), el("td", {}, row.state || ""),
        el("td", {}, who, row.conflict ? el("div", {}, "IP conflict: two MACs answer") : null)));
    }
    box.append(table);
  }
}

function drawVms(vms, actions) {
  const body = $("vms").querySelector("tbody");
  body.replaceChildren();
  $("actions-head").textContent = actions.length ? "actions" : "";
  for (const vm of vms) {
    const state = el("span", { class: "state" }, vm.replica_state || "-");
    if (STATE_COLORS[vm.replica_state]) state.style.background = STATE_COLORS[vm.replica_state];
    const buttons = vm.replica ? actions.map((command) => el("button", {
      "data-action": command, "data-vm": vm.name, disabled: busy ? "" : null,
      onclick: () => act(command, vm.name) }, command)) : [];
    body.append(el("tr", { "data-vm": vm.name, "data-state": vm.replica_state || "",
                           "data-power": vm.power },
      el("td", {}, vm.name), el("td", {}, vm.address || "-"), el("td", {}, vm.power),
      el("td", {}, vm.replica || "-"), el("td", {}, state), el("td", {}, vm.restore_points),
      el("td", {}, vm.rpo_seconds != null ? `${vm.rpo_seconds.toFixed(1)} s` : "-"),
      el("td", {}, buttons)));
  }
}

function drawNodes(nodes) {
  const body = $("nodes").querySelector("tbody");
  body.replaceChildren();
  for (const n of nodes) {
    body.append(el("tr", { "data-node": n.name, "data-power": n.power, "data-state": n.state || "" },
      el("td", {}, n.name), el("td", {}, n.kind), el("td", {}, n.power),
      el("td", {}, n.state || "")));
  }
}

function eventLine(e) {
  const rest = Object.entries(e)
    .filter(([k, v]) => !["time", "event", "message"].includes(k) && v !== null &&
            !(Array.isArray(v) && !v.length) && !(typeof v === "object" && !Object.keys(v).length))
    .map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : v}`).join(" ");
  return `${clock(e.time)}  ${e.event.padEnd(26)} ${e.message || ""} ${rest}`.trimEnd();
}

function drawJournal(events, total) {
  const list = $("journal");
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 30;
  const fresh = total - seenEvents;
  list.replaceChildren(...events.map((e, i) => el("li", {
    class: seenEvents && i >= events.length - fresh ? "new" : null, "data-event": e.event,
  }, eventLine(e))));
  seenEvents = total;
  $("event-count").textContent = `(${total} events)`;
  if (atBottom) list.scrollTop = list.scrollHeight;
}

function render(data) {
  snapshot = data;
  $("lab-name").textContent = data.lab;
  $("lab-status").textContent = data.up ? `up` : "not up";
  $("mode").textContent = data.actions && data.actions.length ? "actions allowed" : "read-only";
  $("updated").textContent = `updated ${clock(data.time)}`;
  const message = $("message");
  const warnings = data.warnings || [];
  message.hidden = data.up && !warnings.length;
  message.textContent = data.up ? warnings.join("\n") : data.message;
  drawLegend();
  if (data.up) drawGraph(data.elements, data.tunnels);
  else if (cy) { cy.destroy(); cy = null; structure = ""; }  // the lab went down
  drawOperation(data.operation);
  drawRecovery(data.recoveries || [], data.vms || []);
  drawTunnels(data.tunnels || {});
  drawArp(data.arp || {});
  drawVms(data.vms || [], data.actions || []);
  drawNodes(data.nodes || []);
  drawJournal(data.events || [], data.event_count || 0);
  document.body.dataset.version = String(Number(document.body.dataset.version || 0) + 1);
}

// ----- actions -------------------------------------------------------------------------

async function act(command, vm) {
  if (busy) return;
  const question = (ACTION_QUESTIONS[command] || ((v) => `${command} ${v}?`))(vm);
  if (!window.confirm(question)) return;
  busy = true;
  const box = $("action-result");
  box.hidden = false;
  box.className = "busy";
  box.textContent = `running: netlab ${command} ${vm} …`;
  document.querySelectorAll("button[data-action]").forEach((b) => { b.disabled = true; });
  try {
    const response = await fetch("/api/action", {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ command, vm }),
    });
    const result = await response.json();
    box.className = result.ok ? "ok" : "refused";
    box.replaceChildren(el("div", { "data-ok": result.ok ? "yes" : "no" }, result.message),
      ...(result.warnings || []).map((w) => el("div", {}, `warning: ${w}`)));
  } catch (err) {
    box.className = "refused";
    box.textContent = `the server did not answer: ${err}`;
  } finally {
    busy = false;
    if (snapshot) drawVms(snapshot.vms || [], snapshot.actions || []);
  }
}

// ----- the stream ----------------------------------------------------------------------

function connect() {
  const live = $("live");
  const source = new EventSource("/api/stream");
  source.onopen = () => { live.textContent = "live"; live.dataset.live = "yes"; };
  source.onerror = () => { live.textContent = "reconnecting"; live.dataset.live = "no"; };
  source.onmessage = (message) => render(JSON.parse(message.data));
}

// handshake ages and tunnel labels tick between snapshots
setInterval(() => {
  if (!snapshot || !snapshot.up) return;
  document.querySelectorAll(".handshake").forEach((span) => {
    span.textContent = `, last handshake ${ago(Number(span.dataset.epoch) || null)}`;
  });
  if (cy) drawGraph(snapshot.elements, snapshot.tunnels);
}, 1000);

connect();
