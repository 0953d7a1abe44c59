// think serve's page: a chat over /v1/chat/completions, the runs of the run log, a run's trace.
// No framework and no build step: the DOM, fetch and a few functions. Text is always set as text.
"use strict";

const $ = (selector) => document.querySelector(selector);
const state = { key: localStorage.getItem("think.key") || "", keyRequired: false, messages: [], abort: null };

function needsKey() {
  if (state.keyRequired && !state.key) {
    askForKey("this server needs its API key");
    return true;
  }
  return false;
}

function element(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "text") node.textContent = value;
    else if (name === "class") node.className = value;
    else node.setAttribute(name, value);
  }
  for (const child of children) node.append(child);
  return node;
}

// -- the API, with the key -------------------------------------------------------------------
function headers(extra = {}) {
  return state.key ? { ...extra, Authorization: `Bearer ${state.key}` } : extra;
}

async function getJson(path) {
  const response = await fetch(path, { headers: headers() });
  if (response.status === 401) askForKey("this server needs its API key");
  const body = await response.json();
  if (!response.ok) throw new Error((body.error && (body.error.message || body.error)) || response.statusText);
  return body;
}

function askForKey(message) {
  $("#key-form").hidden = false;
  $("#key-message").textContent = message || "";
  $("#key-input").focus();
}

// -- pages ---------------------------------------------------------------------------------------
const pages = { chat: $("#chat-page"), runs: $("#runs-page"), run: $("#run-page") };

function route() {
  const path = location.pathname;
  const match = path.match(/^\/runs\/(\d+)$/);
  const page = match ? "run" : path === "/runs" ? "runs" : "chat";
  for (const [name, node] of Object.entries(pages)) node.hidden = name !== page;
  $("#nav-chat").classList.toggle("here", page === "chat");
  $("#nav-runs").classList.toggle("here", page !== "chat");
  if (page === "runs") showRuns();
  if (page === "run") showRun(match[1]);
  if (page === "chat") $("#prompt").focus();
}

function go(path) {
  history.pushState(null, "", path);
  route();
}

document.addEventListener("click", (event) => {
  const link = event.target.closest("a[data-link]");
  if (link && !event.ctrlKey && !event.metaKey && !event.shiftKey) {
    event.preventDefault();
    go(link.getAttribute("href"));
  }
});
window.addEventListener("popstate", route);

// -- chat ------------------------------------------------------------------------------------------
function turnNode(role) {
  const node = element("div", { class: `turn ${role}` });
  $("#conversation").append(node);
  return node;
}

function budgetText(think) {
  const budget = think.budget || {};
  const samples = budget.samples > 1 ? ` × ${budget.samples} samples` : "";
  return `tier ${think.tier} · ${think.strategy} · thinking ≤ ${budget.max_thinking}${samples}`;
}

