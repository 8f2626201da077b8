// Attempts kept in this browser (IndexedDB "iqrah", store "attempts"); nothing leaves the device.
const DB = "iqrah", STORE = "attempts";

function open() {
  return new Promise((resolve, reject) => {
    const request = indexedDB.open(DB, 1);
    request.onupgradeneeded = () => {
      const store = request.result.createObjectStore(STORE, { keyPath: "id", autoIncrement: true });
      store.createIndex("spec", "spec");
    };
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

function run(mode, work) {
  return open().then((db) => new Promise((resolve, reject) => {
    const tx = db.transaction(STORE, mode);
    const result = work(tx.objectStore(STORE));
    tx.oncomplete = () => { db.close(); resolve(result && result.result); };
    tx.onerror = () => { db.close(); reject(tx.error); };
  }));
}

// One attempt: what was recited, how, when, its scores and how many mistakes.
export function saveAttempt(report, { mode, source }) {
  const attempt = {
    spec: report.spec, time: Date.now(), mode, source,
    scores: report.scores, gate: report.gate.path,
    mistakes: report.content_errors.length + report.violations.length,
    verdicts: report.words.map((w) => w.verdict),
  };
  return run("readwrite", (store) => store.add(attempt)).catch(() => null);
}

export function allAttempts() {
  return run("readonly", (store) => store.getAll()).catch(() => []);
}

export function clearAttempts() {
  return run("readwrite", (store) => store.clear()).catch(() => null);
}

// Attempts grouped per recited spec, most recently practised first.
export function progressBySpec(attempts) {
  const groups = new Map();
  for (const a of attempts.sort((x, y) => x.time - y.time)) {
    if (!groups.has(a.spec)) groups.set(a.spec, []);
    groups.get(a.spec).push(a);
  }
  return [...groups.entries()]
    .map(([spec, list]) => ({
      spec, attempts: list.length, last: list[list.length - 1],
      best: Math.max(...list.map((a) => a.scores.overall)),
      trend: list.slice(-8).map((a) => a.scores.overall),
    }))
    .sort((a, b) => b.last.time - a.last.time);
}
