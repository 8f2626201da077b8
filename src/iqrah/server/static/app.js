// iqrah live recitation page: choose an ayah, recite (or upload), watch the words take their
// verdicts, then read the scores and what explains them. Each recording is one "take" with its own
// microphone graph, WebSocket session and the whole audio, kept so that a lost session can be
// replayed to a new one and any part of the recitation can be heard again.
import { applyLanguage, arabicDigits, language, setLanguage, t } from "./i18n.js";
import { allAttempts, clearAttempts, progressBySpec, saveAttempt } from "./history.js";
import * as view from "./view.js";

const $ = (id) => document.getElementById(id);
const SAMPLE_RATE = 16000, FRAME = 1600;
const MAX_RETRIES = 12; // reconnections in a row (backing off to 3 s: about half a minute)
const MAX_FRESH = 2; // new sessions opened for one take when the server lost the old one
const FINAL_TIMEOUT_MS = 90000; // no report this long after Stop: give up and say so
// audio sent again goes in bursts of 25 s at 1.5x real time (the server takes 2x beyond a 30 s burst)
const RESEND_BURST_S = 25, RESEND_PACE = 1.5;

const page = {
  surahs: [], reference: null, spans: [], focus: null, take: null, report: null, play: null,
  status: ["st_idle", "idle"], busy: false, asked: 0,
  reciters: { key: null, list: null }, // the server's reference reciters for the chosen ayah
  entry: { key: null, data: null }, // what it measured of the chosen one's recording of that ayah
};

// ---- the API key, for a server that requires one (IQRAH_API_KEYS) ----------------------------
// Open the page once as /?key=YOUR_KEY: the key is kept in this browser and taken off the address.
const urlKey = new URLSearchParams(location.search).get("key");
if (urlKey) { localStorage.setItem("iqrah.key", urlKey); history.replaceState(null, "", location.pathname); }
const API_KEY = localStorage.getItem("iqrah.key");

async function api(path, options = {}) {
  const response = await fetch(path, { ...options, headers: API_KEY ? { "X-API-Key": API_KEY } : {} });
  if (response.status === 401) say(t("needs_key"));
  return response;
}

// ---- messages, status, busy ------------------------------------------------------------------
function say(text, kind = "error") {
  const m = $("message");
  m.textContent = text || ""; m.hidden = !text; m.dataset.kind = kind;
}

function status(key, state = "idle") {
  page.status = [key, state];
  const c = $("connection");
  c.dataset.state = state; c.dataset.i18n = key; c.textContent = t(key);
}

function setBusy(busy, recording = false) {
  page.busy = busy;
  document.body.classList.toggle("busy", busy);
  for (const el of document.querySelectorAll("#choose select, #choose input, #file, #word-panel button")) el.disabled = busy;
  const record = $("record");
  record.disabled = busy && !recording;
  record.dataset.i18n = recording ? "stop" : "record";
  record.textContent = t(record.dataset.i18n);
  record.setAttribute("aria-pressed", String(recording));
}

// ---- choosing what to recite ------------------------------------------------------------------
const CHOICES = ["surah", "ayah", "ayah-end", "mode", "madd-monfasel", "madd-mottasel", "madd-aared", "reciter"];

async function loadSurahs() {
  const response = await api("/api/surahs");
  if (response.status === 401) return false; // said so
  page.surahs = await response.json();
  fillSurahs();
  restoreChoice();
  $("surah").addEventListener("change", () => { $("ayah").value = 1; $("ayah-end").value = ""; });
  for (const id of CHOICES) {
    $(id).addEventListener("change", () => {
      rememberChoice();
      showPlayReference();
      if (id === "reciter") { noteReciter(); loadEntry(); return; } // the text stays: only the comparison changes
      if (id === "mode") {
        if (page.reference) drawText();
        if (page.report) renderReport(page.report);
        return;
      }
      page.focus = null; showReference();
    });
  }
}

// The last choice (ayah, mode, settings) is where the next visit starts.
function rememberChoice() {
  localStorage.setItem("iqrah.choice", JSON.stringify(Object.fromEntries(CHOICES.map((id) => [id, $(id).value]))));
}

function restoreChoice() {
  let saved = {};
  try { saved = JSON.parse(localStorage.getItem("iqrah.choice")) || {}; } catch { /* start afresh */ }
  for (const id of CHOICES) if (saved[id] !== undefined) $(id).value = saved[id];
  if (!$("surah").value) $("surah").value = "1";
}

