/* Datasets page: drag-and-drop upload, then straight to the new dataset's page (verdict, errors,
   preview). A dataset page still validating reloads itself until it has a verdict. */
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  const zone = document.getElementById("dataset-upload");
  if (zone) {
    const status = zone.querySelector("[data-upload-status]");
    dropzone(zone, document.getElementById("upload-file"), async (file) => {
      try {
        const dataset = await uploadDataset(file, document.getElementById("upload-name").value.trim(),
          (text) => { status.textContent = text; });
        status.textContent = `${dataset.name}: ${dataset.status}`;
        location.assign(`/datasets/${dataset.id}`);
      } catch (error) {
        status.textContent = `Upload failed: ${error.message}`;
        toast(`Upload failed: ${error.message}`, true);
      }
    });
  }
  if (document.querySelector("[data-reload-while-validating]")) setTimeout(() => location.reload(), 1500);
});
