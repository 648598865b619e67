/* The auto-training settings form: PUT /v1/auto-training with the form's values, through the same
   service as the API (every problem shown by its field); the page reloads with what was stored. */
"use strict";

(function () {
  const form = document.getElementById("auto-training-form");
  if (!form) return;
  const problems = document.getElementById("auto-training-problems");

  function show(list) {
    problems.replaceChildren(...list.map((p) => el("li", { text: `${p.field}: ${p.message}` })));
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    let template;
    try {
      template = JSON.parse(form.jobTemplate.value || "{}");
    } catch (err) {
      show([{ field: "jobTemplate", message: `not JSON: ${err.message}` }]);
      return;
    }
    const body = {
      enabled: form.enabled.checked,
      threshold: Number(form.threshold.value),
      cooldownHours: Number(form.cooldownHours.value),
      activateIfBetter: form.activateIfBetter.checked,
      jobTemplate: template,
    };
    try {
      await api("PUT", "/v1/auto-training", { json: body });
      show([]);
      toast("Auto-training saved.");
      location.reload();
    } catch (err) {
      show(err.problems && err.problems.length ? err.problems : [{ field: "(form)", message: err.message }]);
      toast(err.message, true);
    }
  });
})();
