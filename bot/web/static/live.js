// Live alert page. The server sends one `snapshot` (whole sections, rendered by the page's own
// templates) when it has no baseline for this page, then small `diff`s: node counters, changed
// hop rows, households that acked or were reached, and re-rendered sections. Nothing is worded
// here: numbers go into elements the templates made for them. "更多" links fetch the next rows.
(function () {
  "use strict";
  function $(sel, root) { return (root || document).querySelector(sel); }
  function $$(sel, root) { return Array.prototype.slice.call((root || document).querySelectorAll(sel)); }
  function setText(el, v) { if (el) el.textContent = String(v); }

  // "更多": replace the link's row with the next rows (and the next link, if any)
  document.addEventListener("click", function (ev) {
    var a = ev.target.closest ? ev.target.closest("a[data-more]") : null;
    if (!a) return;
    ev.preventDefault();
    if (a.getAttribute("aria-busy")) return;
    a.setAttribute("aria-busy", "true");
    fetch(a.getAttribute("href"), { credentials: "same-origin" }).then(function (r) {
      if (!r.ok) throw new Error(String(r.status));
      return r.text();
    }).then(function (html) {
      var row = a.closest(".more-row");
      row.insertAdjacentHTML("afterend", html);
      row.parentNode.removeChild(row);
    }).catch(function () { a.removeAttribute("aria-busy"); });
  });

  var live = document.getElementById("live");
  if (!live || !window.EventSource) return;
  var labels = JSON.parse(live.getAttribute("data-state-labels") || "{}");

  function setSection(name, html) {
    var el = document.getElementById("live-" + name);
    if (el) el.innerHTML = html;
  }

  function patchNode(id, v) {  // v: [acked, households, reached, help, pct, shade]
    var li = $('li[data-node="' + id + '"]');
    if (!li) return;
    var row = li.firstElementChild;
    row.className = row.className.replace(/\bcov\d+\b/, "cov" + v[5]);
    setText($(".acked", row), v[0]);
    setText($(".reached i", row), v[2]);
    var help = $(".help", row);
    if (help) { setText($("i", help), v[3]); help.hidden = !v[3]; }
    setText($(".pct i", row), v[4]);
    var bar = $("progress", row);
    if (bar) bar.value = v[4];
  }

  function state(s, ended) {
    var el = document.getElementById("alert-state");
    if (el && labels[s]) el.textContent = labels[s];
    if (ended) stop();
  }

  var source = new EventSource(live.getAttribute("data-url"));
  function stop() {
    source.close();
    live.classList.remove("on", "off");
    live.hidden = true;
    var banner = document.getElementById("ended-banner");
    if (banner) banner.hidden = false;
    $$(".inline-form").forEach(function (f) { f.hidden = true; });
  }

  source.addEventListener("snapshot", function (ev) {
    var snap = JSON.parse(ev.data);
    Object.keys(snap.html || {}).forEach(function (name) { setSection(name, snap.html[name]); });
    document.body.setAttribute("data-live-acked", String(snap.acked));
    state(snap.state, snap.ended);
  });
  source.addEventListener("diff", function (ev) {
    var d = JSON.parse(ev.data);
    Object.keys(d.html || {}).forEach(function (name) { setSection(name, d.html[name]); });
    Object.keys(d.nodes || {}).forEach(function (id) { patchNode(id, d.nodes[id]); });
    Object.keys(d.hops || {}).forEach(function (id) {
      var tr = $('tr[data-hop="' + id + '"]');
      if (tr) tr.outerHTML = d.hops[id];
    });
    (d.gone || []).forEach(function (id) {
      var li = $('li[data-h="' + id + '"]');
      if (!li) return;
      var group = li.closest(".ugroup");
      li.parentNode.removeChild(li);
      if (group && !$("li", group)) group.parentNode.removeChild(group);
    });
    (d.reached || []).forEach(function (id) {
      var li = $('li[data-h="' + id + '"]');
      if (li) li.classList.remove("unreached");
    });
    if (d.acked !== undefined) document.body.setAttribute("data-live-acked", String(d.acked));
    if (d.state !== undefined || d.ended) state(d.state, d.ended);
    document.body.setAttribute("data-live-version", String(d.v));
  });
  source.addEventListener("ended", stop);
  source.addEventListener("open", function () {
    live.classList.add("on");
    live.classList.remove("off");
  });
  source.onerror = function () {
    // EventSource reconnects by itself (sending Last-Event-ID); show the numbers may be stale
    live.classList.add("off");
    live.classList.remove("on");
  };
})();
