// Pivot's web page: playground (streaming chat), KV map of a sequence, and
// the server view. Plain JavaScript, no dependencies; every call goes to
// this server (docs/API.md), with the API key from session storage.
"use strict";
const $ = (id) => document.getElementById(id);
const TIER = { N: 0, H: 1, L: 2, D: 3 };
const COLORS = ["#ffffff", "#2563eb", "#ea7a12", "#c9ced6"];
const st = { messages: [], abort: null, presets: null, seq: "", snap: null, scores: null,
             watch: null, cursor: -1, needKey: false };

function key() { return sessionStorage.getItem("pivot-key") || ""; }
function headers(json) {
  const h = {};
  if (json) h["Content-Type"] = "application/json";
  if (key()) h["Authorization"] = "Bearer " + key();
  return h;
}
function askKey() {
  if (st.needKey) return;
  st.needKey = true;
  setStatus("This server needs an API key.");
  const d = $("key-dialog");
  if (!d.open) d.showModal();
  $("apikey").focus();
}
// fetch with the key; a 401 opens the key dialog and yields null
async function api(path, opts) {
  if (st.needKey) return null;
  const r = await fetch(path, Object.assign({ headers: headers(opts && opts.body) }, opts || {}));
  if (r.status === 401) { askKey(); return null; }
  return r;
}
async function apiJSON(path) {
  const r = await api(path);
  return r && r.ok ? r.json() : null;
}
function setStatus(t) { $("status").textContent = t; }
const mib = (b) => (b / 1048576).toFixed(b < 10485760 ? 2 : 1) + " MiB";

// ---- SSE over fetch (EventSource cannot send Authorization) ----
async function readSSE(resp, onData) {
  const rd = resp.body.getReader(), dec = new TextDecoder();
  let buf = "";
  for (;;) {
    const { value, done } = await rd.read();
    if (done) break;
    buf += dec.decode(value, { stream: true });
    let i;
    while ((i = buf.indexOf("\n\n")) >= 0) {
      const ev = buf.slice(0, i);
      buf = buf.slice(i + 2);
      for (const line of ev.split("\n"))
        if (line.startsWith("data: ") && line !== "data: [DONE]") onData(JSON.parse(line.slice(6)));
    }
  }
}

