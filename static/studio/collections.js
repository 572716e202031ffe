// A collection's page: drag an item to reorder (HTML5 drag and drop, the whole new order is posted),
// or use the ↑ ↓ and Remove buttons, which are ordinary forms: without JavaScript they post and the
// page reloads; with it they are sent in the background, the list is swapped in place, and focus
// stays on the same button of the moved item so keyboard users can keep pressing it. A status line
// (aria-live) says what happened.
(function () {
  "use strict";

  const LIST_ID = "collection-items";

  function csrfToken() {
    const input = document.querySelector("input[name=csrfmiddlewaretoken]");
    return input ? input.value : "";
  }

  function announce(text) {
    const status = document.getElementById("collection-status");
    if (status) status.textContent = text || "";
  }

  // Post a form body, then put the returned item list in place of the old one.
  async function send(url, body, focusAfter) {
    const container = document.getElementById(LIST_ID);
    let response;
    try {
      response = await fetch(url, {
        method: "POST",
        body,
        credentials: "same-origin",
        headers: { "X-CSRFToken": csrfToken(), "X-Requested-With": "fetch" },
      });
    } catch (error) {
      announce("Could not save: the connection failed. Reloading.");
      window.location.reload();
      return;
    }
    if (!response.ok && response.status !== 409 && response.status !== 400 && response.status !== 404) {
      announce("Could not save. Reloading.");
      window.location.reload();
      return;
    }
    const html = await response.text();
    const template = document.createElement("template");
    template.innerHTML = html.trim();
    const fresh = template.content.getElementById(LIST_ID);
    if (!fresh || !container) {
      window.location.reload();
      return;
    }
    container.replaceWith(fresh);
    setup(fresh);
    announce(fresh.dataset.note);
    if (focusAfter) focusAfter(fresh);
  }

  function order(list) {
    return Array.from(list.querySelectorAll(".collection-item")).map((li) => li.dataset.asset);
  }

  function setupButtons(container) {
    container.querySelectorAll("form[data-move]").forEach((form) => {
      form.addEventListener("submit", (event) => {
        event.preventDefault();
        const kind = form.dataset.move;
        const asset = form.querySelector("input[name=asset]").value;
        send(form.action, new FormData(form), (fresh) => {
          const item = fresh.querySelector(`.collection-item[data-asset="${asset}"]`);
          let target = item && item.querySelector(`form[data-move="${kind}"] button:not([disabled])`);
          // At the top or bottom the pressed button is disabled: focus the other direction instead.
          if (!target && item) target = item.querySelector("form[data-move] button:not([disabled])");
          if (!target) target = fresh.querySelector("form[data-move] button:not([disabled])");
          if (target) target.focus();
        });
      });
    });
  }

  function setupDrag(container) {
    const list = container.querySelector(".collection-items");
    if (!list) return;
    let dragged = null;

    const clearMarks = () => list.querySelectorAll(".drop-before, .drop-after")
      .forEach((el) => el.classList.remove("drop-before", "drop-after"));

    // In a grid, "before" is the left half of the item under the pointer.
    const before = (item, event) => {
      const rect = item.getBoundingClientRect();
      return event.clientX < rect.left + rect.width / 2;
    };

    list.addEventListener("dragstart", (event) => {
      dragged = event.target.closest(".collection-item");
      if (!dragged) return;
      dragged.classList.add("is-dragging");
      event.dataTransfer.effectAllowed = "move";
      event.dataTransfer.setData("text/plain", dragged.dataset.asset);
    });

    list.addEventListener("dragover", (event) => {
      const item = event.target.closest(".collection-item");
      if (!dragged || !item || item === dragged) return;
      event.preventDefault();
      event.dataTransfer.dropEffect = "move";
      clearMarks();
      item.classList.add(before(item, event) ? "drop-before" : "drop-after");
    });

    list.addEventListener("dragleave", (event) => {
      if (!list.contains(event.relatedTarget)) clearMarks();
    });

    list.addEventListener("drop", (event) => {
      const item = event.target.closest(".collection-item");
      if (!dragged || !item || item === dragged) return;
      event.preventDefault();
      const was = order(list).join(",");
      item.insertAdjacentElement(before(item, event) ? "beforebegin" : "afterend", dragged);
      clearMarks();
      const now = order(list);
      if (now.join(",") === was) return;
      const body = new FormData();
      now.forEach((id) => body.append("assets", id));
      const moved = dragged.dataset.asset;
      send(container.dataset.reorderUrl, body, (fresh) => {
        const li = fresh.querySelector(`.collection-item[data-asset="${moved}"] a`);
        if (li) li.focus();
      });
    });

    list.addEventListener("dragend", () => {
      if (dragged) dragged.classList.remove("is-dragging");
      dragged = null;
      clearMarks();
    });
  }

  function setup(container) {
    setupButtons(container);
    setupDrag(container);
  }

  document.addEventListener("DOMContentLoaded", () => {
    const container = document.getElementById(LIST_ID);
    if (container) setup(container);
  });
})();
