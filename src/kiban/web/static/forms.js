// The form's rules, checked as the person types (the server checks the same ones: kiban.forms.validate).
(function () {
  "use strict";
  var form = document.getElementById("entry-form");
  var source = document.getElementById("form-rules");
  if (!form || !source) return;
  var rules = JSON.parse(source.textContent);
  function reason(rule, raw) {
    var value = (raw || "").trim();
    if (!value) return rule.required ? "is required" : "";
    var number = Number(value.replace(/,/g, ""));
    if (rule.type === "integer" && !/^[+-]?\d{1,18}$/.test(value.replace(/,/g, ""))) return "is not a whole number";
    if (rule.type === "number" && !isFinite(number)) return "is not a number";
    if (rule.type === "date" && !/^\d{4}[-/]\d{2}[-/]\d{2}$/.test(value)) return "is not a date (YYYY-MM-DD)";
    if (rule.allowed && rule.allowed.indexOf(value) < 0) return "must be one of " + rule.allowed.join(", ");
    if (rule.type === "integer" || rule.type === "number") {
      if (rule.min !== null && number < rule.min) return "must be at least " + rule.min;
      if (rule.max !== null && number > rule.max) return "must be at most " + rule.max;
    }
    if (rule.type === "text") {
      if (rule.max_length && value.length > rule.max_length) return "is longer than " + rule.max_length + " characters";
      if (rule.pattern && !new RegExp("^(?:" + rule.pattern + ")$").test(value)) return "is not in the expected form";
    }
    return "";
  }
  function check(rule) {
    var input = form.elements[rule.name];
    var why = document.getElementById("e_" + rule.name);
    var text = reason(rule, input.value);
    why.textContent = text;
    input.setAttribute("aria-invalid", text ? "true" : "false");
    return !text;
  }
  rules.forEach(function (rule) {
    var input = form.elements[rule.name];
    if (!input) return;
    input.addEventListener("input", function () { check(rule); });
    input.addEventListener("change", function () { check(rule); });
  });
  form.addEventListener("submit", function (event) {
    var ok = rules.map(check).every(Boolean);
    if (!ok) event.preventDefault();
    else form.querySelector("button[type=submit]").disabled = true;  // one tap, one submission
  });
})();
