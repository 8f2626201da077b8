// iqrah live recitation page: choose an ayah, recite (or upload), watch the words take their verdicts.
const $ = (id) => document.getElementById(id);
const FAMILY_CLASS = { madd: "r-madd", ghunnah: "r-ghunnah", qalqalah: "r-qalqalah", idgham: "r-idgham" };
const SAMPLE_RATE = 16000;

const state = {
  reference: null, words: [], ws: null, sessionId: null, recording: false, stopping: false,
  audio: [], sentSamples: 0, pitch: [], violations: [], audioCtx: null, stream: null, node: null,
  retries: 0, done: false,
};

// ---- messages and connection state ---------------------------------------------------------
function say(text) { const m = $("message"); m.textContent = text; m.hidden = !text; }
function connection(kind, text) { const c = $("connection"); c.dataset.state = kind; c.textContent = text; }

// ---- choosing what to recite ----------------------------------------------------------------
async function loadSurahs() {
  const surahs = await (await fetch("/api/surahs")).json();
  const select = $("surah");
  for (const s of surahs) {
    const o = document.createElement("option");
    o.value = s.number; o.dataset.ayahs = s.ayahs;
    o.textContent = `${s.number}. ${s.name_en} — ${s.name_ar} (${s.ayahs})`;
    select.append(o);
  }
  select.addEventListener("change", () => { $("ayah").value = 1; $("ayah-end").value = ""; showReference(); });
  for (const id of ["ayah", "ayah-end", "madd-monfasel", "madd-mottasel", "madd-aared"]) {
    $(id).addEventListener("change", showReference);
  }
}

function chosen() {
  const surah = +$("surah").value, ayah = +$("ayah").value, end = +$("ayah-end").value || null;
  const settings = { madd_monfasel: +$("madd-monfasel").value, madd_mottasel: +$("madd-mottasel").value,
                     madd_aared: +$("madd-aared").value };
  const spec = end && end !== ayah ? `${surah}:${ayah}-${end}` : `${surah}:${ayah}`;
  return { surah, ayah, end, settings, spec };
}

async function showReference() {
  const { spec, settings } = chosen();
  const query = new URLSearchParams(settings).toString();
  const response = await fetch(`/api/reference/${encodeURIComponent(spec)}?${query}`);
  const data = await response.json();
  if (!response.ok) { say(data.error.message); return false; }
  say("");
  state.reference = data;
  renderText(data);
  return true;
}

// The Uthmani text, a span per word, letters coloured by the tajweed rule of their unit.
function renderText(ref) {
  const box = $("ayah-text");
  box.replaceChildren();
  state.words = ref.words.map((word) => {
    const span = document.createElement("span");
    span.className = "word"; span.dataset.index = word.index;
    const colours = new Array(word.text.length).fill(null);
    for (let u = word.units[0]; u < word.units[1]; u++) {
      const unit = ref.units[u];
      const rule = unit.rules.find((r) => r.family !== "shadda");
      if (!rule) continue;
      const cls = rule.kind.startsWith("ikhfaa") || rule.kind === "iqlab" ? "r-ikhfaa" : FAMILY_CLASS[rule.family];
      for (let c = unit.char_span[0]; c < unit.char_span[1]; c++) colours[c] = cls;
    }
    let run = "", cls = undefined;
    const flush = () => {
      if (!run) return;
      const part = document.createElement("span");
      if (cls) part.className = cls;
      part.textContent = run; span.append(part); run = "";
    };
    [...word.text].forEach((ch, i) => { if (colours[i] !== cls) { flush(); cls = colours[i]; } run += ch; });
    flush();
    box.append(span, " ");
    return span;
  });
}

function markWord(index, verdict) {
  const span = state.words[index];
  if (!span) return;
  span.className = `word v-${verdict}`;
}

function markCurrent(index) {
  state.words.forEach((s, i) => s.classList.toggle("current", i === index));
}

// ---- feedback list, playback, scores --------------------------------------------------------
function addViolation(v) {
  const key = `${v.rule}:${v.phoneme_index}`;
  if (state.violations.includes(key)) return;
  state.violations.push(key);
  const li = document.createElement("li");
  const button = document.createElement("button");
  button.type = "button";
  const word = state.reference.words[v.word_index];
  button.innerHTML = `<span class="rule"></span><span class="en"></span><span class="ar" lang="ar"></span>`;
  button.querySelector(".rule").textContent = `${word ? word.text : ""} · ${v.rule} · ${v.time_range[0].toFixed(1)} s`;
  button.querySelector(".en").textContent = v.feedback.en;
  button.querySelector(".ar").textContent = v.feedback.ar;
  button.title = "Play this part of your recitation";
  button.addEventListener("click", () => play(v.time_range[0] - 0.3, v.time_range[1] + 0.3));
  li.append(button);
  $("violations").append(li);
}

