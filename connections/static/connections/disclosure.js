/* Forms that fit: hide the rows of fields that do not apply to the current choices
   (connections/admin/disclosure.py marks them with data-tm-when="control:v1|v2").
   Without JavaScript every field shows and the server ignores what does not apply. */
(function () {
  "use strict";
  function rowOf(el) { return el.closest(".form-row") || el.closest("div[class*='field-']") || el.parentNode; }
  function update() {
    document.querySelectorAll("[data-tm-when]").forEach(function (el) {
      var rule = el.getAttribute("data-tm-when").split(":");
      var control = document.getElementById("id_" + rule[0]);
      if (!control) { return; }
      var applies = rule[1].split("|").indexOf(control.value) !== -1;
      var row = rowOf(el);
      row.hidden = !applies;
      row.setAttribute("data-tm-applies", applies ? "true" : "false");
    });
  }
  function start() {
    var controls = {};
    document.querySelectorAll("[data-tm-when]").forEach(function (el) {
      controls[el.getAttribute("data-tm-when").split(":")[0]] = true;
    });
    Object.keys(controls).forEach(function (name) {
      var control = document.getElementById("id_" + name);
      if (control) { control.addEventListener("change", update); }
    });
    update();
  }
  if (document.readyState === "loading") { document.addEventListener("DOMContentLoaded", start); } else { start(); }
}());
