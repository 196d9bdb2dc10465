// callguard console: live updates for server-rendered pages (no build step, no framework).
// The pages are complete without this script; it keeps the live board current
// from the /api/v1/events stream, runs the pause timers and sends control requests.
"use strict";

const csrf = () => document.querySelector('meta[name="csrf-token"]').content;
let skew = 0; // server PBX clock minus the browser clock, in seconds

function announce(text) {
  const region = document.getElementById("announce");
  if (region) region.textContent = text;
}

function fmt(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  return Math.floor(s / 60) + ":" + String(s % 60).padStart(2, "0");
}

function tickTimers() {
  const now = Date.now() / 1000 + skew;
  document.querySelectorAll("td.timer[data-since]").forEach((cell) => {
    cell.textContent = fmt(now - parseFloat(cell.dataset.since));
  });
}

function fillRow(row, call) {
  row.dataset.call = call.call_id;
  row.dataset.state = call.state;
  const link = row.querySelector(".call-link");
  link.textContent = call.call_id;
  link.href = "/calls/" + encodeURIComponent(call.call_id);
  const parties = row.querySelector(".parties");
  parties.textContent = "";
  call.parties.filter((p) => p.present).forEach((p, i) => {
    if (i) parties.append(", ");
    const span = document.createElement("span");
    span.className = "party" + (p.staff ? " staff" : "");
    span.textContent = (p.number || "withheld") + (p.jurisdiction ? " " : "");
    if (p.jurisdiction) {
      const small = document.createElement("small");
      small.textContent = p.jurisdiction;
      span.append(small);
    }
    parties.append(span);
  });
  row.querySelector(".rule").textContent = call.regime || "";
  row.querySelector(".decision").textContent = call.decision || "…";
  row.querySelector(".state .badge").textContent = call.state;
  row.querySelector(".state .reasons").textContent = call.mute_reasons.join(", ");
  const timer = row.querySelector(".timer");
  if (call.paused_since) {
    timer.dataset.since = call.paused_since;
  } else {
    delete timer.dataset.since;
    timer.textContent = "";
  }
  const pause = row.querySelector("button.pause");
  const resume = row.querySelector("button.resume");
  if (pause) pause.hidden = call.mute_reasons.length > 0;
  if (resume) resume.hidden = !call.mute_reasons.includes("pause");
}

function rowFor(callId) {
  return document.querySelector('#board tbody tr[data-call="' + CSS.escape(callId) + '"]');
}

function apply(call) {
  const board = document.getElementById("board");
  if (!board) return;
  if (typeof call.now === "number") skew = call.now - Date.now() / 1000;
  let row = rowFor(call.call_id);
  if (call.ended) {
    if (row) row.remove();
  } else {
    if (!row) {
      const tpl = document.getElementById("row-template");
      row = tpl.content.querySelector("tr").cloneNode(true);
      board.tBodies[0].append(row);
      announce("New call " + call.call_id);
    }
    fillRow(row, call);
  }
  document.getElementById("empty").hidden = board.tBodies[0].rows.length > 0;
  tickTimers();
}

async function control(button) {
  const row = button.closest("tr");
  const action = button.dataset.action;
  button.disabled = true;
  try {
    const response = await fetch("/api/v1/calls/" + encodeURIComponent(row.dataset.call) + "/" + action, {
      method: "POST", headers: { "X-CSRF-Token": csrf(), "Accept": "application/json" }, credentials: "same-origin",
    });
    const body = await response.json();
    if (!response.ok) throw new Error(body.detail || response.statusText);
    apply(body);
    announce("Call " + body.call_id + ": " + body.state);
  } catch (err) {
    announce(action + " failed: " + err.message);
    alert(action + " failed: " + err.message);
  } finally {
    button.disabled = false;
  }
}

function startBoard() {
  const board = document.getElementById("board");
  if (!board) return;
  skew = parseFloat(board.dataset.now) - Date.now() / 1000;
  board.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-action]");
    if (button) control(button);
  });
  const status = document.getElementById("live-status");
  const source = new EventSource("/api/v1/events");
  source.addEventListener("open", () => { status.textContent = "live."; });
  source.addEventListener("error", () => { status.textContent = "reconnecting…"; });
  source.addEventListener("call", (event) => apply(JSON.parse(event.data).call));
  source.addEventListener("resync", () => window.location.reload());
  setInterval(tickTimers, 250);
}

function startPlayer() {
  const form = document.getElementById("listen-form");
  if (!form) return;
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const reason = form.elements.reason.value.trim();
    const player = document.getElementById("player");
    const url = form.action + "?reason=" + encodeURIComponent(reason);
    player.src = url;
    player.hidden = false;
    player.play().catch(() => {});
    player.focus();
    announce("Playing recording; your reason was logged.");
  });
}

document.addEventListener("DOMContentLoaded", () => { startBoard(); startPlayer(); });