function addContentError(e) {
  addViolation({ rule: `content:${e.kind}`, phoneme_index: e.word_indices[0], word_index: e.word_indices[0],
                 time_range: e.time_range || [0, 0], feedback: e.feedback });
}

async function play(from, to) {
  const samples = recorded();
  if (!samples.length) return;
  const ctx = state.audioCtx || new AudioContext();
  state.audioCtx = ctx;
  const a = Math.max(0, Math.floor(from * SAMPLE_RATE)), b = Math.min(samples.length, Math.ceil(to * SAMPLE_RATE));
  if (b <= a) return;
  const buffer = ctx.createBuffer(1, b - a, SAMPLE_RATE);
  const channel = buffer.getChannelData(0);
  for (let i = a; i < b; i++) channel[i - a] = samples[i] / 32768;
  const source = ctx.createBufferSource();
  source.buffer = buffer; source.connect(ctx.destination); source.start();
}

function recorded() {
  const total = state.audio.reduce((n, f) => n + f.length, 0);
  const out = new Int16Array(total);
  let at = 0;
  for (const f of state.audio) { out.set(f, at); at += f.length; }
  return out;
}

function showReport(report) {
  report.words.forEach((w) => markWord(w.index, w.verdict));
  markCurrent(-1);
  report.content_errors.forEach(addContentError);
  report.violations.forEach(addViolation);
  const s = report.scores;
  const box = $("scores");
  box.replaceChildren();
  for (const [name, value] of [["overall", s.overall], ["content", s.content], ["pronunciation", s.pronunciation],
                               ["tajweed", s.tajweed]]) {
    const div = document.createElement("div");
    div.innerHTML = `<b></b>${name}`;
    div.querySelector("b").textContent = Math.round(value);
    box.append(div);
  }
  box.hidden = false;
  box.dataset.ready = "true";
  if (report.gate.path === "content_mismatch") say(`This does not sound like ${report.spec}: check the ayah you chose.`);
  $("report").textContent = JSON.stringify(report, null, 2);
  $("report-details").hidden = false;
}

function resetFeedback() {
  $("violations").replaceChildren(); state.violations = [];
  $("scores").hidden = true; delete $("scores").dataset.ready;
  $("report-details").hidden = true; state.pitch = []; drawPitch();
  if (state.reference) renderText(state.reference);
}

// ---- live pitch --------------------------------------------------------------------------------
function pitchOf(frame) {
  // autocorrelation over 70-400 Hz on one 100 ms frame; 0 when unvoiced
  const n = frame.length; let energy = 0;
  for (let i = 0; i < n; i++) energy += frame[i] * frame[i];
  if (energy / n < 4e5) return 0;
  let best = 0, bestLag = 0;
  for (let lag = 40; lag <= 228; lag++) {
    let sum = 0;
    for (let i = 0; i + lag < n; i++) sum += frame[i] * frame[i + lag];
    if (sum > best) { best = sum; bestLag = lag; }
  }
  return best > 0.3 * energy ? SAMPLE_RATE / bestLag : 0;
}

function drawPitch() {
  const canvas = $("pitch"), ctx = canvas.getContext("2d");
  canvas.width = canvas.clientWidth;
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.strokeStyle = "#2471a3"; ctx.lineWidth = 2; ctx.beginPath();
  const points = state.pitch.slice(-canvas.width / 3);
  points.forEach((hz, i) => {
    if (!hz) return;
    const y = canvas.height - ((Math.log2(hz) - Math.log2(70)) / (Math.log2(400) - Math.log2(70))) * canvas.height;
    i && points[i - 1] ? ctx.lineTo(i * 3, y) : ctx.moveTo(i * 3, y);
  });
  ctx.stroke();
}

