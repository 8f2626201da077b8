// The page's words in English and Arabic. Elements name their text with data-i18n="key"
// (data-i18n-placeholder, data-i18n-label for placeholder and aria-label); code calls t(key, values).
const STRINGS = {
  language: ["العربية", "English"],
  surah: ["Surah", "السورة"],
  ayah: ["Ayah", "الآية"],
  to_ayah: ["to ayah", "إلى الآية"],
  optional: ["optional", "اختياري"],
  mode: ["Mode", "الوضع"],
  mode_recite: ["Read along", "قراءة"],
  mode_memorise: ["From memory", "من الحفظ"],
  settings: ["Recitation settings", "إعدادات التلاوة"],
  madd_monfasel: ["Separated madd (monfasel)", "المد المنفصل"],
  madd_mottasel: ["Connected madd (mottasel)", "المد المتصل"],
  madd_aared: ["Madd before a stop (aared)", "المد العارض للسكون"],
  record: ["Record", "تسجيل"],
  stop: ["Stop", "إيقاف"],
  upload: ["Upload a recording", "ارفع تسجيلا"],
  text_label: ["Ayah text", "نص الآية"],
  legend_tajweed: ["Letters: tajweed", "الحروف: التجويد"],
  legend_verdict: ["Underline: your recitation", "الخط تحت الكلمة: تلاوتك"],
  madd: ["madd", "مد"], ghunnah: ["ghunnah", "غنة"], qalqalah: ["qalqalah", "قلقلة"],
  idgham: ["idgham", "إدغام"], ikhfaa: ["ikhfaa / iqlab", "إخفاء / إقلاب"],
  v_correct: ["correct", "صحيحة"], v_tajweed_error: ["tajweed mistake", "خطأ تجويد"],
  v_content_error: ["wrong word", "كلمة خطأ"], v_missing: ["missing", "متروكة"],
  v_not_assessed: ["not assessed", "لم تُقيَّم"],
  tentative: ["dashed: live, not yet confirmed", "متقطع: مباشر، لم يُؤكَّد بعد"],
  pitch: ["Pitch of your voice", "طبقة صوتك"],
  pitch_axes: ["Hz (up) over the last seconds (right: now)", "هرتز (أعلى) عبر الثواني الأخيرة (اليمين: الآن)"],
  pitch_axes_take: ["Hz (up) over the whole take (seconds from its start)", "هرتز (أعلى) عبر التلاوة كلها (بالثواني من بدايتها)"],
  pitch_axes_st: ["Semitones (st) around each voice's usual pitch (up), so that any voice compares fairly, over the "
                  + "last seconds (right: now)",
                  "أنصاف النغمات حول الطبقة المعتادة لكل صوت (أعلى)، ليُقارن أي صوت بإنصاف، عبر الثواني الأخيرة "
                  + "(اليمين: الآن)"],
  pitch_axes_st_take: ["Semitones (st) around each voice's usual pitch (up), so that any voice compares fairly, over "
                       + "the whole take (seconds from its start)",
                       "أنصاف النغمات حول الطبقة المعتادة لكل صوت (أعلى)، ليُقارن أي صوت بإنصاف، عبر التلاوة كلها "
                       + "(بالثواني من بدايتها)"],
  pitch_compared: ["Pitch of your voice and of the reference", "طبقة صوتك وصوت القارئ المرجع"],
  pitch_you: ["you", "أنت"],
  pitch_aligned: ["(aligned on your words)", "(مُحاذى على كلماتك)"],
  feedback: ["Feedback", "الملاحظات"],
  why: ["Why these scores", "سبب هذه الدرجات"],
  findings: ["What to work on (tap to hear it)", "ما تعمل عليه (انقر لتسمعه)"],
  full_report: ["Full report (JSON)", "التقرير الكامل (JSON)"],
  progress: ["Your progress", "تقدمك"],
  progress_empty: ["No attempts yet: your takes are kept in this browser only.",
                   "لا محاولات بعد: تُحفظ محاولاتك في هذا المتصفح فقط."],
  progress_ayah: ["Ayah", "الآية"], progress_attempts: ["Attempts", "المحاولات"],
  progress_best: ["Best", "الأفضل"], progress_last: ["Last", "الأخيرة"], progress_trend: ["Last takes", "آخر المحاولات"],
  progress_clear: ["Clear history", "امسح السجل"],
  overall: ["overall", "المجموع"], content: ["words", "الكلمات"], pronunciation: ["pronunciation", "النطق"],
  tajweed: ["tajweed", "التجويد"],
  // connection and progress
  st_idle: ["ready", "جاهز"],
  st_connecting: ["connecting…", "جارٍ الاتصال…"],
  st_listening: ["listening", "يستمع"],
  st_reconnecting: ["reconnecting…", "إعادة الاتصال…"],
  st_analysing: ["analysing…", "جارٍ التحليل…"],
  st_uploading: ["analysing upload…", "جارٍ تحليل الملف…"],
  st_done: ["done", "تم"],
  st_error: ["not connected", "غير متصل"],
  st_busy: ["server busy", "الخادم مشغول"],
  // messages
  unreachable: ["The server cannot be reached.", "تعذّر الوصول إلى الخادم."],
  needs_key: ["This server needs an API key: open the page once as /?key=YOUR_KEY (it is then kept in this browser).",
              "يتطلب هذا الخادم مفتاحا: افتح الصفحة مرة بالعنوان ‎/?key=مفتاحك‎ (ويُحفظ في هذا المتصفح)."],
  insecure: ["The microphone works only on a secure page: open this page over HTTPS (iqrah serve "
             + "--ssl-certfile/--ssl-keyfile) or on this computer (localhost). You can still upload a recording.",
             "لا يعمل الميكروفون إلا في صفحة آمنة: افتح الصفحة عبر HTTPS أو على هذا الحاسوب (localhost). "
             + "يمكنك رفع تسجيل بدلا من ذلك."],
  mic_refused: ["The microphone is not available ({name}). Allow microphone access for this page, or upload a recording.",
                "الميكروفون غير متاح ({name}). اسمح للصفحة باستعمال الميكروفون أو ارفع تسجيلا."],
  no_speech: ["Nothing to assess — {message}.", "لا شيء يُقيَّم: لم يُسمع كلام، اقترب من الميكروفون ({message})."],
  mismatch: ["This does not sound like {spec} ({name}): check the surah and ayah you chose, then record again.",
             "لا تبدو هذه التلاوة {spec} ({name}): تحقق من السورة والآية المختارتين ثم أعد التسجيل."],
  upload_refused: ["This file could not be assessed: {message}.", "تعذّر تقييم هذا الملف: {message}."],
  upload_too_large: ["This file is too large: {message}.", "هذا الملف كبير جدا: {message}."],
  busy: ["The server is busy: try again in a moment.", "الخادم مشغول: حاول بعد قليل."],
  lost: ["The connection to the server was lost; your recording is kept: press Record to try again, or upload it.",
         "انقطع الاتصال بالخادم. أعد المحاولة."],
  server_error: ["The server said: {message}", "قال الخادم: {message}"],
  // scores explained
  praise_perfect: ["Excellent! Every word right and every rule of tajweed applied. Well done, mā shā’ Allāh.",
                   "ممتاز! كل الكلمات صحيحة وكل أحكام التجويد مطبقة. ما شاء الله، بارك الله فيك."],
  praise_words: ["Every word right. Work on the points below to perfect your tajweed.",
                 "كل الكلمات صحيحة. راجع الملاحظات أدناه لإتقان التجويد."],
  why_overall: ["{c} % words + {p} % pronunciation + {t} % tajweed (weights for a {profile})",
                "{c}٪ الكلمات + {p}٪ النطق + {t}٪ التجويد (أوزان {profile})"],
  profile_beginner: ["beginner", "المبتدئ"], profile_advanced: ["advanced learner", "المتقدم"],
  why_content_mismatch: ["the recitation did not match the chosen ayah, so its words, pronunciation and tajweed "
                         + "were not judged (the findings below say what was heard instead)",
                         "التلاوة لا توافق الآية المختارة، فلم تُقيَّم كلماتها ولا نطقها ولا تجويدها "
                         + "(الملاحظات أدناه تبيّن ما سُمع)"],
  why_pron_word: ["«{word}» was not clearly pronounced", "«{word}» لم تُنطق بوضوح"],
  why_pron_rest: ["small unclear sounds spread over the other words", "أصوات غير واضحة قليلا في باقي الكلمات"],
  why_tajweed_none: ["rules not measured in full", "أحكام لم تُقس كاملة"],
  on_word: ["on «{word}»", "في «{word}»"],
  // practice
  word_panel: ["Practise this word", "تدرّب على هذه الكلمة"],
  hear: ["▶ Hear your recitation", "▶ استمع إلى تلاوتك"],
  redo_word: ["● Record this word again", "● سجّل هذه الكلمة مجددا"],
  redo_ayah: ["● Record this ayah again", "● سجّل هذه الآية مجددا"],
  close: ["Close", "إغلاق"],
  practising: ["Practising {what}", "تتدرّب على {what}"],
  practising_word: ["word {n} of {spec}", "الكلمة {n} من {spec}"],
  back_whole: ["Back to {spec}", "العودة إلى {spec}"],
  s_second: ["{s} s", "{s} ث"],
  // a reference reciter
  reciter: ["Reference reciter", "القارئ المرجع"],
  reciter_none: ["none (choose from the list)", "لا أحد (اختر من القائمة)"],
  reciter_none_here: ["none measured for this ayah", "لا قارئ مقيس لهذه الآية"],
  reciters_none_here: ["No reference reciter is measured for {spec} on this server: this ayah is recited and "
                       + "assessed without a comparison.",
                       "لا قارئ مرجع مقيس للآية {spec} على هذا الخادم: تُقرأ هذه الآية وتُقيَّم دون مقارنة."],
  reciter_not_here: ["“{name}” is not measured for {spec} on this server (measured: {names}): choose one of them or "
                     + "leave the field empty. Until then a take is assessed without a comparison.",
                     "القارئ «{name}» غير مقيس للآية {spec} على هذا الخادم (المقيس: {names}): اختر أحدهم أو اترك "
                     + "الحقل فارغا. وإلى ذلك تُقيَّم التلاوة دون مقارنة."],
  hear_reference: ["▶ Hear it from", "▶ استمع إليها من"],
  play_reference: ["▶ Play the reference", "▶ استمع إلى القارئ"],
  no_reference_audio: ["The reference audio of {name} for this ayah is not on this server.",
                       "تسجيل {name} لهذه الآية غير موجود على هذا الخادم."],
  unknown_reciter: ["This server has no reference for “{name}” on this ayah: choose another reciter or leave the "
                    + "field empty (iqrah reference build --reciter measures one).",
                    "لا مرجع على هذا الخادم للقارئ «{name}» في هذه الآية: اختر قارئا آخر أو اترك الحقل فارغا."],
  prosody_title: ["Recite like your teacher", "اقرأ كما يقرأ شيخك"],
  prosody_note: ["Guidance only, not part of the scores above: a different pace or maqam is not a mistake. Compared with",
                 "إرشاد فقط، لا يدخل في الدرجات أعلاه: اختلاف السرعة أو المقام ليس خطأ. المقارنة مع"],
  prosody_close: ["Your tempo and melody follow the reference closely.", "سرعتك ولحنك قريبان من القارئ المرجع."],
  legend_prosody: ["Above: the reference reciter (guidance)", "فوق الكلمة: مقارنة بالقارئ المرجع (إرشاد)"],
  hint_tempo: ["↔ tempo", "↔ السرعة"], hint_melody: ["♪ melody", "♪ اللحن"],
  p_tempo: ["tempo", "السرعة"], p_rhythm: ["rhythm", "الإيقاع"], p_melody: ["melody", "اللحن"],
  pf_rushed: ["rushed", "استعجال"], pf_slow: ["slower than the reference", "أبطأ من القارئ"],
  pf_falls_where_reference_rises: ["your voice fell where the reference rises", "انخفض صوتك حيث يرتفع القارئ"],
  pf_rises_where_reference_falls: ["your voice rose where the reference falls", "ارتفع صوتك حيث ينخفض القارئ"],
};