// A row of the progress table: practise that ayah (or word span) again.
function chooseSpec(spec) {
  const [surah, ayah, words] = spec.split(":");
  const [first, last] = ayah.split("-");
  $("surah").value = surah; $("ayah").value = first; $("ayah-end").value = last || "";
  rememberChoice();
  page.focus = words ? { surah: +surah, ayah: +first, words: words.includes("-") ? words : `${words}-${words}`,
                         back: `${surah}:${first}` } : null;
  showReference().then(() => $("ayah-text").scrollIntoView({ block: "nearest" }));
}

function fillSurahs() {
  const select = $("surah"), value = select.value || "1";
  select.replaceChildren(...page.surahs.map((s) => {
    const o = document.createElement("option");
    o.value = s.number;
    o.textContent = language() === "ar" ? `${arabicDigits(s.number)}. ${s.name_ar} (${arabicDigits(s.ayahs)})`
      : `${s.number}. ${s.name_en} — ${s.name_ar} (${s.ayahs})`;
    return o;
  }));
  select.value = value;
}

function surahName(n) {
  const s = page.surahs[n - 1];
  return s ? (language() === "ar" ? s.name_ar : s.name_en) : "";
}

function specLabel(spec) { return `${surahName(+spec.split(":")[0])} ${spec}`; }

// What to recite: the chosen ayah or range, or the word or ayah being practised again.
function chosen() {
  const settings = { madd_monfasel: +$("madd-monfasel").value, madd_mottasel: +$("madd-mottasel").value,
                     madd_aared: +$("madd-aared").value };
  // a reference reciter compares one whole ayah (its recordings are per ayah); one the server's
  // list for that ayah lacks is not sent (the note says so): the take would be refused
  const name = $("reciter").value.trim();
  const single = (spec) => (name && /^\d+:\d+$/.test(spec) && !reciterMissing(spec) ? name : null);
  if (page.focus) {
    const { surah, ayah, words } = page.focus;
    const spec = words ? `${surah}:${ayah}:${words}` : `${surah}:${ayah}`;
    return { surah, ayah, end: null, words, settings, spec, reciter: single(spec) };
  }
  const surah = +$("surah").value, ayah = +$("ayah").value, end = +$("ayah-end").value || null;
  const spec = end && end !== ayah ? `${surah}:${ayah}-${end}` : `${surah}:${ayah}`;
  return { surah, ayah, end: end && end !== ayah ? end : null, words: null, settings, spec, reciter: single(spec) };
}

// Show the text of the current choice; false (and a message) when it cannot be shown.
function showReference() {
  const { spec, settings } = chosen();
  const query = new URLSearchParams(settings).toString();
  const asked = ++page.asked;
  if (page.reference && page.referenceKey === `${spec}?${query}`) return (page.latest = Promise.resolve(true)); // shown
  page.latest = fetchReference(spec, query).then((result) => {
    if (asked !== page.asked) return page.latest; // a later choice was made meanwhile: its answer counts
    if (result.error !== undefined) { say(result.error); page.referenceKey = null; return false; }
    say("");
    page.reference = result.data; page.referenceKey = `${spec}?${query}`;
    drawText();
    refreshReciters();
    return true;
  });
  return page.latest;
}

async function fetchReference(spec, query) {
  try {
    const response = await api(`/api/reference/${encodeURIComponent(spec)}?${query}`);
    const data = await response.json();
    if (response.ok) return { data };
    return { error: response.status === 401 ? t("needs_key") : data.error ? data.error.message : t("unreachable") };
  } catch {
    return { error: t("unreachable") };
  }
}

// The text on the page: the chosen reference, or the one a report judged (below).
function drawText(shown = page.reference) {
  page.shown = shown;
  showPlayReference();
  page.spans = view.renderText(shown, { hidden: $("mode").value === "memorise", ayahEnds: !page.focus?.words });
  $("word-panel").hidden = true;
  const banner = $("practice-banner");
  banner.hidden = !page.focus;
  if (page.focus) {
    const { surah, ayah, words } = page.focus;
    const what = words ? t("practising_word", { n: words.split("-")[0], spec: `${surah}:${ayah}` }) : `${surah}:${ayah}`;
    $("practice-what").textContent = t("practising", { what: `${surahName(surah)} ${what}` });
    $("back-whole").textContent = t("back_whole", { spec: page.focus.back });
  }
}

// ---- reference reciters ---------------------------------------------------------------------------
function slug(name) { return name.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-+|-+$/g, ""); }