// ---- the stream ------------------------------------------------------------------------------
function openStream(resume) {
  const { surah, ayah, end, settings } = chosen();
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws/stream`);
  ws.binaryType = "arraybuffer";
  state.ws = ws;
  connection("connecting", resume ? "reconnecting…" : "connecting…");
  ws.onopen = () => {
    const data = { protocol: "1.0", surah, ayah, sample_rate: SAMPLE_RATE, encoding: "pcm_s16le", settings };
    if (end && end !== ayah) data.ayah_end = end;
    if (resume && state.sessionId) data.session_id = state.sessionId;
    ws.send(JSON.stringify({ type: "start", data }));
  };
  ws.onmessage = (event) => handle(JSON.parse(event.data));
  ws.onclose = (event) => {
    if (state.ws !== ws) return;
    state.ws = null;
    if ((state.recording || state.stopping) && event.code !== 1000 && event.code !== 1008 && state.retries < 5) {
      state.retries++;
      connection("reconnecting", "connection lost: reconnecting…");
      setTimeout(() => openStream(true), 500 * state.retries);
    } else if (event.code === 1013) {
      connection("error", "server busy"); say("The server is busy: try again in a moment.");
    } else if (!state.stopping && !state.done) {
      connection("idle", "not connected");
    }
  };
}

function handle(msg) {
  const { type, data } = msg;
  if (type === "ready") {
    state.sessionId = data.session_id; state.retries = 0;
    connection("connected", "connected");
    const from = data.resumed_from ? Math.round(data.resumed_from.audio_ms * SAMPLE_RATE / 1000) : 0;
    if (data.resumed_from) data.resumed_from.words.forEach((w) => markWord(w.index, w.verdict));
    resend(from);
    if (state.stopping) state.ws.send(JSON.stringify({ type: "stop" }));
  } else if (type === "partial") {
    markCurrent(data.current_word);
  } else if (type === "word") {
    markWord(data.index, data.verdict);
  } else if (type === "violation") {
    addViolation(data);
  } else if (type === "final") {
    state.stopping = false; state.done = true;
    showReport(data);
    connection("idle", "done");
    state.ws && state.ws.close(1000);
  } else if (type === "ping") {
    state.ws.send(JSON.stringify({ type: "pong" }));
  } else if (type === "error") {
    if (data.code === "unknown_ayah" || data.code === "bad_settings") say(data.message);
    else if (!data.resumable) say(`Server: ${data.message}`);
  }
}

function resend(fromSample) {
  // after a reconnect, send what the server does not hold yet
  const all = recorded();
  for (let i = fromSample; i < all.length; i += 1600) state.ws.send(all.slice(i, i + 1600).buffer);
  state.sentSamples = all.length;
}

function sendFrame(frame) {
  state.audio.push(frame);
  state.pitch.push(pitchOf(frame)); drawPitch();
  if (state.ws && state.ws.readyState === WebSocket.OPEN && state.sessionId) {
    state.ws.send(frame.buffer); state.sentSamples += frame.length;
  }
}

async function startRecording() {
  if (!(await showReference())) return;
  resetFeedback();
  try {
    state.stream = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1, echoCancellation: false } });
  } catch (err) {
    say(`The microphone is not available (${err.name}). Allow microphone access for this page, or upload a recording.`);
    return;
  }
  state.audio = []; state.sentSamples = 0; state.sessionId = null; state.retries = 0; state.done = false;
  const ctx = new AudioContext();
  state.audioCtx = ctx;
  await ctx.audioWorklet.addModule("/static/pcm-worklet.js");
  state.node = new AudioWorkletNode(ctx, "pcm-worklet");
  state.node.port.onmessage = (event) => sendFrame(new Int16Array(event.data));
  ctx.createMediaStreamSource(state.stream).connect(state.node);
  state.recording = true;
  $("record").textContent = "Stop"; $("record").setAttribute("aria-pressed", "true");
  openStream(false);
}

function stopRecording() {
  state.recording = false; state.stopping = true;
  state.node && state.node.disconnect();
  state.stream && state.stream.getTracks().forEach((t) => t.stop());
  $("record").textContent = "Record"; $("record").setAttribute("aria-pressed", "false");
  connection("connected", "analysing…");
  if (state.ws && state.ws.readyState === WebSocket.OPEN && state.sessionId) state.ws.send(JSON.stringify({ type: "stop" }));
}

// ---- upload ----------------------------------------------------------------------------------
async function upload(file) {
  if (!(await showReference())) return;
  resetFeedback();
  const { spec, settings } = chosen();
  const form = new FormData();
  form.append("file", file); form.append("ayah", spec);
  for (const [k, v] of Object.entries(settings)) form.append(k, v);
  connection("connected", "analysing upload…");
  const response = await fetch("/api/analyze", { method: "POST", body: form });
  const data = await response.json();
  if (!response.ok) { say(data.error.message); connection("error", "upload refused"); return; }
  try { await decodeForPlayback(file); } catch { /* playback is optional */ }
  showReport(data);
  connection("idle", "done");
}

async function decodeForPlayback(file) {
  const ctx = new OfflineAudioContext(1, 1, SAMPLE_RATE);
  const buffer = await ctx.decodeAudioData(await file.arrayBuffer());
  const resampled = new OfflineAudioContext(1, Math.ceil(buffer.duration * SAMPLE_RATE), SAMPLE_RATE);
  const src = resampled.createBufferSource(); src.buffer = buffer; src.connect(resampled.destination); src.start();
  const out = (await resampled.startRendering()).getChannelData(0);
  const pcm = new Int16Array(out.length);
  for (let i = 0; i < out.length; i++) pcm[i] = Math.max(-1, Math.min(1, out[i])) * 32767;
  state.audio = [pcm];
}

// ---- start -----------------------------------------------------------------------------------
$("record").addEventListener("click", () => (state.recording ? stopRecording() : startRecording()));
$("file").addEventListener("change", (e) => e.target.files[0] && upload(e.target.files[0]));
window.addEventListener("resize", drawPitch);
loadSurahs().then(showReference).catch(() => say("The server cannot be reached."));
