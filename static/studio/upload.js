// The uploader (templates/studio/_upload.html): drag and drop or choose files; each file goes on its own
// XMLHttpRequest (fetch has no upload progress) with a progress bar, and its outcome (or the server's
// reason for refusing it) is shown in its own row. When every file has finished, the asset grid is
// fetched again through htmx. Without this script the form posts normally.
(function () {
  "use strict";
  const PARALLEL = 2;

  function human(bytes) {
    if (bytes < 1024) return bytes + " B";
    const units = ["KB", "MB", "GB", "TB"];
    let value = bytes / 1024;
    let unit = 0;
    while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
    return value.toFixed(value >= 100 ? 0 : 1) + " " + units[unit];
  }

  function row(list, file) {
    const item = document.createElement("li");
    item.className = "upload-item";
    item.dataset.state = "waiting";
    const name = document.createElement("span");
    name.className = "upload-name";
    name.textContent = file.name;
    const size = document.createElement("span");
    size.className = "upload-size muted";
    size.textContent = human(file.size);
    const bar = document.createElement("progress");
    bar.max = 100;
    bar.value = 0;
    bar.setAttribute("aria-label", "Upload progress of " + file.name);
    const status = document.createElement("span");
    status.className = "upload-status";
    status.textContent = "Waiting…";
    item.append(name, size, bar, status);
    list.prepend(item);
    return { item, bar, status };
  }

  function errorMessage(xhr) {
    try {
      const body = JSON.parse(xhr.responseText);
      if (body && body.error && body.error.message) return body.error.message;
    } catch (e) { /* not JSON: a proxy's page, a server error */ }
    if (xhr.status === 413) return "The file is larger than the server accepts.";
    if (xhr.status === 0) return "The connection failed; check your network and try again.";
    return "The upload failed (HTTP " + xhr.status + ").";
  }

  function sendOne(form, file, ui, keepLocation) {
    return new Promise(function (resolve) {
      const data = new FormData();
      data.append("file", file, file.name);
      if (keepLocation) data.append("keep_location", "true");
      const xhr = new XMLHttpRequest();
      xhr.open("POST", form.action);
      xhr.setRequestHeader("Accept", "application/json");
      xhr.setRequestHeader("X-CSRFToken", form.querySelector("[name=csrfmiddlewaretoken]").value);
      ui.item.dataset.state = "sending";
      ui.status.textContent = "0%";
      xhr.upload.addEventListener("progress", function (event) {
        if (!event.lengthComputable) return;
        const percent = Math.floor((event.loaded / event.total) * 100);
        ui.bar.value = percent;
        ui.status.textContent = percent < 100 ? percent + "%" : "Checking…";
      });
      xhr.addEventListener("load", function () {
        if (xhr.status === 201) {
          const body = JSON.parse(xhr.responseText);
          ui.item.dataset.state = "done";
          ui.bar.value = 100;
          ui.status.textContent = "";
          const link = document.createElement("a");
          link.href = body.url;
          link.textContent = "Uploaded";
          ui.status.append(link);
          resolve(true);
        } else {
          ui.item.dataset.state = "failed";
          ui.status.textContent = errorMessage(xhr);
          ui.status.setAttribute("role", "alert");
          resolve(false);
        }
      });
      xhr.addEventListener("error", function () {
        ui.item.dataset.state = "failed";
        ui.status.textContent = errorMessage(xhr);
        resolve(false);
      });
      xhr.send(data);
    });
  }

  function init(root) {
    if (root.dataset.uploadReady) return;
    root.dataset.uploadReady = "1";
    const form = root.querySelector("form");
    const input = form.querySelector("input[type=file]");
    const zone = root.querySelector(".drop-zone");
    const list = root.querySelector(".upload-list");
    input.required = false;  // with the script, choosing files starts the upload; nothing to submit empty

    function refresh() {
      const url = root.dataset.refreshUrl;
      const target = document.querySelector(root.dataset.refreshTarget);
      if (url && target && window.htmx) {
        window.htmx.ajax("GET", url, { target: target, swap: "outerHTML" });
      }
    }

    function refuseFolder(name) {
      const ui = row(list, { name: name, size: 0 });
      ui.item.dataset.state = "failed";
      ui.bar.hidden = true;
      ui.status.textContent = "This is a folder; drop or choose the files inside it.";
      ui.status.setAttribute("role", "alert");
    }

    function upload(files) {
      if (!files.length) return;
      // Read once: the choice applies to every file of this batch, however many wait in the queue.
      const keepBox = form.querySelector("[name=keep_location]");
      const keep = Boolean(keepBox && keepBox.checked);
      const queue = files.map(function (file) { return { file: file, ui: row(list, file) }; });
      let uploaded = 0;
      function next() {
        const job = queue.shift();
        if (!job) return Promise.resolve();
        return sendOne(form, job.file, job.ui, keep).then(function (ok) {
          if (ok) uploaded += 1;
          return next();
        });
      }
      const workers = [];
      for (let i = 0; i < Math.min(PARALLEL, queue.length); i += 1) workers.push(next());
      Promise.all(workers).then(function () { if (uploaded) refresh(); });
    }

    // Only the file input is cleared after a batch: other choices (keep location) stay as the user set them.
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      upload(Array.from(input.files));
      input.value = "";
    });
    input.addEventListener("change", function () {
      upload(Array.from(input.files));
      input.value = "";
    });
    ["dragenter", "dragover"].forEach(function (name) {
      zone.addEventListener(name, function (event) {
        event.preventDefault();
        zone.classList.add("is-over");
      });
    });
    ["dragleave", "dragend"].forEach(function (name) {
      zone.addEventListener(name, function () { zone.classList.remove("is-over"); });
    });
    zone.addEventListener("drop", function (event) {
      event.preventDefault();
      zone.classList.remove("is-over");
      const transfer = event.dataTransfer;
      if (!transfer) return;
      // A dropped folder arrives as a File that cannot be read: say so instead of a failed upload.
      const items = Array.from(transfer.items || []).filter(function (item) { return item.kind === "file"; });
      const files = [];
      Array.from(transfer.files).forEach(function (file, i) {
        const entry = items[i] && items[i].webkitGetAsEntry ? items[i].webkitGetAsEntry() : null;
        if (entry && entry.isDirectory) refuseFolder(file.name);
        else files.push(file);
      });
      upload(files);
    });
  }

  function initAll(scope) {
    (scope || document).querySelectorAll("[data-upload]").forEach(init);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", function () { initAll(); });
  } else {
    initAll();
  }
  document.addEventListener("htmx:load", function (event) {
    if (event.detail && event.detail.elt && event.detail.elt.querySelectorAll) initAll(event.detail.elt);
  });
})();
