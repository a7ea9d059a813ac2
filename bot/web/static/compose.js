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
    var colour = (form.querySelector("input[name=colour]:checked") || {}).value || "";
    if (!type) return;
    var url = text.getAttribute("data-source") + "?type=" + encodeURIComponent(type) +
      "&colour=" + encodeURIComponent(colour);
    fetch(url, {credentials: "same-origin"}).then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) { if (data && !edited) text.value = data.text; });
  }
  // a notice (通知) has no colour: hide the colour choice; categories only for "vulnerable only"
  var colours = document.getElementById("colours");
  var cats = document.getElementById("categories");
  function sync() {
    var type = form.elements["type"];
    if (colours) colours.hidden = type.value === type.getAttribute("data-notice");
    // a colour the signal does not have (no blue 高温) cannot be picked; the server refuses it too
    var option = type.options[type.selectedIndex];
    var has = ((option && option.getAttribute("data-colours")) || "").split(" ");
    form.querySelectorAll("input[name=colour]").forEach(function (r) {
      r.disabled = has.indexOf(r.value) < 0 && type.value !== type.getAttribute("data-notice");
      if (r.disabled && r.checked) {
        r.checked = false;
        var first = form.querySelector("input[name=colour]:not(:disabled)");
        if (first) first.checked = true;
      }
    });
    var vulnerable = document.getElementById("audience-vulnerable");
    if (cats && vulnerable) cats.hidden = !vulnerable.checked;
  }
  form.elements["type"].addEventListener("change", sync);
  form.querySelectorAll("input[name=audience]").forEach(function (r) { r.addEventListener("change", sync); });
  sync();
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
