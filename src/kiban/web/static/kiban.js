// kiban web console: the only script. Live refresh of pages marked data-live, zoom and pan of the lineage graph.
(function () {
  "use strict";

  // Live pages (Today and Runs while a run goes, a job until it ends) re-read themselves every few seconds
  // and swap in the new <main>. Nothing is loaded from elsewhere.
  function live() {
    var main = document.getElementById("live");
    if (!main || !main.hasAttribute("data-live")) return;
    var busy = main.getAttribute("data-live") === "1";
    setTimeout(function () {
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
          live();
        })
        .catch(function () { live(); });
    }, busy ? 2000 : 15000);
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
