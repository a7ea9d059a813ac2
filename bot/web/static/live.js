// Live alert page: listen to the server's snapshots (SSE) and swap in the sections it rendered.
// The server renders the HTML with the same templates as the page, so nothing is formatted here.
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live || !window.EventSource) return;
  var labels = JSON.parse(live.getAttribute("data-state-labels") || "{}");
  var sections = ["totals", "tree", "curve", "hops", "unacked", "followups"];
  var source = new EventSource(live.getAttribute("data-url"));
  source.addEventListener("snapshot", function (ev) {
    var snap = JSON.parse(ev.data);
    sections.forEach(function (name) {
      var el = document.getElementById("live-" + name);
      if (el && snap.html[name] !== undefined) el.innerHTML = snap.html[name];
    });
    var state = document.getElementById("alert-state");
    if (state && labels[snap.state]) state.textContent = labels[snap.state];
    live.classList.add("on");
    live.classList.remove("off");
    document.body.setAttribute("data-live-acked", String(snap.acked));
  });
  source.onerror = function () {
    // EventSource reconnects by itself; just show that the numbers may be stale meanwhile
    live.classList.add("off");
    live.classList.remove("on");
  };
})();
