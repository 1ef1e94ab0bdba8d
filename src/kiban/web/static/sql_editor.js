// kiban SQL console: completion of table and column names, Ctrl+Enter (Cmd+Enter) runs, the schema sidebar
// inserts names and filters. The textarea stays a plain form field: without this script the console still works.
(function () {
  "use strict";

  function start() {
    var area = document.getElementById("sql"), list = document.getElementById("sql-complete");
    var form = document.getElementById("console-form"), data = document.getElementById("sql-schema");
    if (!area || !list || !form || !data) return;
    var schema = JSON.parse(data.textContent || "{}");
    var tables = schema.tables || {}, words = schema.words || [];
    var names = Object.keys(tables);
    var shown = [], active = -1, span = null;

    function insert(text, from, to) {  // replace [from, to) with text, caret after it
      area.setRangeText(text, from, to, "end");
      area.dispatchEvent(new Event("input", { bubbles: true }));
      area.focus();
    }
    function wordAt() {  // the name being typed before the caret: letters, digits, _ and dots
      var end = area.selectionStart, text = area.value, begin = end;
      while (begin > 0 && /[\w.\u3040-\u30ff\u4e00-\u9fff]/.test(text.charAt(begin - 1))) begin--;
      return { from: begin, to: end, word: text.slice(begin, end) };
    }
    function mentioned() {  // tables the query names: their columns come first
      var text = area.value.toLowerCase();
      return names.filter(function (t) { return text.indexOf(t.toLowerCase()) >= 0; });
    }
    function candidates(word, forced) {
      var w = word.toLowerCase(), out = [], seen = {};
      function add(label, value, kind) {
        if (seen[value] || out.length >= 12) return;
        seen[value] = 1; out.push({ label: label, value: value, kind: kind });
      }
      if (!w && !forced) return out;
      var dot = w.lastIndexOf("."), tail = dot >= 0 ? w.slice(dot + 1) : w;
      mentioned().forEach(function (t) {  // columns of the tables in the query (alias.col: after the dot)
        tables[t].forEach(function (c) {
          if (c[0].toLowerCase().indexOf(tail) === 0) add(c[0] + (c[2] ? " · masked" : "") + "  (" + t + ")", (dot >= 0 ? word.slice(0, dot + 1) : "") + c[0], "column");
        });
      });
      names.forEach(function (t) { if (t.toLowerCase().indexOf(w) === 0) add(t, t, "table"); });
      names.forEach(function (t) {  // "orders" finds warehouse.orders
        var short = t.slice(t.indexOf(".") + 1).toLowerCase();
        if (w && short.indexOf(w) === 0) add(t, t, "table");
      });
      if (dot < 0 && w) words.forEach(function (k) { if (k.indexOf(w) === 0 && k !== w) add(k, k, "keyword"); });
      return out;
    }
    function close() { list.hidden = true; shown = []; active = -1; area.removeAttribute("aria-activedescendant"); }
    function open(forced) {
      span = wordAt();
      shown = candidates(span.word, forced);
      if (!shown.length || (shown.length === 1 && shown[0].value === span.word)) { close(); return; }
      list.innerHTML = "";
      shown.forEach(function (c, i) {
        var li = document.createElement("li");
        li.id = "sql-opt-" + i; li.setAttribute("role", "option"); li.className = "k-" + c.kind;
        li.textContent = c.label;
        li.addEventListener("mousedown", function (evt) { evt.preventDefault(); take(i); });
        list.appendChild(li);
      });
      list.hidden = false;
      pick(0);
    }
    function pick(i) {
      active = (i + shown.length) % shown.length;
      Array.prototype.forEach.call(list.children, function (li, j) { li.setAttribute("aria-selected", j === active ? "true" : "false"); });
      area.setAttribute("aria-activedescendant", "sql-opt-" + active);
    }
    function take(i) {
      var c = shown[i];
      close();
      if (c && span) insert(c.value + (c.kind === "keyword" && !/\($/.test(c.value) ? " " : ""), span.from, span.to);
    }
    area.addEventListener("keydown", function (evt) {
      if ((evt.ctrlKey || evt.metaKey) && evt.key === "Enter") {  // run
        evt.preventDefault(); close();
        if (form.requestSubmit) form.requestSubmit(); else form.submit();
        return;
      }
      if (evt.ctrlKey && evt.key === " ") { evt.preventDefault(); open(true); return; }
      if (list.hidden) return;
      if (evt.key === "ArrowDown") { evt.preventDefault(); pick(active + 1); }
      else if (evt.key === "ArrowUp") { evt.preventDefault(); pick(active - 1); }
      else if (evt.key === "Tab" || evt.key === "Enter") { evt.preventDefault(); take(active); }
      else if (evt.key === "Escape") { evt.preventDefault(); close(); }
    });
    area.addEventListener("input", function (evt) {
      if (evt.isTrusted === false && list.hidden) return;  // our own insert
      var w = wordAt().word;
      if (w.length >= 2 || w.indexOf(".") >= 0) open(false); else close();
    });
    area.addEventListener("blur", function () { setTimeout(close, 150); });

    // the sidebar: a click inserts the name at the caret; the filter hides what does not match
    document.querySelectorAll("#schema-list button.ins").forEach(function (b) {
      b.addEventListener("click", function (evt) {
        evt.preventDefault();
        insert(b.getAttribute("data-insert"), area.selectionStart, area.selectionEnd);
      });
    });
    var filter = document.getElementById("schema-filter");
    if (filter) filter.addEventListener("input", function () {
      var q = filter.value.toLowerCase().trim();
      document.querySelectorAll("#schema-list details").forEach(function (d) {
        var table = d.getAttribute("data-table").toLowerCase(), any = false;
        d.querySelectorAll("li").forEach(function (li) {
          var hit = !q || table.indexOf(q) >= 0 || li.getAttribute("data-column").toLowerCase().indexOf(q) >= 0;
          li.hidden = !hit; any = any || hit;
        });
        d.hidden = !!q && !any && table.indexOf(q) < 0;
        d.open = !!q && any && table.indexOf(q) < 0;
      });
    });
  }

  document.addEventListener("DOMContentLoaded", start);
})();