// What the report calls things, in words a learner knows (rule names also come with the reference).
const CONTENT_KINDS = {
  missing: ["Missing word", "كلمة متروكة"],
  substituted: ["Wrong word", "كلمة غير صحيحة"],
  repeated: ["Repeated word", "كلمة مكررة"],
  extra: ["Added words", "زيادة على النص"],
};
// The names iqrah.quran.rules gives each rule (the reference of an ayah carries them too).
const RULE_NAMES = {
  "madd:natural": ["Natural madd", "المد الطبيعي"],
  "madd:badal": ["Substitute madd (badal)", "مد البدل"],
  "madd:iwad": ["Compensation madd (iwad)", "مد العوض"],
  "madd:silah": ["Connecting madd (silah)", "مد الصلة"],
  "madd:monfasel": ["Separated madd (monfasel)", "المد المنفصل"],
  "madd:mottasel": ["Connected madd (mottasel)", "المد المتصل"],
  "madd:mottasel_waqf": ["Connected madd at a stop", "المد المتصل وقفا"],
  "madd:lazem": ["Necessary madd (lazem)", "المد اللازم"],
  "madd:aared": ["Madd before a stop (aared)", "المد العارض للسكون"],
  "madd:leen": ["Leen madd", "مد اللين"],
  "ghunnah:mushaddadah": ["Ghunnah of a doubled noon or meem", "غنة النون والميم المشددتين"],
  "ghunnah:idgham": ["Merging with ghunnah (idgham)", "إدغام بغنة"],
  "ghunnah:idgham_shafawi": ["Lip merging of meem (idgham shafawi)", "إدغام شفوي"],
  "ghunnah:ikhfaa": ["Hiding the noon (ikhfaa)", "إخفاء حقيقي"],
  "ghunnah:ikhfaa_shafawi": ["Hiding the meem (ikhfaa shafawi)", "إخفاء شفوي"],
  "ghunnah:iqlab": ["Turning noon into meem (iqlab)", "إقلاب"],
  "qalqalah:sughra": ["Echo on a resting letter (qalqalah)", "قلقلة صغرى"],
  "qalqalah:kubra": ["Echo at a stop (qalqalah kubra)", "قلقلة كبرى"],
  "idgham:without_ghunnah": ["Merging without ghunnah", "إدغام بغير غنة"],
  "sakt:sakt": ["Brief pause without breath (sakt)", "سكت"],
  "shadda:shadda": ["Doubled letter (shadda)", "الحرف المشدد"],
  "waqf:sukun": ["Stopping on a resting letter", "الوقف بالسكون"],
};