async function send(text) {
  const effort = $("#effort").value;
  state.messages.push({ role: "user", content: text });
  turnNode("user").append(element("div", { class: "bubble", text }));
  const turn = turnNode("assistant");
  const status = element("div", { class: "status", text: "waiting…" });
  const thinkingText = element("div", { class: "thinking-text" });
  const summary = element("summary", { text: "thinking" });
  const details = element("details", { class: "thinking", open: "" }, summary, thinkingText);
  details.hidden = true;
  const answer = element("div", { class: "answer" });
  turn.append(status, details, answer);
  const body = { messages: state.messages, stream: true };
  if (effort !== "auto") body.reasoning_effort = effort;
  state.abort = new AbortController();
  busy(true);
  let plan = "", final = null, progress = { thinking_tokens: 0, answer_tokens: 0 };
  try {
    const response = await fetch("/v1/chat/completions", {
      method: "POST", body: JSON.stringify(body), signal: state.abort.signal,
      headers: headers({ "Content-Type": "application/json" }),
    });
    if (!response.ok) {
      if (response.status === 401) askForKey("this server needs its API key");
      const error = await response.json().catch(() => ({}));
      throw new Error((error.error && error.error.message) || `HTTP ${response.status}`);
    }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      const events = buffer.split("\n\n");
      buffer = events.pop();
      for (const event of events) {
        const data = event.split("\n").filter((line) => line.startsWith("data: ")).map((line) => line.slice(6)).join("\n");
        if (!data || data === "[DONE]") continue;
        const chunk = JSON.parse(data);
        if (chunk.error) throw new Error(chunk.error.message);
        const choice = (chunk.choices || [])[0] || {};
        const delta = choice.delta || {};
        if (chunk.think && !choice.finish_reason) {
          plan = budgetText(chunk.think);
          status.textContent = plan;
        }
        if (delta.reasoning_content) {
          details.hidden = false;
          thinkingText.append(delta.reasoning_content);
        }
        if (delta.content) answer.append(delta.content);
        if (chunk.think_progress) {
          const p = progress = chunk.think_progress;
          status.textContent = `${plan} · thinking ${p.thinking_tokens} · answer ${p.answer_tokens} tokens`;
        }
        if (choice.finish_reason && chunk.think) final = chunk.think;
      }
    }
    if (final) {
      const spent = (final.samples || []).reduce((sum, s) => sum + (s.thinking_tokens || 0), 0) || progress.thinking_tokens;
      status.textContent = `${budgetText(final)} · thought ${spent} tokens · answer ${progress.answer_tokens} · ` +
        `${final.finish_reason}${(final.events || []).some((e) => e.type === "budget_forced") ? " · budget forced" : ""}`;
      summary.textContent = `thinking · ${spent} tokens`;
      details.open = false;
    }
    state.messages.push({ role: "assistant", content: answer.textContent });
  } catch (error) {
    status.textContent = error.name === "AbortError" ? "stopped" : "";
    if (error.name !== "AbortError") turn.append(element("div", { class: "error", text: String(error.message || error) }));
    state.messages.pop();
  } finally {
    busy(false);
  }
}

function busy(on) {
  $("#send").disabled = on;
  $("#stop").hidden = !on;
}

$("#ask-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("#prompt").value.trim();
  if (!text || state.abort && !$("#stop").hidden || needsKey()) return;
  $("#prompt").value = "";
  send(text);
});
$("#prompt").addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey) {
    event.preventDefault();
    $("#ask-form").requestSubmit();
  }
});
$("#stop").addEventListener("click", () => state.abort && state.abort.abort());
$("#new-chat").addEventListener("click", () => {
  state.messages = [];
  $("#conversation").replaceChildren();
});

// -- runs ------------------------------------------------------------------------------------------
function filterQuery() {
  const params = new URLSearchParams();
  for (const [name, value] of new FormData($("#filters"))) if (value) params.set(name, value);
  return params.toString();
}

async function showRuns() {
  if (needsKey()) return;
  const query = filterQuery();
  const tbody = $("#runs-table tbody");
  $("#runs-message").textContent = "";
  try {
    const [{ runs, log }, { days }] = await Promise.all([getJson(`/think/runs?${query}`), getJson(`/think/ledger?${query}`)]);
    tbody.replaceChildren(...runs.map(runRow));
    if (!log) $("#runs-message").textContent = "this server does not log runs (--no-log)";
    else if (!runs.length) $("#runs-message").textContent = "no run matches";
    drawLedger(days);
  } catch (error) {
    $("#runs-message").textContent = String(error.message || error);
  }
}

function runRow(run) {
  const cell = (text, cls) => element("td", cls ? { class: cls, text } : { text });
  const link = element("a", { href: `/runs/${run.id}`, "data-link": "", text: `#${run.id}` });
  const thinking = run.error ? "" : `${run.spent_thinking_tokens} / ${run.max_thinking}${run.samples > 1 ? ` ×${run.samples}` : ""}`;
  return element("tr", {}, element("td", {}, link), cell(String(run.at).replace("T", " ").slice(5, 16), "when"),
    cell(run.source), cell(run.model || "?"), cell(run.tier || "?"), cell(thinking, "num"),
    cell(run.error ? "" : String(run.answer_tokens), "num"), cell(run.total_s == null ? "" : `${run.total_s.toFixed(2)} s`, "num"),
    cell(run.error ? "failed" : run.finish_reason), cell(run.prompt || "", "prompt"));
}

