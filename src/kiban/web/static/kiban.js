// kiban web console: the only script. Live refresh of pages marked data-live, zoom and pan of the lineage graph.
(function () {
  "use strict";

  // Live pages (Today, Runs, a run while it goes, a job until it ends) re-read themselves and swap in the new
  // <main>. Where the page names an event stream (data-events), the server says when something changed
  // (server-sent events); otherwise, or when the stream cannot be opened, the page polls. Nothing is loaded from
  // elsewhere.
  function refresh(main, after) {
    if (main.kibanBusy) { main.kibanAgain = true; return; }  // one re-read at a time; the last change wins
    main.kibanBusy = true;
    fetch(location.href, { credentials: "same-origin", headers: { "X-Requested-With": "kiban-live" } })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (text) {
        if (text) {
          var fresh = new DOMParser().parseFromString(text, "text/html").getElementById("live");
          if (fresh) {
            main.innerHTML = fresh.innerHTML;
            main.setAttribute("data-live", fresh.getAttribute("data-live") || "0");
          }
        }
      })
      .catch(function () {})
      .then(function () {
        main.kibanBusy = false;
        if (main.kibanAgain) { main.kibanAgain = false; refresh(main, after); } else if (after) { after(); }
      });
  }

  function poll(main) {
    var busy = main.getAttribute("data-live") === "1";
    setTimeout(function () { refresh(main, function () { poll(main); }); }, busy ? 2000 : 15000);
  }

  function listen(main, url) {
    var source = new EventSource(url);
    var opened = false, failures = 0;
    source.addEventListener("open", function () { opened = true; failures = 0; });
    source.addEventListener("change", function () { refresh(main); });
    source.addEventListener("end", function () { source.close(); refresh(main); });  // the run is over
    source.addEventListener("error", function () {
      failures += 1;  // the browser reconnects by itself after a drop; give up only if it never works
      if (!opened || failures > 3) { source.close(); poll(main); }
    });
  }

  function live() {
    var main = document.getElementById("live");
    if (!main || !main.hasAttribute("data-live")) return;
    var url = main.getAttribute("data-events");
    if (url && window.EventSource) listen(main, url); else poll(main);
  }

  // The lineage graph: wheel zooms around the pointer, dragging pans; "Fit" shows everything again.
  function zoomPan() {
    var svg = document.getElementById("lineage");
    if (!svg) return;
    var box = svg.viewBox.baseVal;
    var home = { x: box.x, y: box.y, w: box.width, h: box.height };
    // a big graph opens at its natural size (text readable) from the top left; "Fit" shows all of it
    var frame = svg.getBoundingClientRect();
    if (frame.width > 0 && box.width > frame.width * 1.2) {
      box.width = frame.width; box.height = frame.height;
    }
    var drag = null;
    var moved = false;
    function point(evt) {
      var r = svg.getBoundingClientRect();
      return { x: box.x + (evt.clientX - r.left) / r.width * box.width,
               y: box.y + (evt.clientY - r.top) / r.height * box.height };
    }
    svg.addEventListener("wheel", function (evt) {
      evt.preventDefault();
      var p = point(evt);
      var k = evt.deltaY < 0 ? 0.8 : 1.25;
      box.x = p.x - (p.x - box.x) * k; box.y = p.y - (p.y - box.y) * k;
      box.width *= k; box.height *= k;
    }, { passive: false });
    svg.addEventListener("mousedown", function (evt) { drag = { x: evt.clientX, y: evt.clientY }; moved = false; });
    window.addEventListener("mouseup", function () { drag = null; });
    window.addEventListener("mousemove", function (evt) {
      if (!drag) return;
      var r = svg.getBoundingClientRect();
      var dx = (evt.clientX - drag.x) / r.width * box.width, dy = (evt.clientY - drag.y) / r.height * box.height;
      if (Math.abs(evt.clientX - drag.x) + Math.abs(evt.clientY - drag.y) > 3) moved = true;
      box.x -= dx; box.y -= dy; drag = { x: evt.clientX, y: evt.clientY };
    });
    svg.addEventListener("click", function (evt) { if (moved) { evt.preventDefault(); moved = false; } }, true);
    var reset = document.getElementById("zoom-reset");
    if (reset) reset.addEventListener("click", function () {
      box.x = home.x; box.y = home.y; box.width = home.w; box.height = home.h;
    });
  }

  document.addEventListener("DOMContentLoaded", function () { live(); zoomPan(); });
})();
