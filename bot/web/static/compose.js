// Composer: when type or colour changes, refill the text from the template, unless staff
// already edited it (then their words stay).
(function () {
  "use strict";
  var form = document.getElementById("composer");
  var text = document.getElementById("text");
  if (!form || !text) return;
  var edited = false;
  text.addEventListener("input", function () { edited = true; });
  function refill() {
    if (edited) return;
    var type = form.elements["type"].value;
    var colour = (form.querySelector("input[name=colour]:checked") || {}).value;
    if (!type || !colour) return;
    var url = text.getAttribute("data-source") + "?type=" + encodeURIComponent(type) +
      "&colour=" + encodeURIComponent(colour);
    fetch(url, {credentials: "same-origin"}).then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) { if (data && !edited) text.value = data.text; });
  }
  form.elements["type"].addEventListener("change", refill);
  form.querySelectorAll("input[name=colour]").forEach(function (r) { r.addEventListener("change", refill); });
  // ticking a grid or compound ticks what is under it (the server resolves either way)
  form.querySelectorAll("input[name=scope]").forEach(function (box) {
    box.addEventListener("change", function () {
      var prefix = box.getAttribute("data-path") + "/";
      form.querySelectorAll("input[name=scope]").forEach(function (other) {
        if (other.getAttribute("data-path").indexOf(prefix) === 0) other.checked = box.checked;
      });
    });
  });
})();
