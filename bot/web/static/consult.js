// 议事 live tally: every few seconds fetch /consultations/ID/tally (the same parts the page renders,
// same login and area) and swap each [data-live] element into the page by its id. Nothing else on the
// page is touched, so a half-filled proxy form stays as it is. Stops when the consultation has closed,
// when the fragment cannot be read (logged out, gone) or when the page is hidden for good.
(function () {
  "use strict";
  var on = document.getElementById("live-on");
  if (!on || !window.fetch || !window.DOMParser) return;
  var url = on.getAttribute("data-tally-url");
  var every = parseInt(on.getAttribute("data-poll-ms"), 10) || 5000;
  var timer = null, failures = 0;
  on.hidden = false;

  function stop() {
    if (timer) window.clearTimeout(timer);
    timer = null;
    on.hidden = true;
  }

  function apply(html) {
    var doc = new DOMParser().parseFromString(html, "text/html");
    var root = doc.getElementById("live-parts");
    if (!root) return false;
    Array.prototype.forEach.call(root.querySelectorAll("[data-live][id]"), function (fresh) {
      var old = document.getElementById(fresh.id);
      if (old) old.replaceWith(document.importNode(fresh, true));
    });
    return root.getAttribute("data-open") === "1";
  }

  function tick() {
    timer = null;
    fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" }, cache: "no-store" })
      .then(function (r) {
        if (r.redirected || (r.status >= 400 && r.status < 500)) return null;  // logged out, gone: stop
        if (!r.ok) throw new Error(String(r.status));
        return r.text();
      })
      .then(function (html) {
        failures = 0;
        if (html !== null && apply(html)) schedule(); else stop();
      })
      .catch(function () {  // the network or the server hiccuped: try again a few times
        failures += 1;
        if (failures < 4) schedule(); else stop();
      });
  }

  function schedule() {
    if (!timer) timer = window.setTimeout(tick, every);
  }

  schedule();
})();
