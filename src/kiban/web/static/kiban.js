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

  // The lineage graph (laid out and drawn on the server, any size): wheel or + / - zoom around a point, drag or
  // arrow keys pan, 0 fits, 1 is natural size; "Find" marks matching boxes and jumps to them. A big graph
  // (data-window) has every box drawn but only the labels and links of what is in view: they are drawn here,
  // from the positions in #lineage-data, whenever the view moves. Far out, no labels at all (class "far").
  function zoomPan() {
    var svg = document.getElementById("lineage");
    if (!svg) return;
    var data = JSON.parse((document.getElementById("lineage-data") || {}).textContent || '{"nodes":[]}');
    var nodes = data.nodes || [], NW = data.w || 190, NH = data.h || 22;
    var windowed = svg.hasAttribute("data-window");
    var labels = document.getElementById("labels"), marks = document.getElementById("hits");
    var box = svg.viewBox.baseVal;
    var home = { x: box.x, y: box.y, w: box.width, h: box.height };
    var frame = svg.getBoundingClientRect();
    var fw = frame.width || 800, fh = frame.height || 640;
    var pending = false, hitSet = {};
    function isFar() { return box.width / fw > 2.5; }
    function paint() {  // the labels of the boxes in view (a big graph only)
      pending = false;
      if (!windowed || !labels) return;
      var parts = [];
      if (!isFar()) {
        var x0 = box.x - NW, x1 = box.x + box.width, y0 = box.y - NH, y1 = box.y + box.height;
        for (var i = 0; i < nodes.length && parts.length < 2000; i++) {
          var n = nodes[i];
          if (n[1] < x0 || n[1] > x1 || n[2] < y0 || n[2] > y1) continue;
          parts.push(label(n));
        }
      }
      labels.innerHTML = parts.join("");
    }
    function esc(t) { return String(t).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/"/g, "&quot;"); }
    function label(n) {
      var name = n[0].length <= 27 ? n[0] : n[0].slice(0, 26) + "\u2026";
      var cls = n[3].replace(/ /g, "_");
      return '<a href="/assets/' + esc(n[0]) + '" class="node st-' + esc(cls) + (hitSet[n[0]] ? " hit" : "") +
        '" data-key="' + esc(n[0]) + '"><rect x="' + n[1] + '" y="' + n[2] + '" width="' + NW + '" height="' + NH +
        '" rx="4"/><text x="' + (n[1] + 5) + '" y="' + (n[2] + 15) + '">' + esc((data.icons || {})[n[3]] || "\u2022") +
        " " + esc(name) + "</text><title>" + esc(n[0] + ": " + n[3]) + "</title></a>";
    }
    function set(x, y, w, h) {
      box.x = x; box.y = y; box.width = w; box.height = h;
      svg.classList.toggle("far", isFar());
      if (windowed && !pending) { pending = true; requestAnimationFrame(paint); }
    }
    function zoomAt(px, py, k) { set(px - (px - box.x) * k, py - (py - box.y) * k, box.width * k, box.height * k); }
    function centreAt(x, y) {  // natural size (or closer), this point in the middle
      var w = Math.min(box.width, fw), h = w * fh / fw;
      set(x - w / 2, y - h / 2, w, h);
    }
    function centreOn(n) { centreAt(n[1] + NW / 2, n[2] + NH / 2); }
    function natural() { set(box.x + box.width / 2 - fw / 2, box.y + box.height / 2 - fh / 2, fw, fh); }
    function fit() { set(home.x, home.y, home.w, home.h); }
    var byKey = {};
    nodes.forEach(function (n) { byKey[n[0]] = n; });
    // a big graph opens at natural size (labels readable): on its focus or first broken asset, else on the
    // middle of its left edge (the sources) — the same spot the server drew the labels of
    var start = byKey[svg.getAttribute("data-centre")];
    if (box.width > fw * 1.2 || box.height > fh * 1.2) {
      box.width = fw; box.height = fh;
      if (start) centreOn(start); else set(0, Math.max(0, home.h / 2 - fh / 2), fw, fh);
    } else set(box.x, box.y, box.width, box.height);
    var drag = null, moved = false;
    function point(evt) {
      var r = svg.getBoundingClientRect();
      return { x: box.x + (evt.clientX - r.left) / r.width * box.width,
               y: box.y + (evt.clientY - r.top) / r.height * box.height };
    }
    svg.addEventListener("wheel", function (evt) {
      evt.preventDefault();
      var p = point(evt);
      zoomAt(p.x, p.y, evt.deltaY < 0 ? 0.8 : 1.25);
    }, { passive: false });
    svg.addEventListener("mousedown", function (evt) { drag = { x: evt.clientX, y: evt.clientY }; moved = false; });
    window.addEventListener("mouseup", function () { drag = null; });
    window.addEventListener("mousemove", function (evt) {
      if (!drag) return;
      var r = svg.getBoundingClientRect();
      var dx = (evt.clientX - drag.x) / r.width * box.width, dy = (evt.clientY - drag.y) / r.height * box.height;
      if (Math.abs(evt.clientX - drag.x) + Math.abs(evt.clientY - drag.y) > 3) moved = true;
      set(box.x - dx, box.y - dy, box.width, box.height); drag = { x: evt.clientX, y: evt.clientY };
    });
    svg.addEventListener("click", function (evt) {
      if (moved) { evt.preventDefault(); moved = false; return; }
      if (isFar() && windowed) {  // far out there are no links: a click zooms in on the box under the pointer
        var p = point(evt);
        var hit = nodes.filter(function (n) { return p.x >= n[1] && p.x <= n[1] + NW && p.y >= n[2] && p.y <= n[2] + NH; })[0];
        centreAt(hit ? hit[1] + NW / 2 : p.x, hit ? hit[2] + NH / 2 : p.y);
      }
    }, true);
    function middle(k) { zoomAt(box.x + box.width / 2, box.y + box.height / 2, k); }
    svg.addEventListener("keydown", function (evt) {
      var step = 0.15, handled = true;
      if (evt.key === "+" || evt.key === "=") middle(0.8);
      else if (evt.key === "-" || evt.key === "_") middle(1.25);
      else if (evt.key === "0") fit();
      else if (evt.key === "1") natural();
      else if (evt.key === "ArrowLeft") set(box.x - box.width * step, box.y, box.width, box.height);
      else if (evt.key === "ArrowRight") set(box.x + box.width * step, box.y, box.width, box.height);
      else if (evt.key === "ArrowUp") set(box.x, box.y - box.height * step, box.width, box.height);
      else if (evt.key === "ArrowDown") set(box.x, box.y + box.height * step, box.width, box.height);
      else handled = false;
      if (handled) evt.preventDefault();
    });
    function on(id, fn) { var el = document.getElementById(id); if (el) el.addEventListener("click", fn); }
    on("zoom-reset", fit);
    on("zoom-one", natural);
    on("zoom-in", function () { middle(0.8); });
    on("zoom-out", function () { middle(1.25); });

    // Find: every box whose name contains the words typed (in any order) is outlined; Enter jumps to the next
    var find = document.getElementById("graph-find");
    if (!find) return;
    var lower = nodes.map(function (n) { return n[0].toLowerCase(); });
    var hits = [], at = -1;
    var count = document.getElementById("graph-count"), list = document.getElementById("graph-hits");
    function show() {
      var words = find.value.toLowerCase().split(/\s+/).filter(Boolean);
      hits = []; at = -1; hitSet = {};
      if (words.length) {
        for (var i = 0; i < nodes.length; i++) {
          if (words.every(function (w) { return lower[i].indexOf(w) >= 0; })) { hits.push(nodes[i]); hitSet[nodes[i][0]] = 1; }
        }
      }
      if (marks) marks.setAttribute("d", hits.map(function (n) {
        return "M" + (n[1] - 3) + "," + (n[2] - 3) + "h" + (NW + 6) + "v" + (NH + 6) + "h" + (-NW - 6) + "z"; }).join(""));
      svg.querySelectorAll("a.node").forEach(function (a) { a.classList.toggle("hit", !!hitSet[a.getAttribute("data-key")]); });
      count.textContent = words.length ? hits.length + " found" + (hits.length ? "; Enter jumps to the next" : "") : "";
      list.innerHTML = "";
      hits.slice(0, 8).forEach(function (n) {
        var li = document.createElement("li"), go = document.createElement("button"), near = document.createElement("a");
        go.type = "button"; go.className = "link"; go.textContent = n[0];
        go.addEventListener("click", function () { centreOn(n); });
        near.href = "/graph?focus=" + encodeURIComponent("+" + n[0] + "+") + "&depth=2";
        near.textContent = "focus \u00b12";
        li.appendChild(go); li.appendChild(document.createTextNode(" \u00b7 ")); li.appendChild(near);
        list.appendChild(li);
      });
    }
    find.addEventListener("input", show);
    find.addEventListener("keydown", function (evt) {
      if (evt.key !== "Enter" || !hits.length) return;
      evt.preventDefault();
      at = (at + 1) % hits.length;
      centreOn(hits[at]);
      count.textContent = (at + 1) + " of " + hits.length + " (Enter: next)";
    });
    document.addEventListener("keydown", function (evt) {
      var t = evt.target && evt.target.tagName;
      if (evt.key === "/" && t !== "INPUT" && t !== "TEXTAREA" && t !== "SELECT") { evt.preventDefault(); find.focus(); }
    });
  }

  document.addEventListener("DOMContentLoaded", function () { live(); zoomPan(); });
})();
