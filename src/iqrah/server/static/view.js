// Drawing the page: the Quran text with tajweed colours and verdict marks, the findings, the
// scores and what explains them, the pitch curve, the progress table. No network here.
import { arabicDigits, language, ruleName, t, tidy } from "./i18n.js";

const $ = (id) => document.getElementById(id);
const FAMILY_CLASS = { madd: "r-madd", ghunnah: "r-ghunnah", qalqalah: "r-qalqalah", idgham: "r-idgham" };
const SEVERITY_WEIGHT = { major: 1, minor: 0.5 }; // as iqrah.report.scoring
const CLEAR_RATIO = 0.5; // as iqrah.report.scoring: an expected phoneme at least this likely vs the best guess is clear
const VERDICTS = ["correct", "tajweed_error", "content_error", "missing", "not_assessed"];

// ---- the text ------------------------------------------------------------------------------
// A span per word, letters coloured by the tajweed rule of their unit; an end-of-ayah sign with
// its number (Arabic-Indic digits) after the last word of each ayah.
export function renderText(ref, { hidden = false, ayahEnds = true } = {}) {
  const box = $("ayah-text");
  box.replaceChildren();
  return ref.words.map((word, i) => {
    const span = document.createElement("span");
    span.className = hidden ? "word hidden-word" : "word";
    span.dataset.index = word.index;
    span.tabIndex = 0;
    span.setAttribute("role", "button");
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
    [...word.text].forEach((ch, c) => { if (colours[c] !== cls) { flush(); cls = colours[c]; } run += ch; });
    flush();
    box.append(span, " ");
    const next = ref.words[i + 1];
    if (ayahEnds && word.ayah > 0 && (!next || next.ayah !== word.ayah)) {
      const end = document.createElement("span");
      end.className = "ayah-end"; end.dataset.ayah = word.ayah;
      end.textContent = "\u06DD" + arabicDigits(word.ayah);
      end.setAttribute("aria-label", `end of ayah ${word.ayah}`);
      box.append(end, " ");
    }
    return span;
  });
}

// A verdict on a word: tentative while live, confirmed by the final report.
export function markWord(spans, index, verdict, { tentative = false } = {}) {
  const span = spans[index];
  if (!span || !VERDICTS.includes(verdict)) return;
  span.classList.remove(...VERDICTS.map((v) => `v-${v}`), "hidden-word", "tentative");
  span.classList.add(`v-${verdict}`);
  if (tentative) span.classList.add("tentative");
  span.title = t(`v_${verdict}`) + (tentative ? ` (${t("tentative")})` : "");
}

export function markCurrent(spans, index) {
  spans.forEach((s, i) => s.classList.toggle("current", i === index));
}

// ---- text with quoted Quran words ----------------------------------------------------------------
// «word» in feedback: the word isolated (<bdi>) in the Quran font, the guillemets outside it in the
// page's direction, so they face each other whatever the surrounding language.
export function quoted(text) {
  const out = document.createDocumentFragment();
  const s = tidy(text);
  let last = 0;
  for (const m of s.matchAll(/«([^»]*)»/g)) {
    const word = document.createElement("bdi");
    word.className = "quote"; word.lang = "ar"; word.textContent = m[1];
    out.append(s.slice(last, m.index), "«", word, "»");
    last = m.index + m[0].length;
  }
  out.append(s.slice(last));
  return out;
}

