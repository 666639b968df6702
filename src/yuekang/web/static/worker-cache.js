// What both service workers do alike (scanner-sw.js, resident-sw.js), loaded into each with
// importScripts: keep only their own caches, and answer from the cache at once while refreshing
// it. The browser keeps an imported script with its worker, so it works offline as they do.

/** On activation: delete this worker's older caches (`prefix`, all but `current`) -- never
 * another worker's on the same origin -- and take over the page that registered it. */
function activateKeeping(event, prefix, current) {
  event.waitUntil(
    (async () => {
      for (const name of await caches.keys()) {
        if (name.startsWith(prefix) && name !== current) await caches.delete(name);
      }
      await self.clients.claim();
    })(),
  );
}

/** The cached copy at once (a gate or a phone must not wait on a slow network), refreshed in
 * the background for the next load; the network only when nothing is cached yet. `bySearch`:
 * whether ?lang=en and the like are other entries (the resident's files) or the same one (the
 * scanner's pages, kept by path). */
async function fromCacheThenRefresh(event, request, cacheName, { bySearch }) {
  const cache = await caches.open(cacheName);
  const cached = await cache.match(request, { ignoreSearch: !bySearch, ignoreVary: true });
  const key = bySearch ? request : new URL(request.url).pathname;
  const refresh = fetch(request, { cache: "no-cache" })
    .then(async (response) => {
      if (response.ok && response.type === "basic") await cache.put(key, response.clone());
      return response;
    })
    .catch(() => null);
  if (cached) {
    event.waitUntil(refresh);
    return cached;
  }
  return (await refresh) ?? Response.error();
}
