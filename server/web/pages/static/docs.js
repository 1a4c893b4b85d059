// Swagger UI for /docs (server/web/pages/docs.py), in a file of its own: the page's
// Content-Security-Policy runs scripts from 'self' only.
SwaggerUIBundle({
  url: "/api/v1/openapi",
  dom_id: "#swagger-ui",
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
  deepLinking: true,
  persistAuthorization: false, // a key typed into Authorize is gone with the tab
  validatorUrl: null, // the default badge is an image from validator.swagger.io
  // "Try it out" calls the Tendril that served this page. The document's server is
  // TENDRIL_PUBLIC_URL, which a browser may reach by another name (localhost, a proxy's host),
  // and the page's policy lets it call its own origin only.
  requestInterceptor: (request) => {
    const url = new URL(request.url, window.location.href);
    request.url = window.location.origin + url.pathname + url.search;
    return request;
  },
});