// ---- findings ------------------------------------------------------------------------------------
// One entry per finding (violation or content error), clickable to hear that part.
export function addFinding(list, finding, reference, { tentative = false, onPlay } = {}) {
  const key = `${finding.rule}:${finding.phoneme_index}`;
  const existing = list.querySelector(`li[data-key="${CSS.escape(key)}"]`);
  if (existing) { existing.classList.toggle("tentative", tentative); return; }
  const li = document.createElement("li");
  li.dataset.key = key; li.dataset.word = finding.word_index;
  if (tentative) li.classList.add("tentative");
  const button = document.createElement("button");
  button.type = "button";
  const name = ruleName(finding.rule, reference);
  const word = reference && reference.words[finding.word_index];
  const rule = document.createElement("span");
  rule.className = "rule";
  const ar = document.createElement("bdi"), en = document.createElement("bdi");
  ar.lang = "ar"; ar.textContent = name.ar; en.lang = "en"; en.textContent = name.en;
  if (language() === "ar") rule.append(ar, " · ", en);
  else rule.append(en, " · ", ar);
  if (word) {
    rule.append(" · ");
    const w = document.createElement("bdi"); w.className = "quran-word"; w.lang = "ar"; w.textContent = word.text;
    rule.append(w);
  }
  if (finding.time_range) rule.append(` · ${t("s_second", { s: finding.time_range[0].toFixed(1) })}`);
  const text = document.createElement("span");
  text.className = "text";
  const feedback = finding.feedback[language()] || finding.feedback.en;
  if (language() === "ar") text.dir = "rtl";
  text.append(quoted(feedback));
  button.append(rule, text);
  if (finding.time_range && onPlay) button.addEventListener("click", () => onPlay(finding.time_range[0] - 0.3, finding.time_range[1] + 0.3));
  li.append(button);
  list.append(li);
}

// A content error in the shape of a violation, so both list alike.
export function contentFinding(e) {
  return { rule: `content:${e.kind}`, phoneme_index: `w${e.word_indices[0]}`, word_index: e.word_indices[0],
           time_range: e.time_range, feedback: e.feedback };
}

// ---- scores and their reasons --------------------------------------------------------------------
export function renderScores(report) {
  const box = $("scores");
  box.replaceChildren();
  for (const name of ["overall", "content", "pronunciation", "tajweed"]) {
    const div = document.createElement("div");
    div.dataset.score = name;
    const b = document.createElement("b");
    b.textContent = Math.round(report.scores[name]);
    div.append(b, t(name));
    box.append(div);
  }
  box.hidden = false;
}

// Each deduction with the finding that caused it: tajweed points per violation (exactly as the
// server scores them), pronunciation points per unclear word, content points by the word errors.
export function explainScores(report, reference) {
  const s = report.scores, items = [];
  const add = (score, points, node) => items.push({ score, points, node });
  const mismatch = report.gate.path === "content_mismatch";
  const findings = report.content_errors.length + report.violations.length;
  const wordsRight = report.words.every((w) => w.verdict === "correct" || w.verdict === "tajweed_error");

  if (mismatch) add("overall", null, t("why_content_mismatch")); // nothing else was judged
  else if (s.content < 99.5) { // the score counts words: each word said wrong, left out or added costs one word's share
    const wrong = new Set(report.content_errors.filter((e) => e.kind === "missing" || e.kind === "substituted")
      .flatMap((e) => e.word_indices));
    const share = 100 / report.words.length;
    for (const e of report.content_errors) {
      const words = e.kind === "missing" || e.kind === "substituted" ? e.word_indices.filter((w) => wrong.delete(w)).length : 1;
      if (!words) continue;
      add("content", -words * share, findingLine(ruleName(`content:${e.kind}`, reference), reference && reference.words[e.word_indices[0]]));
    }
  }
  if (!mismatch && s.pronunciation < 99.5) {
    const units = report.words.flatMap((w) => w.phonemes.filter((p) => p.start !== null && Number.isFinite(p.gop))
      .map((p) => ({ word: w, loss: 1 - Math.min(1, Math.exp(p.gop) / CLEAR_RATIO) })));
    const perWord = new Map();
    for (const u of units) perWord.set(u.word, (perWord.get(u.word) || 0) + (100 * u.loss) / units.length);
    const worst = [...perWord.entries()].filter(([, p]) => p >= 1).sort((a, b) => b[1] - a[1]).slice(0, 3);
    let explained = 0;
    for (const [word, points] of worst) {
      add("pronunciation", -points, quoted(t("why_pron_word", { word: word.text })));
      explained += points;
    }
    const rest = 100 - s.pronunciation - explained;
    if (rest >= 0.5) add("pronunciation", -rest, t("why_pron_rest"));
  }
  if (!mismatch && s.tajweed < 99.5) {
    const checks = reference ? reference.units.reduce((n, u) => n + u.rules.length, 0) : 0;
    for (const v of report.violations) {
      const points = checks ? (100 * (SEVERITY_WEIGHT[v.severity] || 1) * v.confidence) / checks : null;
      const word = reference && reference.words[v.word_index];
      const line = findingLine(ruleName(v.rule, reference), word);
      add("tajweed", points === null ? null : -points, line);
    }
    if (!report.violations.length) add("tajweed", s.tajweed - 100, t("why_tajweed_none"));
  }
  const weights = { beginner: [50, 30, 20], advanced: [30, 30, 40] }[s.profile];
  if (weights && !mismatch) add("overall", null, t("why_overall", { c: weights[0], p: weights[1], t: weights[2], profile: t(`profile_${s.profile}`) }));

  const list = $("why");
  list.replaceChildren();
  for (const item of items) {
    const li = document.createElement("li");
    li.dataset.score = item.score;
    const head = document.createElement("span");
    head.className = "points";
    head.textContent = `${t(item.score)}${item.points === null ? "" : ` ${formatPoints(item.points)}`}: `;
    li.append(head, item.node);
    list.append(li);
  }
  $("why-box").hidden = items.length === 0;

  const praise = $("praise");
  praise.hidden = mismatch || !wordsRight || report.content_errors.length > 0;
  praise.textContent = findings === 0 ? t("praise_perfect") : t("praise_words");
  praise.dataset.kind = findings === 0 ? "perfect" : "words";
}