// ---- playground ----
async function loadPresets() {
  const p = await apiJSON("/v1/kv/presets");
  if (!p) return;
  st.presets = p;
  const sel = $("policy");
  sel.textContent = "";
  for (const x of p.data) {
    const o = document.createElement("option");
    o.value = x.name;
    o.textContent = x.name + (x.name === p.default ? " (server default)" : "") + (x.usable ? "" : " (not on this device)");
    o.disabled = !x.usable;
    sel.appendChild(o);
  }
  sel.value = p.default;
  showSpec();
}
function showSpec() {
  const x = st.presets && st.presets.data.find((d) => d.name === $("policy").value);
  $("policy-spec").textContent = x ? x.spec : "";
}
function requestBody() {
  const b = { messages: [], stream: true, stream_options: { include_usage: true } };
  const sys = $("system").value.trim();
  if (sys) b.messages.push({ role: "system", content: sys });
  b.messages.push(...st.messages);
  const num = (id) => ($(id).value === "" ? undefined : Number($(id).value));
  b.temperature = num("temperature"); b.top_p = num("top_p"); b.top_k = num("top_k");
  b.max_tokens = num("max_tokens");
  if ($("seed").value !== "") b.seed = num("seed");
  b.kv_policy = $("policy").value || undefined;
  for (const k of ["kv_budget", "kv_recent", "kv_sinks"]) if ($(k).value !== "") b[k] = num(k);
  if ($("kv_lo_bits").value) b.kv_lo_bits = $("kv_lo_bits").value;
  if ($("kv_layer_bits").value.trim()) b.kv_layer_bits = $("kv_layer_bits").value.trim();
  return b;
}
function addMsg(role, text) {
  const d = document.createElement("div");
  d.className = "msg " + role;
  const t = document.createElement("span");
  t.className = "text";
  t.textContent = text;
  d.appendChild(t);
  $("chat").appendChild(d);
  $("chat").scrollTop = $("chat").scrollHeight;
  return d;
}
function busy(b) {
  $("send").disabled = b; $("stop").disabled = !b;
  $("regenerate").disabled = b || !st.messages.some((m) => m.role === "assistant");
}
async function generate() {
  const div = addMsg("assistant", ""), text = div.querySelector(".text");
  const t0 = performance.now();
  let tFirst = 0, answer = "", usage = null;
  st.abort = new AbortController();
  busy(true);
  try {
    const r = await api("/v1/chat/completions", { method: "POST", body: JSON.stringify(requestBody()), signal: st.abort.signal });
    if (!r) throw new Error("no API key");
    if (!r.ok) throw new Error((await r.json()).error.message);
    await readSSE(r, (c) => {
      if (c.id && c.id !== st.seq) watchSeq(c.id);
      if (c.usage) usage = c.usage;
      const d = c.choices && c.choices[0] && c.choices[0].delta;
      if (d && d.content) {
        if (!tFirst) tFirst = performance.now();
        answer += d.content;
        text.textContent = answer;
        $("chat").scrollTop = $("chat").scrollHeight;
      }
    });
    st.messages.push({ role: "assistant", content: answer });
    div.appendChild(usageLine(usage, t0, tFirst, performance.now()));
  } catch (e) {
    if (e.name === "AbortError") {
      st.messages.push({ role: "assistant", content: answer });
      div.appendChild(usageLine(null, t0, tFirst, performance.now(), "stopped"));
    } else { div.className = "msg error"; text.textContent = "Error: " + e.message; }
  }
  st.abort = null;
  busy(false);
}
function usageLine(u, t0, t1, t2, note) {
  const s = document.createElement("span");
  s.className = "usage";
  const parts = [];
  if (note) parts.push(note);
  if (t1) parts.push("TTFT " + (t1 - t0).toFixed(0) + " ms");
  if (u) {
    const gen = u.completion_tokens;
    if (t1 && gen > 1) parts.push((((gen - 1) * 1000) / (t2 - t1)).toFixed(1) + " tok/s");
    parts.push(u.prompt_tokens + " prompt + " + gen + " completion tokens");
    const k = u.kv_cache;
    if (k) {
      parts.push("KV " + k.policy + ": " + mib(k.bytes_stored) + " stored vs " + mib(k.bytes_fp16) + " FP16 (" +
                 (k.bytes_fp16 ? ((100 * k.bytes_stored) / k.bytes_fp16).toFixed(0) : "–") + "%)");
      parts.push("tokens high/low/dropped " + k.tokens_high + "/" + k.tokens_low + "/" + k.tokens_dropped);
    }
  }
  s.textContent = parts.join(" · ");
  return s;
}
function send(ev) {
  if (ev) ev.preventDefault();
  const m = $("message").value.trim();
  if (!m || st.abort) return;
  st.messages.push({ role: "user", content: m });
  addMsg("user", m);
  $("message").value = "";
  generate();
}
function regenerate() {
  if (st.abort || !st.messages.length || st.messages[st.messages.length - 1].role !== "assistant") return;
  st.messages.pop();
  const all = $("chat").querySelectorAll(".msg.assistant");
  if (all.length) all[all.length - 1].remove();
  generate();
}

// ---- KV map ----
function decodeRLE(s, n) {
  const out = new Uint8Array(n);
  let p = 0;
  for (const m of s.matchAll(/([NHLD])(\d+)/g)) {
    const t = TIER[m[1]], k = Number(m[2]);
    out.fill(t, p, Math.min(n, p + k));
    p += k;
  }
  return out;
}
function setSnap(s) {
  const n = s.n_tokens || 0;
  s.grid = s.layers.map((l) => l.heads.map((h) => decodeRLE(h.rle, n)));
  s.demoted = s.layers.map((l) => l.heads.map((h) => new Map(h.demoted_at)));
  st.snap = s;
  st.scores = null;
  drawMap();
  showMem(s);
  showInfo();
}
function showMem(s) {
  const u = s.usage;
  if (!u) { $("memtext").textContent = "—"; return; }
  const pct = u.bytes_fp16 ? (100 * u.bytes_stored) / u.bytes_fp16 : 0;
  $("memfill").style.width = Math.min(100, pct).toFixed(1) + "%";
  $("membar").setAttribute("aria-valuenow", pct.toFixed(0));
  $("memtext").textContent = mib(u.bytes_stored) + " stored vs " + mib(u.bytes_fp16) + " in FP16 (" + pct.toFixed(0) +
    "%) · tokens high " + u.tokens_high + ", low " + u.tokens_low + ", dropped " + u.tokens_dropped +
    " (per KV head) · " + s.status;
  $("hibits").textContent = s.bits.high;
  $("lobits").textContent = s.bits.low_k ? s.bits.low_k + "/" + s.bits.low_v + "-bit K/V" + layerWidths(s) : "none in this policy";
}
/* The layers (or KV heads) whose low tier differs from the policy's widths
 * (layer-bits), runs of consecutive layers merged: "; layers 15–24: 8/4;
 * layer 18 head 2: 8/8". A layer whose heads agree carries low_k/low_v. */