// The reciters the server measured for the chosen ayah (all of them for a range) as the field's
// suggestions; then the note and the measured entry of the one chosen.
async function refreshReciters() {
  const { surah, ayah, end } = chosen();
  const key = end ? "all" : `${surah}:${ayah}`;
  if (page.reciters.key !== key) {
    page.reciters = { key, list: null };
    let list = null;
    try {
      const response = await api(end ? "/api/reciters" : `/api/reciters?surah=${surah}&ayah=${ayah}`);
      if (response.ok) list = (await response.json()).reciters;
    } catch { /* no list: the name typed goes as it is, and the server judges it */ }
    if (page.reciters.key !== key) return; // a later choice was made meanwhile
    page.reciters.list = list;
    $("reciters").replaceChildren(...(list || []).map((r) => {
      const o = document.createElement("option"); o.value = r.name; return o;
    }));
    const field = $("reciter");
    field.dataset.i18nPlaceholder = list && !list.length && !end ? "reciter_none_here" : "reciter_none";
    field.placeholder = t(field.dataset.i18nPlaceholder);
  }
  noteReciter();
  loadEntry();
}

// The list's entry of the reciter typed (matched as the server matches names: by slug), or null.
function measuredReciter() {
  const name = $("reciter").value.trim(), list = page.reciters.list;
  return (name && list && list.find((r) => r.slug === slug(name))) || null;
}

// The server's list for this single ayah is known and lacks the reciter typed.
function reciterMissing(spec) {
  const list = page.reciters.list;
  return !!list && page.reciters.key === spec && !measuredReciter();
}

function noteReciter() {
  const name = $("reciter").value.trim(), { spec, words } = chosen(), list = page.reciters.list;
  let text = "";
  if (name && list && !words && page.reciters.key === spec && !measuredReciter()) {
    text = list.length ? t("reciter_not_here", { name, spec, names: list.map((r) => r.name).join(", ") })
      : t("reciters_none_here", { spec });
  }
  $("reciter-note").textContent = text; $("reciter-note").hidden = !text;
}

// What the server measured of the chosen reciter's recording of the ayah (words, pitch, audio_url).
async function loadEntry() {
  const found = measuredReciter(), { surah, ayah, end } = chosen();
  const key = found && !end ? `${found.slug}/${surah}/${ayah}` : null;
  if (page.entry.key === key) return;
  page.entry = { key, data: null };
  if (key) {
    try {
      const response = await api(`/api/reciters/${key}`);
      if (response.ok && page.entry.key === key) page.entry.data = await response.json();
    } catch { /* the page works without it: no reference curve, no word of the reference */ }
  }
  if (page.entry.key === key) drawPitch();
}

// The entry's span of one word of the page (a word of `page.shown`), or null. A reference recording
// of an ayah 1 may have been judged with the basmala before it: its word indices then count those.
function referenceWord(word) {
  const entry = page.entry.data;
  if (!entry || !word || word.ayah === 0 || entry.spec !== `${word.surah}:${word.ayah}`) return null;
  const ayahWords = page.reference && !page.focus?.words
    ? page.reference.words.filter((w) => w.ayah === word.ayah).length : 0;
  const extra = ayahWords ? Math.max(0, (entry.verdicts || []).length - ayahWords) : 0;
  const found = entry.words.find(([index]) => index === word.number - 1 + extra);
  return found ? { start: found[1], end: found[2] } : null;
}

// The pitch view of a take: the learner's pitch and, with a measured reference, its contour on the
// learner's words timed so far. Before any word is timed nothing of the reference is drawn: drawn at
// its own pace it would look early or late when the learner is only slower or faster, and the view
// compares melody, not tempo (the tempo has its own score).
function drawPitch(take = page.take) {
  const entry = page.entry.data;
  let reference = null;
  if (entry && entry.pitch) {
    const pairs = [];
    for (const [index, span] of take ? take.spans : []) {
      const ref = referenceWord(page.shown && page.shown.words[index]);
      if (ref) pairs.push([[ref.start, ref.end], span]);
    }
    reference = { name: entry.reciter || $("reciter").value.trim(), segments: view.referenceCurve(entry.pitch, pairs) };
  }
  view.drawPitch(take ? take.pitch : [], { reference, whole: !!take && take.finished && take.pitch.length > 0 });
}

