// Request detail: each action form posts JSON to the requests API with the session's CSRF
// token, then reloads the page so the state and history shown come from the server.
(function () {
  "use strict";
  var box = document.getElementById("actions");
  if (!box) return;
  var csrf = document.querySelector("meta[name=csrf-token]").getAttribute("content");
  var errorEl = document.getElementById("action-error");
  box.querySelectorAll("form[data-action]").forEach(function (form) {
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var body = {};
      var field = form.getAttribute("data-field");
      if (field) body[field] = form.elements[field].value;
      var buttons = form.querySelectorAll("button");
      buttons.forEach(function (b) { b.disabled = true; });
      fetch(box.getAttribute("data-api") + "/" + form.getAttribute("data-action"), {
        method: "POST", credentials: "same-origin",
        headers: {"Content-Type": "application/json", "X-CSRF-Token": csrf},
        body: JSON.stringify(body)
      }).then(function (r) {
        if (r.ok) { window.location.reload(); return; }
        return r.json().catch(function () { return {}; }).then(function (err) {
          var msg = box.getAttribute("data-error-" + (err.error || "other")) ||
            box.getAttribute("data-error-other");
          errorEl.textContent = msg;
          errorEl.hidden = false;
          buttons.forEach(function (b) { b.disabled = false; });
        });
      });
    });
  });
})();