function layerWidths(s) {
  const runs = [], dflt = s.bits.low_k + "/" + s.bits.low_v;
  (s.layers || []).forEach((l, i) => {
    if (l.low_k !== undefined) {
      const w = l.low_k + "/" + l.low_v, r = runs[runs.length - 1];
      if (w === dflt) return;
      if (r && r.head === undefined && r.last === i - 1 && r.w === w) r.last = i;
      else runs.push({ first: i, last: i, w: w });
      return;
    }
    l.heads.forEach((h, j) => {
      const w = h.low_k + "/" + h.low_v;
      if (h.low_k !== undefined && w !== dflt) runs.push({ first: i, last: i, head: j, w: w });
    });
  });
  return runs.map((r) => "; layer" + (r.first === r.last ? " " + r.first : "s " + r.first + "–" + r.last) +
                         (r.head === undefined ? "" : " head " + r.head) + ": " + r.w).join("");
}
function drawMap() {
  const c = $("kvmap"), s = st.snap, g = c.getContext("2d");
  const perHead = $("heads").checked;
  const w = Math.max(300, Math.floor(c.clientWidth || 600));
  if (!s || !s.grid.length) { c.width = w; c.height = 60; g.clearRect(0, 0, w, 60); return; }
  const L = s.grid.length, H = s.grid[0].length, n = s.n_tokens, rows = perHead ? L * H : L;
  const rh = Math.max(2, Math.min(10, Math.floor(360 / rows)));
  c.width = w; c.height = rows * rh;
  $("rowsheads").textContent = perHead ? ", each split into its " + H + " KV heads" : " (a cell shows the tier most of its heads hold)";
  const img = g.createImageData(w, rows * rh), px = img.data;
  const rgb = COLORS.map((h) => [1, 3, 5].map((i) => parseInt(h.substr(i, 2), 16)));
  for (let r = 0; r < rows; r++) {
    const l = perHead ? Math.floor(r / H) : r;
    for (let x = 0; x < w; x++) {
      const p = Math.floor((x * n) / w);
      let t;
      if (perHead) t = s.grid[l][r % H][p];
      else { const cnt = [0, 0, 0, 0]; for (let h = 0; h < H; h++) cnt[s.grid[l][h][p]]++;
             t = cnt.indexOf(Math.max(...cnt)); }
      const col = rgb[t];
      for (let y = r * rh; y < (r + 1) * rh - (rh > 3 ? 1 : 0); y++) {
        const o = (y * w + x) * 4;
        px[o] = col[0]; px[o + 1] = col[1]; px[o + 2] = col[2]; px[o + 3] = 255;
      }
    }
  }
  g.putImageData(img, 0, 0);
  if (st.cursor >= 0 && st.cursor < n) {
    const x = Math.floor(((st.cursor + 0.5) * w) / n);
    g.fillStyle = "#111"; g.fillRect(x, 0, 1, rows * rh);
  }
}
async function loadScores() {
  if (!st.snap || st.scores === st.snap.step || !st.seq) return;
  st.scores = st.snap.step;
  const s = await apiJSON("/v1/kv/sequences/" + encodeURIComponent(st.seq) + "?scores=1");
  if (s && st.snap && s.layers.length) { st.snap.scoreLayers = s.layers; showInfo(); }
}
function showInfo() {
  const s = st.snap, p = st.cursor, info = $("kvinfo");
  if (!s || !s.n_tokens) { info.textContent = s ? "Sequence " + s.id + ": " + s.status + ", nothing stored yet." : "Select or start a sequence."; return; }
  if (p < 0 || p >= s.n_tokens) {
    info.textContent = "Sequence " + s.id + " (" + s.status + ", " + s.policy + "): " + s.n_tokens + " positions, " +
      s.n_layers + " layers × " + s.n_kv_heads + " KV heads. Hover or use the arrow keys for a position.";
    return;
  }
  const names = ["not stored", "high", "low", "dropped"], lines = [];
  const tok = s.tokens && s.tokens[p] !== undefined ? JSON.stringify(s.tokens[p]) : "(text hidden: --webui-show-text)";
  lines.push("position " + p + (p < s.prompt_tokens ? " (prompt)" : " (generated)") + " · token " + tok);
  const L = s.grid.length, H = s.grid[0].length;
  const sum = [0, 0, 0, 0];
  for (let l = 0; l < L; l++) for (let h = 0; h < H; h++) sum[s.grid[l][h][p]]++;
  lines.push("over " + L * H + " (layer, head) cells: " + sum[1] + " high, " + sum[2] + " low, " + sum[3] + " dropped");
  const l0 = Math.min(L - 1, st.hoverLayer || 0), per = [];
  const hw = (h) => { const x = s.layers[l0] && s.layers[l0].low_k === undefined && s.layers[l0].heads[h];
                      return x && x.low_k !== undefined ? " (low " + x.low_k + "/" + x.low_v + ")" : ""; };
  for (let h = 0; h < H; h++) {
    const sc = s.scoreLayers && s.scoreLayers[l0].heads[h].score;
    const v = sc ? sc[p] : null, d = s.demoted[l0][h].get(p);
    per.push("h" + h + hw(h) + " " + names[s.grid[l0][h][p]] + (v !== null && v !== undefined ? " score " + v : "") +
             (d !== undefined ? " demoted at len " + d : ""));
  }
  const lw = s.layers[l0] && s.layers[l0].low_k !== undefined ? " (low tier " + s.layers[l0].low_k + "/" + s.layers[l0].low_v + "-bit K/V)" : "";
  lines.push("layer " + l0 + lw + ": " + per.join(" · "));
  info.textContent = lines.join("\n");
}
function watchSeq(id) {
  if (st.watch) st.watch.abort();
  st.seq = id;
  ensureOption(id);
  $("seq").value = id;
  st.cursor = -1;
  const ac = new AbortController();
  st.watch = ac;
  api("/v1/kv/sequences/" + encodeURIComponent(id) + "/events?interval_ms=250", { signal: ac.signal })
    .then((r) => (r && r.ok ? readSSE(r, (s) => { if (st.seq === id) setSnap(s); }) : null))
    .catch((e) => { if (e.name !== "AbortError") setStatus("KV map: " + e.message); });
}
function ensureOption(id, label) {
  const sel = $("seq");
  let o = [...sel.options].find((x) => x.value === id);
  if (!o) { o = document.createElement("option"); o.value = id; sel.insertBefore(o, sel.options[1] || null); }
  o.textContent = label || o.textContent || id;
}
async function refreshList() {
  const l = await apiJSON("/v1/kv/sequences");
  if (!l) return;
  for (const x of l.data)
    ensureOption(x.id, x.id + " — " + x.status + " — " + x.policy + " — " + (x.prompt_tokens + x.completion_tokens) + " tokens");
}
function moveCursor(p) {
  if (!st.snap) return;
  st.cursor = Math.max(0, Math.min(st.snap.n_tokens - 1, p));
  drawMap(); showInfo(); loadScores();
}

