// The resident page's service worker: a phone that loaded / once opens it again with no network,
// showing the last code the page kept (greyed once it has expired).
//
// Served from /static/app/ with `Service-Worker-Allowed: /` and registered with scope /. That
// scope covers every page of the origin, so this worker answers only for the resident page
// itself (a navigation to /) and for the files that page loads; the console and the API
// reference go to the network untouched, and the scanner has its own worker with the narrower
// scope /scanner, which wins there.
//
// No fixed list of files: the page's files are cached as the page asks for them, so a change
// of their URLs (a build id in the path) needs no change here. API answers (/v1/...) are never
// cached by the worker; the page keeps its last code itself (localStorage, "yk.lastcode").

const CACHE = "yk-resident-v1";
importScripts("/static/app/worker-cache.js");
const PAGE = "/";

self.addEventListener("install", () => self.skipWaiting());

// Take over the page that registered us, so what it loads from now on is kept.
self.addEventListener("activate", (event) => activateKeeping(event, "yk-resident-", CACHE));

self.addEventListener("fetch", (event) => {
  const request = event.request;
  const url = new URL(request.url);
  if (request.method !== "GET" || url.origin !== self.location.origin) return;
  if (request.mode === "navigate") {
    if (url.pathname === PAGE) event.respondWith(networkFirst(event, request));
    return;
  }
  if (!url.pathname.startsWith("/static/")) return;
  event.respondWith(forResidentPage(event, request));
});

// The page's first load happens before this worker controls it: the page then names what it
// loaded (its own files, from the browser's resource timing), and those not kept yet are fetched
// into the cache, with the page itself. The page names them on every load, so a file it no longer
// loads (an old build's URL) is dropped from the cache then.
self.addEventListener("message", (event) => {
  const keep = event.data && event.data.keep;
  if (!Array.isArray(keep) || !event.source || new URL(event.source.url).pathname !== PAGE) return;
  const urls = keep
    .map((item) => new URL(String(item), self.location.origin))
    .filter((url) => url.origin === self.location.origin && url.pathname.startsWith("/static/"))
    .map((url) => url.pathname + url.search);
  event.waitUntil(
    (async () => {
      const cache = await caches.open(CACHE);
      const wanted = new Set([PAGE, ...urls]);
      await Promise.all(
        [...wanted].map(async (path) => {
          if (await cache.match(path)) return; // kept already, and refreshed as it is used
          const response = await fetch(path, { cache: "no-cache" }).catch(() => null);
          if (response && response.ok && response.type === "basic") await cache.put(path, response);
        }),
      );
      for (const request of await cache.keys()) {
        const url = new URL(request.url);
        if (url.pathname.startsWith("/static/") && !wanted.has(url.pathname + url.search)) await cache.delete(request);
      }
    })(),
  );
});

/** The page: the network's answer when there is one (a new deployment shows at once), else the
 * copy kept last time (?lang=en and the like are the same page). */
async function networkFirst(event, request) {
  const cache = await caches.open(CACHE);
  try {
    const response = await fetch(request);
    if (response.ok && response.type === "basic") {
      event.waitUntil(cache.put(PAGE, response.clone()));
    } else if (response.status >= 500) {
      // The server (or the proxy before it) is down: the kept page is better than its error.
      const cached = await cache.match(PAGE, { ignoreSearch: true, ignoreVary: true });
      if (cached) return cached;
    }
    return response;
  } catch (error) {
    const cached = await cache.match(PAGE, { ignoreSearch: true, ignoreVary: true });
    if (cached) return cached;
    throw error;
  }
}

/** A file the resident page loads: from the cache at once, refreshed in the background for the
 * next load. Another page's files (the console's, under this scope too) go to the network. */
async function forResidentPage(event, request) {
  const client = event.clientId ? await self.clients.get(event.clientId) : null;
  if (!client || new URL(client.url).pathname !== PAGE) return fetch(request);
  return fromCacheThenRefresh(event, request, CACHE, { bySearch: true });
}
