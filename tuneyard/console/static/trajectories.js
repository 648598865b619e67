/* Trajectories page: count what a build would take (a dry run), then build the dataset and go to it.
   The build takes the page's task and source filters and completed trajectories only. */
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const box = document.getElementById("dataset-build");
  if (!box) return;
  const status = box.querySelector("[data-build-status]");
  const filters = (dryRun) => {
    const params = new URLSearchParams(location.search);
    const body = { minLlmCallsPerTrajectory: Number(document.getElementById("build-min-calls").value || 1) };
    for (const key of ["task", "source"]) if (params.get(key)) body[key] = params.get(key);
    const name = document.getElementById("build-name").value.trim();
    if (name && !dryRun) body.name = name;
    if (dryRun) body.dryRun = true;
    return body;
  };
  const run = async (dryRun) => {
    try {
      const built = await api("POST", "/v1/dataset-builds", { json: filters(dryRun) });
      status.textContent = `${built.trajectoryCount} trajectories, ${built.exampleCount} examples`;
      if (!dryRun) location.assign(`/datasets/${built.id}`);
    } catch (error) {
      status.textContent = `Build failed: ${error.message}`;
      toast(`Build failed: ${error.message}`, true);
    }
  };
  box.querySelector("[data-build-preview]").addEventListener("click", () => run(true));
  box.querySelector("[data-build]").addEventListener("click", () => run(false));
});