function drawLedger(days) {
  const box = $("#ledger");
  box.replaceChildren();
  if (!days.length) return;
  const ns = "http://www.w3.org/2000/svg";
  const svgNode = (tag, attrs) => {
    const node = document.createElementNS(ns, tag);
    for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
    return node;
  };
  const top = Math.max(1, ...days.map((d) => Math.max(d.fixed_budget_tokens, d.thinking_tokens)));
  const row = 34, label = 110, width = 640, bar = width - label - 10;
  const svg = svgNode("svg", { viewBox: `0 0 ${width} ${days.length * row + 24}`, role: "img",
    "aria-label": "thinking spent against the fixed budget, per day and tier" });
  days.forEach((day, i) => {
    const y = i * row;
    const name = svgNode("text", { x: 0, y: y + 14 });
    name.textContent = `${day.day.slice(5)} ${day.tier}`;
    const fixed = svgNode("rect", { class: "fixed", x: label, y: y + 2, height: 12, width: Math.max(1, bar * day.fixed_budget_tokens / top) });
    const spentWidth = Math.max(1, bar * day.thinking_tokens / top);
    const spent = svgNode("rect", { class: "spent", x: label, y: y + 16, height: 12, width: spentWidth });
    const saved = day.fixed_budget_tokens ? ` (saved ${Math.round(100 - 100 * day.thinking_tokens / day.fixed_budget_tokens)} %)` : "";
    const title = svgNode("title", {});
    title.textContent = `${day.runs} runs: ${day.thinking_tokens} thinking tokens spent, ${day.fixed_budget_tokens} at the fixed budget${saved}`;
    const figure = svgNode("text", { x: label + Math.min(spentWidth + 6, bar - 160), y: y + 26 });
    figure.textContent = `${day.thinking_tokens} / ${day.fixed_budget_tokens}${saved}`;
    svg.append(name, fixed, spent, figure, title);
  });
  const legend = svgNode("text", { x: label, y: days.length * row + 18 });
  legend.textContent = "light bar: every run at the deep tier's fixed budget · dark bar: thinking spent";
  svg.append(legend);
  box.append(svg);
}

$("#filters").addEventListener("submit", (event) => {
  event.preventDefault();
  showRuns();
});

// -- one run's trace -------------------------------------------------------------------------------
const SHADES = [[0.2, "p0"], [0.4, "p1"], [0.6, "p2"], [0.8, "p3"]];

function shadeClass(prob) {
  if (prob === null) return "";
  const shade = SHADES.find(([bound]) => prob < bound);
  return shade ? shade[1] : "";
}

function traceNode(parts, labels) {
  const node = element("div", { class: "trace" });
  for (const [text, prob, mark] of parts) {
    if (mark) {
      if (labels[mark]) node.append(element("span", { class: "marker", text: labels[mark] }));
      node.append(element("span", { class: "forced", text }));
    } else {
      const attrs = { class: shadeClass(prob), text };
      if (prob !== null) attrs.title = `p = ${prob.toFixed(2)}`;
      node.append(element("span", attrs));
    }
  }
  return node;
}

