// The API reference, drawn by Swagger UI from the npm-locked copy this server serves: no CDN,
// and no inline script, so the page keeps a strict script policy.
window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  // The service's own origin only: no validator badge fetched from swagger.io.
  validatorUrl: null,
});