// "Separated madd (monfasel) on «word»", in the language of the page
function findingLine(name, word) {
  const span = document.createElement("span");
  span.append(language() === "ar" ? name.ar : name.en);
  if (word) { span.append(" "); span.append(quoted(t("on_word", { word: word.text }))); }
  return span;
}

function formatPoints(p) {
  const rounded = Math.abs(p) >= 10 ? Math.round(p) : Math.round(p * 10) / 10;
  return `${rounded <= 0 ? "−" : "+"}${Math.abs(rounded)}`;
}

// ---- prosody: guidance from a reference reciter, apart from the scores ---------------------------
// A hint on a word the comparison found something on: ⏱ tempo (rushed, slow), ♪ melody (a turn the
// other way); its feedback (live) or the findings' names (report) as the title.
export function markProsody(spans, index, prosody) {
  const span = spans[index], findings = (prosody && prosody.findings) || [];
  if (!span) return;
  delete span.dataset.prosody;
  if (!findings.length) return;
  span.dataset.prosody = findings.some((f) => f === "rushed" || f === "slow") ? "tempo" : "melody";
  const fb = prosody.feedback;
  const note = fb && (fb[language()] || fb.en) ? tidy(fb[language()] || fb.en) : findings.map((f) => t(`pf_${f}`)).join("; ");
  span.title = `${span.title}\n${note}`;
}

export function renderProsody(prosody, spans) {
  const box = $("prosody-box");
  box.hidden = !prosody;
  if (!prosody) return;
  $("prosody-reciter").textContent = prosody.reciter;
  const scores = $("prosody-scores");
  scores.replaceChildren();
  for (const name of ["tempo", "rhythm", "melody"]) {
    const div = document.createElement("div");
    div.dataset.score = name;
    const b = document.createElement("b");
    const value = prosody.scores[name];
    b.textContent = value === null || value === undefined ? "–" : Math.round(value);
    div.append(b, t(`p_${name}`));
    scores.append(div);
  }
  const list = $("prosody-feedback");
  list.replaceChildren();
  for (const line of prosody.feedback || []) {
    const li = document.createElement("li");
    li.append(quoted(line[language()] || line.en));
    list.append(li);
  }
  if (!list.children.length) {
    const li = document.createElement("li"); li.textContent = t("prosody_close"); list.append(li);
  }
  for (const w of prosody.words || []) markProsody(spans, w.index, w);
}

// ---- pitch ---------------------------------------------------------------------------------------
// The reciter's pitch on a log scale, 70-400 Hz, with its axes: the last seconds while recording
// (right: now), the whole take once it is over. With a reference reciter both voices are drawn in
// semitones around each one's own median pitch, so a woman or a child compares with a man by the
// shape of the melody, not by how high the voice is.
const LOW = 70, HIGH = 400, FRAMES_PER_S = 10, SPAN_ST = 8; // semitone view: ±8 st around the median
const YOU = "#1f5f8b", REFERENCE = "#d0782a"; // as --accent and --reference in app.css