let lang = localStorage.getItem("iqrah.lang") === "ar" ? "ar" : "en";

export function language() { return lang; }

export function setLanguage(next) {
  lang = next === "ar" ? "ar" : "en";
  localStorage.setItem("iqrah.lang", lang);
  applyLanguage();
}

export function t(key, values = {}) {
  const pair = STRINGS[key];
  let text = pair ? pair[lang === "ar" ? 1 : 0] : key;
  for (const [k, v] of Object.entries(values)) text = text.replaceAll(`{${k}}`, v);
  return text;
}

export function applyLanguage() {
  const html = document.documentElement;
  html.lang = lang; html.dir = lang === "ar" ? "rtl" : "ltr";
  const other = document.getElementById("lang");
  if (other) other.lang = lang === "ar" ? "en" : "ar"; // the button names the other language
  for (const el of document.querySelectorAll("[data-i18n]")) el.textContent = t(el.dataset.i18n);
  for (const el of document.querySelectorAll("[data-i18n-placeholder]")) el.placeholder = t(el.dataset.i18nPlaceholder);
  for (const el of document.querySelectorAll("[data-i18n-label]")) el.setAttribute("aria-label", t(el.dataset.i18nLabel));
}

// A rule id ("qalqalah:kubra", "content:missing") as {en, ar}.
export function ruleName(tag, reference) {
  if (tag.startsWith("content:")) {
    const [en, ar] = CONTENT_KINDS[tag.slice(8)] || ["Word", "كلمة"];
    return { en, ar };
  }
  for (const unit of reference ? reference.units : []) {
    const rule = unit.rules.find((r) => r.tag === tag);
    if (rule) return { en: rule.name_en, ar: rule.name_ar };
  }
  const family = tag.split(":")[0];
  const [en, ar] = RULE_NAMES[tag] || [family, STRINGS[family] ? STRINGS[family][1] : family];
  return { en, ar };
}

export function arabicDigits(n) { return String(n).replace(/\d/g, (d) => "٠١٢٣٤٥٦٧٨٩"[d]); }

// Feedback from the server, tidied: "(Echo at a stop (qalqalah kubra))" -> "(Echo at a stop, qalqalah kubra)".
export function tidy(text) {
  let previous;
  do { previous = text; text = text.replace(/\(([^()]*)\(([^()]*)\)([^()]*)\)/g, "($1, $2$3)"); }
  while (text !== previous);
  return text.replace(/\s+,/g, ",");
}