// A word of the reference recording: from its start to its end. timeupdate comes only every 250 ms
// or so: a timer pauses it on time, looking again at the media clock when it fires (timers and the
// clock drift apart), and timeupdate is the backstop.
function playReferenceSpan(url, from, to) {
  if (page.referenceAudio) page.referenceAudio.pause();
  clearTimeout(page.spanTimer);
  const audio = (page.referenceAudio = new Audio(url));
  const stop = () => { clearTimeout(page.spanTimer); audio.pause(); };
  const watch = () => {
    const left = (to - audio.currentTime) / audio.playbackRate;
    if (left <= 0.01) stop();
    else page.spanTimer = setTimeout(watch, Math.max(10, left * 1000));
  };
  audio.addEventListener("timeupdate", () => { if (audio.currentTime >= to) stop(); });
  audio.addEventListener("playing", () => { clearTimeout(page.spanTimer); watch(); });
  audio.addEventListener("loadedmetadata", () => {
    audio.currentTime = from;
    audio.play().catch(missing);
  }, { once: true });
  const missing = () => say(t("no_reference_audio", { name: $("reciter").value.trim() }), "info");
  audio.addEventListener("error", missing, { once: true });
}

// ---- a take: one recording, live or uploaded ----------------------------------------------------
function newTake(source) {
  const take = { source, spec: chosen(), audio: [], pitch: [], spans: new Map(), ws: null, ready: false, sessionId: null,
                 recording: false, stopping: false, finished: false, reported: false, catchingUp: false,
                 waiting: false, retries: 0, fresh: 0, mic: null, timer: null, resendTimer: null };
  if (page.take) endTake(page.take, null);
  page.take = take;
  return take;
}

function recorded(take) {
  const out = new Int16Array(take.audio.reduce((n, f) => n + f.length, 0));
  let at = 0;
  for (const f of take.audio) { out.set(f, at); at += f.length; }
  return out;
}

// Stop the microphone graph of a take for good: no frame of it reaches a later take.
function releaseMic(take) {
  const mic = take.mic;
  if (!mic) return;
  take.mic = null;
  mic.node.port.onmessage = null;
  mic.source.disconnect(); mic.node.disconnect();
  mic.stream.getTracks().forEach((track) => track.stop());
  mic.ctx.close().catch(() => {});
}

// The take is over (report shown, or it cannot go on): free the microphone and the connection.
function endTake(take, statusKey = "st_idle", state = "idle") {
  // a live take that ends without a report judged nothing: its live marks go too
  if (take.source === "live" && !take.finished && !take.reported && page.take === take) resetFeedback();
  take.finished = true; take.recording = false; take.stopping = false;
  clearTimeout(take.timer); clearTimeout(take.resendTimer);
  releaseMic(take);
  if (take.ws) { const ws = take.ws; take.ws = null; ws.close(1000); }
  if (statusKey) { setBusy(false); status(statusKey, state); }
  if (page.take === take) drawPitch(); // the whole take now
}

function resetFeedback() {
  $("violations").replaceChildren(); $("why").replaceChildren();
  for (const id of ["scores", "why-box", "prosody-box", "praise", "report-details", "findings-title", "word-panel"]) $(id).hidden = true;
  delete $("scores").dataset.ready;
  page.report = null;
  drawPitch(null);
  if (page.reference) drawText();
}

// ---- recording ----------------------------------------------------------------------------------
async function startRecording() {
  if (!window.isSecureContext || !navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    say(t("insecure")); return;
  }
  if (page.starting) return; // a second click while the microphone opens
  page.starting = true;
  try {
    await openMicrophone();
  } finally {
    page.starting = false;
  }
}

async function openMicrophone() {
  if (!(await showReference())) return;
  say(""); resetFeedback();
  let stream, ctx;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: { channelCount: 1, echoCancellation: false } });
    ctx = new AudioContext();
    await ctx.audioWorklet.addModule("/static/pcm-worklet.js");
  } catch (err) {
    if (stream) stream.getTracks().forEach((track) => track.stop());
    if (ctx) ctx.close().catch(() => {});
    say(t("mic_refused", { name: err.name })); return;
  }
  const take = newTake("live");
  const node = new AudioWorkletNode(ctx, "pcm-worklet");
  const source = ctx.createMediaStreamSource(stream);
  take.mic = { stream, ctx, node, source };
  node.port.onmessage = (event) => onFrame(take, new Int16Array(event.data));
  source.connect(node);
  take.recording = true;
  setBusy(true, true);
  openStream(take, false);
}

function onFrame(take, frame) {
  if (!take.recording || page.take !== take) return;
  take.audio.push(frame);
  take.pitch.push(view.pitchOf(frame)); drawPitch(take);
  if (take.ready && !take.catchingUp && take.ws && take.ws.readyState === WebSocket.OPEN) take.ws.send(frame.buffer);
}

