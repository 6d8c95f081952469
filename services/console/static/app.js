// orderbus live dashboard: plain JavaScript, no build step, no network but this server.
// Live events arrive over the notification service's WebSocket (/ws, feeds "activity" and
// "notifications"); the rest is polled from /dashboard/api/state every two seconds.
"use strict";

const SERVICES = ["order", "inventory", "billing", "notification"];
const CHIPS_PER_LANE = 60;
const PUSHES_KEPT = 30;
const STATE_EVERY_MS = 2000;
const PING_EVERY_MS = 10000;

const $ = (selector) => document.querySelector(selector);
const lanes = new Map(); // instance -> {root, head, events, service}
const clientId = "dashboard-" + Math.random().toString(36).slice(2, 10);
let token = readToken();
let socket = null;
let retries = 0;

// The token travels in the URL's fragment (never sent to a server, never in a log); keep it
// for this tab and take it out of the address bar.
function readToken() {
  const match = /(?:^#|&)token=([^&]+)/.exec(location.hash);
  if (match) {
    sessionStorage.setItem("orderbus-token", decodeURIComponent(match[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
  return sessionStorage.getItem("orderbus-token");
}

function el(tag, attrs = {}, text = "") {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  if (text) node.textContent = text;
  return node;
}

// The last eight characters: an id begins with the time it was made (version 7), the same for
// every id of the same minute, and ends in random digits.
const short = (id) => (id || "-").slice(-8);

// ---- live feed -------------------------------------------------------------------------

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  socket = new WebSocket(`${scheme}://${location.host}/ws`);
  socket.onopen = () => {
    retries = 0;
    // (Re)subscribe: a new connection, maybe to another instance, knows nothing of the old.
    follow();
    socket.send(JSON.stringify({ type: "ping", client_id: clientId }));
  };
  socket.onmessage = (message) => onMessage(JSON.parse(message.data));
  socket.onclose = () => {
    setConnection(false, "reconnecting…");
    const delay = Math.min(10000, 500 * 2 ** retries++);
    setTimeout(connect, delay);
  };
}

// Every order's notifications and the activity need the admin token where one is set: shown
// first, in order, on this connection (the server answers each message in turn).
function follow() {
  if (!socket || socket.readyState !== WebSocket.OPEN) return;
  if (token) socket.send(JSON.stringify({ type: "auth", token }));
  socket.send(JSON.stringify({ type: "feeds", feeds: ["activity", "notifications"] }));
  if (token) socket.send(JSON.stringify({ type: "subscribe", all: true }));
}

function setConnection(on, text) {
  const badge = $("#connection");
  badge.className = "badge " + (on ? "on" : "off");
  badge.textContent = text;
}

function onMessage(message) {
  if (message.type === "hello") setConnection(true, `live via ${message.instance}`);
  else if (message.type === "activity") onActivity(message);
  else if (message.type === "notification") onPush(message);
  else if (message.type === "error") console.warn("server refused a message:", message);
}

function onActivity(activity) {
  const lane = ensureLane(activity.service, activity.instance);
  updateHead(lane, activity, 0);
  for (const event of activity.events) addChip(lane, event);
}

function onPush(push) {
  const list = $("#pushes");
  const item = el("li", { "data-order": push.order_id || "", "data-kind": push.kind || "" },
    `order ${short(push.order_id)} ${push.kind || ""}: handled by ${push.handled_by}, delivered by ${push.delivered_by}`);
  list.prepend(item);
  while (list.children.length > PUSHES_KEPT) list.lastChild.remove();
}

// ---- lanes -------------------------------------------------------------------------------

function ensureLane(service, instance) {
  if (lanes.has(instance)) return lanes.get(instance);
  const root = el("div", { class: "lane", "data-instance": instance, "data-service": service });
  const head = el("div", { class: "lane-head" });
  const events = el("div", { class: "events" });
  root.append(head, events);
  const lane = { root, head, events, service };
  lanes.set(instance, lane);
  placeLanes();
  return lane;
}

function placeLanes() {
  const container = $("#lanes");
  container.replaceChildren();
  const sorted = [...lanes.entries()].sort(([a, x], [b, y]) =>
    SERVICES.indexOf(x.service) - SERVICES.indexOf(y.service) || a.localeCompare(b));
  let current = null;
  for (const [, lane] of sorted) {
    if (lane.service !== current) {
      current = lane.service;
      container.append(el("h3", { class: "service-title" }, `${current} (group ${current})`));
    }
    container.append(lane.root);
  }
}

function updateHead(lane, activity, heardAgo) {
  const c = activity.counters;
  const gone = heardAgo > 6;
  lane.root.classList.toggle("gone", gone);
  lane.root.classList.toggle("paused", Boolean(activity.paused));
  const counters = activity.service === "order"
    ? `published ${c.published}`
    : `handled ${c.handled} · dup ${c.duplicate} · failed ${c.failed} · dead ${c.dead_lettered}`;
  const extra = [];
  if (activity.paused) extra.push("PAUSED");
  if (activity.fail_next) extra.push(`next ${activity.fail_next} fail`);
  if (activity.service === "notification") extra.push(`${activity.clients} browser(s)`);
  if (gone) extra.push("gone");
  lane.head.replaceChildren(
    el("div", { class: "name" }, activity.instance),
    el("div", { class: "counters", "data-counters": "" }, counters),
    el("div", { class: "counters" }, extra.join(" · ")),
  );
  if (activity.service !== "order" && !gone) {
    const button = el("button", { type: "button" }, activity.paused ? "resume" : "pause");
    button.onclick = () => control(activity.paused ? "resume" : "pause", { instance: activity.instance });
    lane.head.append(button);
  }
}

function addChip(lane, event) {
  const attempt = event.attempt ? ` #${event.attempt}` : "";
  const chip = el("span", {
    class: `chip ${event.outcome}`,
    "data-outcome": event.outcome,
    "data-type": event.type,
    "data-order": event.order_id || "",
    title: `${event.type} ${event.event_id}\n${event.outcome}${event.error ? ": " + event.error : ""}`,
  }, `${event.type.replace(/_/g, " ")} ${short(event.order_id)}${attempt} ${Math.round(event.latency_ms)}ms`);
  lane.events.prepend(chip);
  while (lane.events.children.length > CHIPS_PER_LANE) lane.events.lastChild.remove();
}

// ---- polled state ------------------------------------------------------------------------

async function refreshState() {
  try {
    const response = await fetch("/dashboard/api/state");
    if (response.ok) renderState(await response.json());
  } catch (error) {
    setConnection(false, "server unreachable");
  } finally {
    setTimeout(refreshState, STATE_EVERY_MS);
  }
}

function renderState(state) {
  $("#backend").textContent = `backend: ${state.backend}`;
  $("#served").textContent = `page served by ${state.served_by}`;
  const caps = state.capabilities;
  const yes = (flag) => (flag ? '<b class="yes">yes</b>' : '<b class="no">no</b>');
  $("#guarantees").innerHTML = [
    `fan-out across services ${yes(caps.fan_out)}`,
    `competing replicas ${yes(caps.competing_consumers)}`,
    `offline catch-up ${yes(caps.offline_catch_up)}`,
    `redelivery ${yes(caps.redelivery)}`,
    `ordering: ${caps.ordering}`,
  ].map((text) => `<span>${text}</span>`).join("");
  for (const activity of state.instances) {
    updateHead(ensureLane(activity.service, activity.instance), activity, activity.heard_s_ago);
  }
  for (const [instance, lane] of lanes) {
    if (!state.instances.some((a) => a.instance === instance)) lane.root.classList.add("gone");
  }
  const show = (value) => (value === null || value === undefined ? "-" : String(value));
  const rows = ["inventory", "billing", "notification"].map((service) => {
    const progress = state.progress[service] || {};
    const backlog = state.backlog[service] || {};
    const tr = el("tr", { "data-service": service });
    tr.append(el("td", {}, service), el("td", {}, show(progress.published)),
      el("td", {}, show(progress.processed)), el("td", {}, show(backlog.lag)),
      el("td", {}, show(backlog.pending)));
    const dead = el("td", { "data-dead-letters": "" }, show(backlog.dead_letters));
    if (backlog.dead_letters > 0) dead.className = "alert";
    tr.append(dead);
    return tr;
  });
  $("#queues tbody").replaceChildren(...rows);
  $("#token-form").hidden = Boolean(token) || !state.admin;
  if (!state.admin) say("Controls are off: start with ORDERBUS_ADMIN_TOKEN set (orderbus up does).");
}

// ---- controls ----------------------------------------------------------------------------

function say(text) {
  $("#result").textContent = text;
}

async function control(action, body) {
  if (!token) {
    say("Enter the admin token first.");
    $("#token-form").hidden = false;
    return null;
  }
  const response = await fetch(`/dashboard/api/${action}`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
    body: JSON.stringify(body),
  });
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) {
    if (response.status === 401) $("#token-form").hidden = false;
    say(`${action}: ${response.status} ${typeof answer.detail === "string" ? answer.detail : "refused"}`);
    return null;
  }
  return answer;
}

$("#place").onsubmit = async (event) => {
  event.preventDefault();
  const count = Number($("#order-count").value);
  const scarce = $("#order-scarce").checked;
  const answer = await control("orders", { count, scarce });
  if (answer) say(`placed ${answer.placed} order(s)` + (answer.refused.length ? `, ${answer.refused.length} refused` : ""));
};

$("#fail").onsubmit = async (event) => {
  event.preventDefault();
  const service = $("#fail-service").value;
  const count = Number($("#fail-count").value);
  const answer = await control("fail", { service, count });
  if (answer) say(`the next ${count} new event(s) will fail in every ${service} instance (${answer.instances.length})`);
};

$("#token-form").onsubmit = (event) => {
  event.preventDefault();
  token = $("#token").value.trim();
  sessionStorage.setItem("orderbus-token", token);
  $("#token-form").hidden = true;
  follow();
  say("Token set for this tab.");
};

setInterval(() => {
  if (socket && socket.readyState === WebSocket.OPEN) {
    socket.send(JSON.stringify({ type: "ping", client_id: clientId }));
  }
}, PING_EVERY_MS);

if (token) say("Ready: the admin token is set for this tab.");
connect();
refreshState();
