// The model card's try-it form: posts one reading to /classify and shows the answer, or the
// service's own error message next to the field it names (`details[].loc`). Nothing is
// checked here: the service decides what a valid reading is.
"use strict";
(function () {
  var form = document.getElementById("try-form");
  if (!form) { return; }
  var button = form.querySelector("button");
  var general = document.getElementById("try-error");
  var result = document.getElementById("try-result");
  var inputs = Array.prototype.slice.call(form.querySelectorAll("input[name]"));

  function show(id, text) { document.getElementById(id).textContent = text; }

  function clearErrors() {
    general.textContent = "";
    inputs.forEach(function (input) { input.removeAttribute("aria-invalid"); });
    form.querySelectorAll(".field-error").forEach(function (span) { span.textContent = ""; });
  }

  function reading() {
    // A number where the text is one; otherwise the text itself, so that the service says why.
    var body = {};
    inputs.forEach(function (input) {
      var text = input.value.trim();
      if (text === "") { return; }
      var value = Number(text);
      body[input.name] = Number.isFinite(value) ? value : text;
    });
    return body;
  }

  function showError(error) {
    var placed = false;
    (error.details || []).forEach(function (detail) {
      var loc = detail.loc || [];
      var input = inputs.find(function (i) { return loc.indexOf(i.name) !== -1; });
      if (!input) { return; }
      var span = form.querySelector('.field-error[data-for="' + CSS.escape(input.name) + '"]');
      span.textContent = span.textContent ? span.textContent + "; " + detail.message : detail.message;
      input.setAttribute("aria-invalid", "true");
      placed = true;
    });
    if (!placed || !(error.details || []).length) {
      general.textContent = error.message || "the service answered with an error";
    }
  }

  function showAnswer(answer) {
    show("result-label", answer.label);
    show("result-confidence", (answer.confidence * 100).toFixed(2) + " %");
    show("result-version", answer.model_version);
    show("result-in-range", answer.in_training_range ? "yes" : "no (an extrapolation)");
    show("result-novel", answer.novel ? "yes (unlike the training readings)" : "no");
    var rows = document.querySelector("#result-probabilities tbody");
    rows.textContent = "";
    Object.keys(answer.probabilities).forEach(function (label) {
      var row = rows.insertRow();
      var name = document.createElement("th");
      name.scope = "row";
      name.textContent = label;
      row.appendChild(name);
      row.insertCell().textContent = (answer.probabilities[label] * 100).toFixed(2) + " %";
    });
    result.hidden = false;
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    clearErrors();
    result.hidden = true;
    button.disabled = true;
    fetch("/classify", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(reading())
    }).then(function (response) {
      return response.json().then(function (body) {
        if (response.ok) { showAnswer(body); } else { showError(body.error || {}); }
      });
    }).catch(function (failure) {
      general.textContent = "no answer from the service: " + failure;
    }).finally(function () { button.disabled = false; });
  });
  button.disabled = false;
}());