async function showRun(id) {
  const box = $("#run");
  if (needsKey()) return;
  box.replaceChildren(element("p", { class: "muted", text: "loading…" }));
  let data;
  try {
    data = await getJson(`/think/runs/${id}`);
  } catch (error) {
    box.replaceChildren(element("p", { class: "error", text: String(error.message || error) }));
    return;
  }
  const { run, pieces, labels } = data;
  const head = element("div", { class: "run-head" },
    element("h1", { text: `Run #${run.id}` }),
    element("p", { text: `${String(run.at).replace("T", " ").slice(0, 19)} · ${run.source} · ${run.model} (${run.family})` +
      (run.total_s == null ? "" : ` · ${run.total_s.toFixed(2)} s`) }),
    element("p", { text: `tier ${run.tier}` + (run.score == null ? "" : ` (score ${run.score.toFixed(2)}: ${(run.reasons || []).join(", ")})`) +
      ` · ${run.strategy} · thinking ${run.min_thinking || 0}–${run.max_thinking} · answer ≤ ${run.max_answer}` +
      (run.samples > 1 ? ` · ${run.samples} samples` : "") }));
  if (run.probe) {
    const p = run.probe;
    head.append(element("p", { text: `probe: ${p.tokens} answer tokens without thinking, confidence ` +
      `${p.confidence == null ? "unmeasured" : p.confidence.toFixed(2)} (threshold ${p.threshold}) → ` +
      (p.kept ? "kept" : `escalated to ${p.escalated_to || "thinking"}`) }));
  }
  head.append(element("p", { class: "prompt", text: `prompt: ${run.prompt || ""}` }));
  box.replaceChildren(head);
  if (run.error) {
    box.append(element("p", { class: "error", text: `failed: ${run.error}` }));
    return;
  }
  if (pieces.thinking.length) {
    box.append(element("h2", { text: `thinking · ${run.thinking_tokens || 0} tokens` +
      (run.confidence == null ? "" : ` · confidence ${run.confidence.toFixed(2)}`) }), traceNode(pieces.thinking, labels));
    if (pieces.thinking.some(([, prob]) => prob !== null)) {
      box.append(element("p", { class: "legend muted" }, "token probability: ",
        ...SHADES.map(([bound, cls]) => element("span", { class: cls, text: `■ < ${bound}` })), element("span", { text: "■ ≥ 0.8" })));
    }
  }
  box.append(element("h2", { text: `answer · ${run.answer_tokens || 0} tokens · ${run.finish_reason}` }), traceNode(pieces.answer, labels));
  if (run.vote && run.sample_runs) {
    const list = element("ol", { class: "samples" });
    run.sample_runs.forEach((s, i) => {
      const winner = i === run.vote.winner_sample;
      list.append(element("li", { class: winner ? "winner" : "", text: `${winner ? "★ " : ""}${s.thinking_tokens} thinking tokens · confidence ` +
        `${s.confidence == null ? "–" : s.confidence.toFixed(2)} · answer ${s.answer} · ${s.finish_reason}` }));
    });
    box.append(element("h2", { text: "vote" }), list,
      element("p", { text: `winner: ${run.vote.winner} (${run.vote.method}; ${run.vote.samples_run} of ${run.samples} samples run)` }));
  }
}

// -- theme and key ---------------------------------------------------------------------------------
function applyTheme(theme) {
  if (theme) document.documentElement.dataset.theme = theme;
  else delete document.documentElement.dataset.theme;
}
applyTheme(localStorage.getItem("think.theme"));
$("#theme").addEventListener("click", () => {
  const dark = document.documentElement.dataset.theme
    ? document.documentElement.dataset.theme === "dark" : matchMedia("(prefers-color-scheme: dark)").matches;
  const theme = dark ? "light" : "dark";
  localStorage.setItem("think.theme", theme);
  applyTheme(theme);
});
$("#key-button").addEventListener("click", () => { $("#key-form").hidden = !$("#key-form").hidden; });
$("#key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  state.key = $("#key-input").value.trim();
  localStorage.setItem("think.key", state.key);
  $("#key-form").hidden = true;
  route();
});

// Whether a key is needed is asked first: no request is sent that can only be refused.
fetch("/think/info").then((r) => r.json()).then((info) => {
  state.keyRequired = Boolean(info.key_required);
}).catch(() => {}).finally(route);