// ---- server view ----
async function refreshServer() {
  const s = await apiJSON("/v1/server/stats");
  if (!s) return;
  $("srv-running").textContent = s.running;
  $("srv-waiting").textContent = s.waiting;
  $("srv-tps").textContent = s.tokens_per_s.toFixed(1);
  $("srv-kv").textContent = mib(s.kv.bytes_stored) + " / " + mib(s.kv.bytes_fp16);
  const pct = s.kv.pool_limit ? (100 * s.kv.pool_used) / s.kv.pool_limit : 0;
  $("poolfill").style.width = Math.min(100, pct).toFixed(1) + "%";
  $("poolbar").setAttribute("aria-valuenow", pct.toFixed(0));
  $("pooltext").textContent = mib(s.kv.pool_used) + " used, " + mib(s.kv.pool_free) + " free of " + mib(s.kv.pool_limit) +
    " (peak " + mib(s.kv.pool_peak) + "; reserved by admitted requests " + mib(s.kv.bytes_reserved) +
    (s.kv.policies.length ? ": " + s.kv.policies.map((p) => p.policy + " " + mib(p.bytes_reserved) + " in " + p.requests).join(", ") : "") + ")";
  drawChart(s.history);
}
function drawChart(h) {
  const c = $("chart"), g = c.getContext("2d");
  const w = (c.width = Math.max(300, Math.floor(c.clientWidth || 600))), ht = c.height, pad = 34;
  g.clearRect(0, 0, w, ht);
  g.font = "11px sans-serif"; g.fillStyle = "#5b6470";
  const span = 300, maxPool = Math.max(1, ...h.map((x) => x.pool_used)) / 1048576, maxT = Math.max(1, ...h.map((x) => x.tokens_per_s));
  g.fillText(maxPool.toFixed(1) + " MiB", 2, 10); g.fillText("0", 2, ht - 14);
  g.fillText(maxT.toFixed(0) + " tok/s", w - 60, 10);
  g.fillText("−5 min", pad, ht - 2); g.fillText("now", w - 40, ht - 2);
  const X = (age) => pad + ((span - Math.min(span, age)) / span) * (w - 2 * pad);
  const line = (col, f) => {
    g.strokeStyle = col; g.lineWidth = 2; g.beginPath();
    h.forEach((x, i) => { const y = ht - 16 - f(x) * (ht - 30); if (i) g.lineTo(X(x.age_s), y); else g.moveTo(X(x.age_s), y); });
    g.stroke();
  };
  line("#0f766e", (x) => x.pool_used / 1048576 / maxPool);
  line("#9333ea", (x) => x.tokens_per_s / maxT);
}

