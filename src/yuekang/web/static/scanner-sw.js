// The scanner's service worker: keeps the page and everything it loads in a cache, so a
// checkpoint that loaded /scanner once opens it again with no network.
//
// Served from /static/app/ with `Service-Worker-Allowed: /scanner` and registered with scope
// /scanner: it controls the scanner page only. API calls (/v1/...) are never cached: the trust
// bundle and the scan queue live in IndexedDB, where the page checks and manages them itself.

// A new name when the page's files must change together (v2: codes' identity assurance, which the
// verifier, the policies and the page read alike; v4: the checkpoint registration and the verdict
// screen, which the page, its markup and its styles share): the changed worker installs them all at once,
// rather than each being refreshed on its own behind the cached copy.
const CACHE = "yk-scanner-v4";
importScripts("/static/app/worker-cache.js");
const SHELL = [
  "/scanner",
  "/static/app/icon.svg",
  "/static/app/base.css",
  "/static/app/scanner.css",
  "/static/app/common.js",
  "/static/app/scanner.js",
  "/static/app/scanner-store.js",
  "/static/app/verify.js",
  "/static/app/verify-reasons.js",
  "/static/app/partner-formats.js",
  "/static/app/verify-macao.js",
  "/static/app/verify-hongkong.js",
  "/static/vendor/zxing/iife/reader/index.js",
  "/static/vendor/zxing/reader/zxing_reader.wasm",
  "/static/vendor/base45/base45.js",
  // cborg's tokeniser and the modules it imports
  ...["decode", "common", "token", "jump", "byte-utils", "0uint", "1negint", "2bytes", "3string", "4array", "5map", "6tag", "7float"].map(
    (name) => `/static/vendor/cborg/${name}.js`,
  ),
];
const SHELL_PATHS = new Set(SHELL);

self.addEventListener("install", (event) => {
  event.waitUntil(
    caches
      .open(CACHE)
      .then((cache) => cache.addAll(SHELL.map((path) => new Request(path, { cache: "no-cache" }))))
      .then(() => self.skipWaiting()),
  );
});

self.addEventListener("activate", (event) => activateKeeping(event, "yk-scanner-", CACHE));

self.addEventListener("fetch", (event) => {
  const request = event.request;
  const url = new URL(request.url);
  if (request.method !== "GET" || url.origin !== self.location.origin || !SHELL_PATHS.has(url.pathname)) return;
  event.respondWith(fromCacheThenRefresh(event, request, CACHE, { bySearch: false }));
});
