// The scanner's local state in IndexedDB: settings, the pinned anchor, the bundle and its deltas
// as fetched, and the queue of scan records waiting for upload.
//
// IndexedDB rather than localStorage: a bundle with 100,000 revocations is nearly 3 MB, past
// what localStorage reliably holds, and the queue must survive a reload with the network cut.

const DB_NAME = "yk-scanner";
const DB_VERSION = 1;

let opened = null;

function database() {
  opened ??= new Promise((resolve, reject) => {
    const request = indexedDB.open(DB_NAME, DB_VERSION);
    request.onupgradeneeded = () => {
      const db = request.result;
      if (!db.objectStoreNames.contains("kv")) db.createObjectStore("kv");
      if (!db.objectStoreNames.contains("queue")) db.createObjectStore("queue", { keyPath: "scan_id" });
    };
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
  return opened;
}

function done(request) {
  return new Promise((resolve, reject) => {
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

async function transaction(store, mode, work) {
  const db = await database();
  const tx = db.transaction(store, mode);
  // Listen before any request runs: "complete" may fire as soon as the last one succeeds.
  const completed = new Promise((resolve, reject) => {
    tx.oncomplete = resolve;
    tx.onerror = () => reject(tx.error);
    tx.onabort = () => reject(tx.error);
  });
  completed.catch(() => {}); // a failed request already rejects below; avoid a second report
  const result = await work(tx.objectStore(store));
  await completed;
  return result;
}

export async function getValue(key) {
  return transaction("kv", "readonly", (store) => done(store.get(key)));
}

export async function setValue(key, value) {
  return transaction("kv", "readwrite", (store) => done(store.put(value, key)));
}

/** Several settings at once, atomically: a bundle and its deltas must never be half written. */
export async function setValues(entries) {
  return transaction("kv", "readwrite", (store) => Promise.all(Object.entries(entries).map(([key, value]) => done(store.put(value, key)))));
}

export async function deleteValues(keys) {
  return transaction("kv", "readwrite", (store) => Promise.all(keys.map((key) => done(store.delete(key)))));
}

/** Queue a scan record; put() by scan_id, so queueing the same record twice keeps one. */
export async function enqueue(record) {
  return transaction("queue", "readwrite", (store) => done(store.put(record)));
}

export async function queued(limit = 1000) {
  return transaction("queue", "readonly", (store) => done(store.getAll(null, limit)));
}

export async function queueLength() {
  return transaction("queue", "readonly", (store) => done(store.count()));
}

export async function dequeue(scanIds) {
  return transaction("queue", "readwrite", (store) => Promise.all(scanIds.map((id) => done(store.delete(id)))));
}