// ---- wiring ----
function init() {
  $("key-form").addEventListener("submit", () => {
    sessionStorage.setItem("pivot-key", $("apikey").value);
    st.needKey = false; setStatus(""); start();
  });
  $("key-change").addEventListener("click", () => { st.needKey = false; askKey(); });
  $("chat-form").addEventListener("submit", send);
  $("message").addEventListener("keydown", (e) => { if (e.key === "Enter" && !e.shiftKey) send(e); });
  $("stop").addEventListener("click", () => st.abort && st.abort.abort());
  $("regenerate").addEventListener("click", regenerate);
  $("clear").addEventListener("click", () => { st.messages = []; $("chat").textContent = ""; busy(false); });
  $("policy").addEventListener("change", showSpec);
  $("seq").addEventListener("change", () => $("seq").value && watchSeq($("seq").value));
  $("heads").addEventListener("change", drawMap);
  const map = $("kvmap");
  map.addEventListener("mousemove", (e) => {
    if (!st.snap || !st.snap.n_tokens) return;
    const r = map.getBoundingClientRect(), L = st.snap.grid.length, H = st.snap.grid[0].length;
    const rows = $("heads").checked ? L * H : L, row = Math.floor(((e.clientY - r.top) / r.height) * rows);
    st.hoverLayer = $("heads").checked ? Math.floor(row / H) : row;
    moveCursor(Math.floor(((e.clientX - r.left) / r.width) * st.snap.n_tokens));
  });
  map.addEventListener("keydown", (e) => {
    if (!st.snap) return;
    const step = e.shiftKey ? 10 : 1, k = e.key;
    if (k === "ArrowRight") moveCursor(st.cursor + step);
    else if (k === "ArrowLeft") moveCursor(st.cursor < 0 ? 0 : st.cursor - step);
    else if (k === "ArrowDown") { st.hoverLayer = Math.min(st.snap.grid.length - 1, (st.hoverLayer || 0) + 1); showInfo(); }
    else if (k === "ArrowUp") { st.hoverLayer = Math.max(0, (st.hoverLayer || 0) - 1); showInfo(); }
    else if (k === "Home") moveCursor(0);
    else if (k === "End") moveCursor(st.snap.n_tokens - 1);
    else return;
    e.preventDefault();
  });
  window.addEventListener("resize", () => { drawMap(); });
  busy(false);
  start();
  setInterval(() => { if (!st.needKey) { refreshList(); refreshServer(); } }, 2000);
}
async function start() {
  const m = await apiJSON("/v1/models");
  if (!m) return;
  $("model").textContent = m.data[0].id;
  await loadPresets();
  refreshList();
  refreshServer();
}
document.addEventListener("DOMContentLoaded", init);