export function median(values) {
  const sorted = values.filter((v) => v > 0).sort((a, b) => a - b);
  return sorted.length ? sorted[sorted.length >> 1] : null;
}

// The reference's contour in the learner's time, word by word: `pairs` is [[refStart, refEnd],
// [yourStart, yourEnd]] per word both have timed; the reference frames of each word are spread
// linearly over the learner's span of the same word, so the two melodies line up whatever the pace.
// Segments of [seconds of the learner's audio, semitones or null (unvoiced)].
export function referenceCurve(pitch, pairs) {
  const mid = median(pitch.f0.map((f) => f || 0));
  if (!mid) return [];
  return pairs.map(([[rs, re], [ls, le]]) => {
    const segment = [];
    if (!(re > rs) || !(le > ls)) return segment;
    const first = Math.max(0, Math.ceil((rs - pitch.start_s) / pitch.step_s));
    const last = Math.min(pitch.f0.length - 1, Math.floor((re - pitch.start_s) / pitch.step_s));
    for (let i = first; i <= last; i++) {
      const t = pitch.start_s + i * pitch.step_s, f = pitch.f0[i];
      segment.push([ls + ((t - rs) * (le - ls)) / (re - rs), f ? 12 * Math.log2(f / mid) : null]);
    }
    return segment;
  });
}

// `pitch`: the learner's Hz per 100 ms frame (0: unvoiced); `reference`: {name, segments} from
// referenceCurve, or null; `whole`: the take is over (draw all of it).
export function drawPitch(pitch, { reference = null, whole = false } = {}) {
  const canvas = $("pitch"), relative = !!reference;
  const axes = $("pitch-axes");
  axes.dataset.i18n = `pitch_axes${relative ? "_st" : ""}${whole ? "_take" : ""}`;
  axes.textContent = t(axes.dataset.i18n);
  $("pitch-legend").hidden = !relative;
  const title = $("pitch-box").querySelector("summary");
  title.dataset.i18n = relative ? "pitch_compared" : "pitch"; title.textContent = t(title.dataset.i18n);
  if (relative) $("pitch-reciter").textContent = reference.name;
  canvas.dataset.scale = relative ? "semitones" : "hz";
  canvas.dataset.learnerPoints = 0; canvas.dataset.referencePoints = 0;
  if (!canvas.clientWidth) return; // folded away: drawn when opened
  const dpr = window.devicePixelRatio || 1, w = canvas.clientWidth, h = canvas.clientHeight;
  canvas.width = Math.round(w * dpr); canvas.height = Math.round(h * dpr);
  const ctx = canvas.getContext("2d");
  ctx.direction = "ltr";
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);
  const left = 46, bottom = h - 16, top = 6, right = w - 6;
  const clampY = (v, lo, hi) => Math.min(hi, Math.max(lo, v));
  const y = relative ? (st) => bottom - ((clampY(st, -SPAN_ST, SPAN_ST) + SPAN_ST) / (2 * SPAN_ST)) * (bottom - top)
    : (hz) => bottom - ((Math.log2(clampY(hz, LOW, HIGH)) - Math.log2(LOW)) / (Math.log2(HIGH) - Math.log2(LOW))) * (bottom - top);
  ctx.font = "10px system-ui, sans-serif"; ctx.fillStyle = "#5c6770"; ctx.strokeStyle = "#e3e0d8"; ctx.lineWidth = 1;
  ctx.textAlign = "right"; ctx.textBaseline = "middle";
  const grid = relative ? [[-6, "−6 st"], [0, "0 st"], [6, "+6 st"]] : [[100, "100 Hz"], [200, "200 Hz"], [300, "300 Hz"]];
  for (const [v, label] of grid) {
    ctx.beginPath(); ctx.moveTo(left, y(v)); ctx.lineTo(right, y(v)); ctx.stroke();
    ctx.fillText(label, left - 3, y(v));
  }

  // time: the last seconds (a second every 30 px at least), or the whole take
  const now = pitch.length / FRAMES_PER_S;
  let x, ticks;
  if (whole) {
    const ends = reference ? reference.segments.flat().map(([t]) => t) : [];
    const duration = Math.max(1, now, ...ends);
    x = (s) => left + (s * (right - left)) / duration;
    const step = [1, 2, 5, 10, 20, 30, 60].find((d) => duration / d <= Math.max(2, (right - left) / 60)) || 120;
    ticks = [];
    for (let s = 0; s <= duration + 1e-6; s += step) ticks.push([x(s), s === 0 ? "0 s" : `${s}`, s === 0 ? "left" : "center"]);
  } else {
    const seconds = Math.max(1, Math.floor((right - left) / 30));
    x = (s) => right - ((now - s) * (right - left)) / seconds;
    ticks = [];
    for (let s = 0; s <= seconds; s += Math.max(1, Math.round(seconds / 6))) {
      ticks.push([right - (s * (right - left)) / seconds, s === 0 ? "0 s" : `−${s}`, s === 0 ? "right" : "center"]);
    }
  }
  ctx.textBaseline = "alphabetic";
  for (const [tx, label, align] of ticks) { ctx.textAlign = align; ctx.fillText(label, tx, h - 3); }

  ctx.save();
  ctx.beginPath(); ctx.rect(left, 0, right - left, h); ctx.clip();
  const line = (points, colour, width) => { // [[x, y or null]]: a break at each null
    ctx.strokeStyle = colour; ctx.lineWidth = width; ctx.lineJoin = "round"; ctx.beginPath();
    let drawn = 0, open = false;
    for (const [px, py] of points) {
      if (py === null || px < left - 2 || px > right + 2) { open = false; continue; }
      open ? ctx.lineTo(px, py) : ctx.moveTo(px, py);
      open = true; drawn++;
    }
    ctx.stroke();
    return drawn;
  };
  // the reference first, wider and lighter, so the learner's line stays readable over it
  let referencePoints = 0;
  for (const segment of reference ? reference.segments : []) {
    referencePoints += line(segment.map(([s, st]) => [x(s), st === null ? null : y(st)]), REFERENCE, 3);
  }
  const mid = relative ? median(pitch) : null;
  const learner = pitch.map((hz, i) => [x((i + 0.5) / FRAMES_PER_S),
    !hz ? null : relative ? (mid ? y(12 * Math.log2(hz / mid)) : null) : y(hz)]);
  const learnerPoints = line(learner, YOU, 2);
  ctx.restore();
  canvas.dataset.learnerPoints = learnerPoints; canvas.dataset.referencePoints = referencePoints;
}