function stopRecording() {
  const take = page.take;
  if (!take || !take.recording) return;
  take.recording = false; take.stopping = true;
  releaseMic(take);
  setBusy(true);
  status("st_analysing", "connected");
  if (take.ready && !take.catchingUp && take.ws && take.ws.readyState === WebSocket.OPEN) send(take, "stop");
  // else: the stream is (re)connecting or catching up, and sends stop once the server has everything
  take.timer = setTimeout(() => { if (!take.finished) { say(t("lost")); endTake(take, "st_error", "error"); } },
                          FINAL_TIMEOUT_MS);
}

// ---- the stream -----------------------------------------------------------------------------------
function send(take, type, data = {}) { take.ws.send(JSON.stringify({ type, data })); }

function sendStart(take, sessionId) {
  const { surah, ayah, end, words, settings, reciter } = take.spec;
  const data = { protocol: "1.0", surah, ayah, sample_rate: SAMPLE_RATE, encoding: "pcm_s16le", settings };
  if (end) data.ayah_end = end;
  if (reciter) data.reciter = reciter;
  if (words) data.words = words;
  if (sessionId) { data.session_id = sessionId; data.resume_token = take.resumeToken; }
  if (API_KEY) data.api_key = API_KEY;
  send(take, "start", data);
}

function openStream(take, resume) {
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws/stream`);
  ws.binaryType = "arraybuffer";
  take.ws = ws; take.ready = false;
  if (!resume) status("st_connecting", "connecting");
  ws.onopen = () => sendStart(take, resume ? take.sessionId : null);
  ws.onmessage = (event) => { if (take.ws === ws && !take.finished) handle(take, JSON.parse(event.data)); };
  ws.onclose = (event) => {
    if (take.ws !== ws || take.finished) return;
    take.ws = null; take.ready = false;
    if (event.code === 1013) { say(t("busy")); endTake(take, "st_busy", "busy"); return; }
    if (event.code === 1008) { endTake(take, "st_error", "error"); return; } // its error was shown
    if (take.retries >= MAX_RETRIES) { say(t("lost")); endTake(take, "st_error", "error"); return; }
    take.retries++;
    status("st_reconnecting", "reconnecting");
    setTimeout(() => { if (!take.finished && page.take === take) openStream(take, true); }, Math.min(3000, 300 * take.retries));
  };
}

function handle(take, { type, data }) {
  if (type === "ready") {
    take.sessionId = data.session_id; take.resumeToken = data.resume_token; take.ready = true; take.retries = 0;
    status(take.stopping ? "st_analysing" : "st_listening", "connected");
    const resumed = data.resumed_from;
    if (resumed) resumed.words.forEach((w) => view.markWord(page.spans, w.index, w.verdict, { tentative: true }));
    resend(take, resumed ? Math.round((resumed.audio_ms * SAMPLE_RATE) / 1000) : 0);
  } else if (type === "partial") {
    view.markCurrent(page.spans, data.current_word);
  } else if (type === "word") {
    view.markWord(page.spans, data.index, data.verdict, { tentative: true });
    // its span (revised as later audio moves it): the reference's contour of that word follows it
    if (Number.isFinite(data.start) && Number.isFinite(data.end)) {
      take.spans.set(data.index, [data.start, data.end]); drawPitch(take);
    }
    if (data.prosody) view.markProsody(page.spans, data.index, data.prosody);
  } else if (type === "violation") {
    $("findings-title").hidden = false;
    view.addFinding($("violations"), data, page.shown, { tentative: true, onPlay: play });
  } else if (type === "final") {
    take.reported = true;
    showReport(data, take);
    endTake(take, "st_done", "idle");
  } else if (type === "ping") {
    send(take, "pong");
  } else if (type === "error") {
    onError(take, data);
  }
}

// Send the server the audio it lacks, from `fromSample` on, then go on live (and send stop if
// the reciter stopped meanwhile). Frames recorded during the catch-up are sent with it.
function resend(take, fromSample) {
  take.catchingUp = true;
  clearTimeout(take.resendTimer);
  const ws = take.ws;
  let at = fromSample;
  const step = () => {
    if (take.ws !== ws || !take.ready || take.finished) return; // a new connection starts again
    const all = recorded(take);
    const end = Math.min(all.length, at + RESEND_BURST_S * SAMPLE_RATE);
    for (; at < end; at = Math.min(at + FRAME, end)) ws.send(all.slice(at, Math.min(at + FRAME, end)).buffer);
    if (recorded(take).length - at > SAMPLE_RATE) {
      take.resendTimer = setTimeout(step, (RESEND_BURST_S * 1000) / RESEND_PACE);
      return;
    }
    const rest = recorded(take).slice(at); // less than a second recorded meanwhile
    if (rest.length) ws.send(rest.buffer);
    take.catchingUp = false;
    if (take.stopping) send(take, "stop");
  };
  step();
}

function onError(take, data) {
  const { code, message, resumable } = data;
  if ((code === "session_not_found" || code === "store_unavailable") && take.fresh < MAX_FRESH) {
    // the server lost the session (restarted without Redis): a new session gets the whole recording
    take.fresh++; take.sessionId = null;
    sendStart(take, null);
    return;
  }
  if (resumable) return; // the connection closes; the stream reconnects and resumes
  if (code === "too_fast" && data.audio_ms !== undefined) {
    // faster than the server takes audio: send again from what it holds, when it says
    if (take.waiting) return;
    take.waiting = true; take.catchingUp = true;
    clearTimeout(take.resendTimer);
    take.resendTimer = setTimeout(() => {
      take.waiting = false;
      if (take.ready && !take.finished) resend(take, Math.round((data.audio_ms * SAMPLE_RATE) / 1000));
    }, data.retry_after_ms || 1000);
    return;
  }
  if (code === "unknown_reciter") { // the session was refused before it began: back to ready
    say(t("unknown_reciter", { name: take.spec.reciter }));
    endTake(take, "st_idle");
  } else if (code === "no_speech") { // only silence, or too faint: nothing to assess
    say(t("no_speech", { message: message.replace(/\.$/, "") }));
    endTake(take, "st_idle");
  } else if (["unknown_ayah", "bad_settings", "session_too_large", "bad_audio_format", "unsupported_protocol",
              "model_unavailable", "session_not_found", "store_unavailable", "unauthorized", "rate_limited",
              "server_busy", "session_taken_over", "idle_timeout"].includes(code)) {
    say(message);
    endTake(take, "st_error", "error");
  } else {
    say(t("server_error", { message }));
  }
}

// ---- the report ---------------------------------------------------------------------------------
function showReport(report, take) {
  page.report = report;
  renderReport(report);
  take.spans = new Map(report.words.filter((w) => Number.isFinite(w.start) && Number.isFinite(w.end))
    .map((w) => [w.index, [w.start, w.end]]));
  $("scores").dataset.ready = "true";
  saveAttempt(report, { mode: $("mode").value, source: take.source }).then(refreshProgress);
  const results = $("results");
  if (results.getBoundingClientRect().top > window.innerHeight * 0.5) results.scrollIntoView({ block: "start" });
}

// The final report is the authority: it replaces every live verdict and finding.
function renderReport(report) {
  const judged = judgedText(report);
  if (judged !== page.shown) drawText(judged);
  report.words.forEach((w) => view.markWord(page.spans, w.index, w.verdict));
  page.spans.forEach((s) => s.classList.remove("hidden-word", "tentative"));
  view.markCurrent(page.spans, -1);
  const list = $("violations");
  list.replaceChildren();
  report.content_errors.forEach((e) => view.addFinding(list, view.contentFinding(e), page.shown, { onPlay: play }));
  report.violations.forEach((v) => view.addFinding(list, v, page.shown, { onPlay: play }));
  $("findings-title").hidden = list.children.length === 0;
  view.renderScores(report);
  view.explainScores(report, page.shown);
  view.renderProsody(report.prosody, page.spans);
  if (report.gate.path === "content_mismatch") {
    say(t("mismatch", { spec: report.spec, name: surahName(+report.spec.split(":")[0]) }));
  }
  $("report").textContent = JSON.stringify(report, null, 2);
  $("report-details").hidden = false;
}

// An upload of an ayah 1 may be judged with the basmala before it (the server tries both): its
// report then has basmala words (ayah 0) first, and word indices count them. Show them too, so
// that every index of the report names the word it judged.
function judgedText(report) {
  const ref = page.reference, extra = report.words.length - ref.words.length;
  if (extra <= 0 || !report.words.slice(0, extra).every((w) => w.ayah === 0)) return ref;
  const basmala = report.words.slice(0, extra).map((w) => ({ ...w, units: [0, 0] }));
  return { ...ref, words: [...basmala, ...ref.words.map((w) => ({ ...w, index: w.index + extra }))] };
}

// ---- playback -------------------------------------------------------------------------------------
function play(from, to) {
  const take = page.take;
  if (!take || !take.audio.length) return;
  const samples = recorded(take);
  const a = Math.max(0, Math.floor(from * SAMPLE_RATE)), b = Math.min(samples.length, Math.ceil(to * SAMPLE_RATE));
  if (b <= a) return;
  page.play = page.play || new AudioContext();
  const buffer = page.play.createBuffer(1, b - a, SAMPLE_RATE);
  const channel = buffer.getChannelData(0);
  for (let i = a; i < b; i++) channel[i - a] = samples[i] / 32768;
  const source = page.play.createBufferSource();
  source.buffer = buffer; source.connect(page.play.destination); source.start();
}

// The chosen reciter's recording of the ayah (/audio/{slug}/{surah}/{ayah}), when the server has it.
function referenceUrl() {
  const reciter = $("reciter").value.trim(), { surah, ayah, end } = chosen();
  if (!reciter || end) return null; // recordings are per ayah
  return slug(reciter) ? `/audio/${slug(reciter)}/${surah}/${ayah}` : null; // a word practised: its whole ayah
}

function showPlayReference() {
  $("play-reference").hidden = !referenceUrl();
  $("legend-prosody").hidden = !$("reciter").value.trim();
}

async function playReference() {
  const url = referenceUrl();
  if (!url) return;
  if (page.referenceAudio) page.referenceAudio.pause();
  try {
    const response = await fetch(url, { headers: { Range: "bytes=0-0", ...(API_KEY ? { "X-API-Key": API_KEY } : {}) } });
    if (response.status === 404) { say(t("no_reference_audio", { name: $("reciter").value.trim() }), "info"); return; }
    if (!response.ok) { say(t("unreachable")); return; }
  } catch {
    say(t("unreachable")); return;
  }
  say("");
  page.referenceAudio = new Audio(url);
  page.referenceAudio.play().catch(() => say(t("no_reference_audio", { name: $("reciter").value.trim() }), "info"));
}

// ---- practising one word or ayah again ----------------------------------------------------------
function openWordPanel(index) {
  const word = page.shown && page.shown.words[index];
  if (!word || page.busy) return;
  const timed = page.report && page.report.words.find((w) => w.index === index);
  $("word-panel-word").textContent = word.text;
  const findings = $("word-panel-findings");
  findings.replaceChildren();
  if (page.report) {
    const mine = [...page.report.content_errors.filter((e) => e.word_indices.includes(index)).map(view.contentFinding),
                  ...page.report.violations.filter((v) => v.word_index === index)];
    for (const f of mine) {
      const li = document.createElement("li");
      li.append(view.quoted(f.feedback[language()] || f.feedback.en));
      findings.append(li);
    }
  }
  const hear = $("hear-word");
  hear.hidden = !(timed && timed.start !== null && page.take && page.take.audio.length);
  hear.onclick = () => play(timed.start - 0.2, timed.end + 0.2);
  const ref = referenceWord(word), url = page.entry.data && page.entry.data.audio_url;
  $("hear-reference").hidden = !(ref && url);
  $("hear-reference").querySelector(".name").textContent = ref ? page.entry.data.reciter || $("reciter").value.trim() : "";
  $("hear-reference").onclick = () => playReferenceSpan(url, ref.start, ref.end);
  const wholeAyah = page.shown.words.filter((w) => w.ayah === word.ayah).length === page.shown.words.length;
  $("redo-ayah").hidden = wholeAyah || word.ayah === 0;
  $("redo-word").hidden = word.ayah === 0; // a basmala is recited with its ayah
  const back = page.focus ? page.focus.back : chosen().spec;
  $("redo-word").onclick = () => practise({ surah: word.surah, ayah: word.ayah, words: `${word.number}-${word.number}`, back });
  $("redo-ayah").onclick = () => practise({ surah: word.surah, ayah: word.ayah, words: null, back });
  $("word-panel").hidden = false;
  $("word-panel").dataset.index = index;
}

async function practise(focus) {
  page.focus = focus;
  await startRecording();
}

// ---- upload -----------------------------------------------------------------------------------------
async function upload(file) {
  if (!(await showReference())) return;
  say(""); resetFeedback();
  const take = newTake("upload");
  const { spec, settings } = take.spec;
  const form = new FormData();
  form.append("file", file); form.append("ayah", spec);
  if (take.spec.reciter) form.append("reciter", take.spec.reciter);
  for (const [k, v] of Object.entries(settings)) form.append(k, v);
  setBusy(true);
  status("st_uploading", "connected");
  let response, data = null;
  try {
    response = await api("/api/analyze", { method: "POST", body: form });
    data = await response.json().catch(() => null);
  } catch {
    say(t("unreachable")); endTake(take, "st_error", "error"); return;
  } finally {
    $("file").value = ""; // the same file can be chosen again
  }
  if (!response.ok) {
    if (response.status === 401) { endTake(take, "st_idle"); return; }
    if (data && data.error && data.error.code === "unknown_reciter") {
      say(t("unknown_reciter", { name: take.spec.reciter })); endTake(take, "st_idle"); return;
    }
    const message = data && data.error ? data.error.message : `HTTP ${response.status} ${response.statusText}`;
    const code = data && data.error ? data.error.code : null;
    const key = response.status === 413 ? "upload_too_large" : code === "no_speech" ? "no_speech" : "upload_refused";
    say(t(key, { message: message.replace(/\.$/, "") }));
    endTake(take, "st_idle");
    return;
  }
  try { take.audio = [await decodeForPlayback(file)]; } catch { /* playback is optional */ }
  take.pitch = pitchTrack(recorded(take));
  showReport(data, take);
  endTake(take, "st_done");
}

// The pitch of a whole recording, frame by frame as the microphone's is drawn.
function pitchTrack(samples) {
  const out = [];
  for (let at = 0; at + FRAME <= samples.length; at += FRAME) out.push(view.pitchOf(samples.subarray(at, at + FRAME)));
  return out;
}

async function decodeForPlayback(file) {
  const ctx = new OfflineAudioContext(1, 1, SAMPLE_RATE);
  const buffer = await ctx.decodeAudioData(await file.arrayBuffer());
  const resampled = new OfflineAudioContext(1, Math.ceil(buffer.duration * SAMPLE_RATE), SAMPLE_RATE);
  const src = resampled.createBufferSource(); src.buffer = buffer; src.connect(resampled.destination); src.start();
  const out = (await resampled.startRendering()).getChannelData(0);
  const pcm = new Int16Array(out.length);
  for (let i = 0; i < out.length; i++) pcm[i] = Math.max(-1, Math.min(1, out[i])) * 32767;
  return pcm;
}

// ---- history ---------------------------------------------------------------------------------------
async function refreshProgress() {
  view.renderProgress(progressBySpec(await allAttempts()), specLabel);
}

// ---- language ----------------------------------------------------------------------------------------
function switchLanguage() {
  setLanguage(language() === "ar" ? "en" : "ar");
  fillSurahs();
  status(...page.status);
  setBusy(page.busy, !!(page.take && page.take.recording));
  noteReciter();
  if (page.reference && page.focus) drawText();
  if (page.report) renderReport(page.report);
  refreshProgress();
}

// ---- start ---------------------------------------------------------------------------------------------
applyLanguage();
$("lang").addEventListener("click", switchLanguage);
$("record").addEventListener("click", () => (page.take && page.take.recording ? stopRecording() : startRecording()));
$("file").addEventListener("change", (e) => e.target.files[0] && upload(e.target.files[0]));
$("ayah-text").addEventListener("click", (e) => {
  const word = e.target.closest(".word");
  if (word) openWordPanel(+word.dataset.index);
});
$("ayah-text").addEventListener("keydown", (e) => {
  const word = e.target.closest(".word");
  if (word && (e.key === "Enter" || e.key === " ")) { e.preventDefault(); openWordPanel(+word.dataset.index); }
});
$("play-reference").addEventListener("click", playReference);
$("reciter").addEventListener("input", showPlayReference);
$("close-word").addEventListener("click", () => { $("word-panel").hidden = true; });
$("back-whole").addEventListener("click", () => { page.focus = null; showReference(); });
$("clear-history").addEventListener("click", () => clearAttempts().then(refreshProgress));
$("progress").addEventListener("toggle", refreshProgress);
$("progress-table").addEventListener("click", (e) => {
  const row = e.target.closest("tr[data-spec]");
  if (row && !page.busy) chooseSpec(row.dataset.spec);
});
window.addEventListener("resize", () => drawPitch());
$("pitch-box").addEventListener("toggle", () => drawPitch());
if (!window.isSecureContext) { $("notice").textContent = t("insecure"); $("notice").hidden = false; }
if (window.matchMedia("(max-width: 760px)").matches) $("pitch-box").open = false;
loadSurahs().then((loaded) => loaded !== false && showReference()).then(() => drawPitch())
  .catch(() => say(t("unreachable")));