// autocorrelation over 70-400 Hz on one 100 ms frame of 16 kHz PCM16; 0 when unvoiced
export function pitchOf(frame) {
  const n = frame.length; let energy = 0;
  for (let i = 0; i < n; i++) energy += frame[i] * frame[i];
  if (energy / n < 4e5) return 0;
  let best = 0, bestLag = 0;
  for (let lag = 40; lag <= 228; lag++) {
    let sum = 0;
    for (let i = 0; i + lag < n; i++) sum += frame[i] * frame[i + lag];
    if (sum > best) { best = sum; bestLag = lag; }
  }
  return best > 0.3 * energy ? 16000 / bestLag : 0;
}

// ---- progress ------------------------------------------------------------------------------------
export function renderProgress(rows, label) {
  const box = $("progress-table");
  box.replaceChildren();
  if (!rows.length) { const p = document.createElement("p"); p.textContent = t("progress_empty"); box.append(p); return; }
  const table = document.createElement("table");
  const head = table.createTHead().insertRow();
  for (const key of ["progress_ayah", "progress_attempts", "progress_best", "progress_last", "progress_trend"]) {
    const th = document.createElement("th"); th.textContent = t(key); head.append(th);
  }
  const body = table.createTBody();
  for (const row of rows) {
    const tr = body.insertRow();
    tr.dataset.spec = row.spec;
    tr.insertCell().textContent = label(row.spec);
    tr.insertCell().textContent = row.attempts;
    tr.insertCell().textContent = Math.round(row.best);
    tr.insertCell().textContent = `${Math.round(row.last.scores.overall)} · ${new Date(row.last.time).toLocaleDateString()}`;
    const trend = document.createElement("span");
    trend.className = "trend"; trend.setAttribute("aria-label", row.trend.map(Math.round).join(", "));
    for (const v of row.trend) { const i = document.createElement("i"); i.style.height = `${Math.max(8, v)}%`; trend.append(i); }
    tr.insertCell().append(trend);
  }
  box.append(table);
}
