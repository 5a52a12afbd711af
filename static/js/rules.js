// Admin › Routing rules: drag a rule by its handle to reorder the list (the Up and Down
// buttons do the same without JavaScript), and the rule editor's CSV file, added to the list
// of identifiers as soon as it is chosen. Loaded (deferred) by templates/rules/*.html only.
"use strict";

// Dragging: the order the page showed (expected_order) and the new one are posted through
// #reorder-form (htmx, with the CSRF token as every htmx request); the answer is the list in
// its new order, or the list as it is now with the reason (409: someone reordered meanwhile).
(() => {
  document.documentElement.classList.add("kme-can-drag");
  let dragged = null;

  const list = () => document.getElementById("rule-list");
  const movable = (el) => el && el.closest("#rule-list > li[data-movable]");

  document.addEventListener("pointerdown", (event) => {
    // Only the handle starts a drag, so text in a rule can still be selected.
    const item = movable(event.target);
    if (item) item.draggable = Boolean(event.target.closest(".kme-drag-handle"));
  });

  document.addEventListener("dragstart", (event) => {
    const item = movable(event.target);
    if (!item) return;
    dragged = item;
    item.classList.add("kme-dragging");
    event.dataTransfer.effectAllowed = "move";
    event.dataTransfer.setData("text/plain", item.dataset.ruleId);
  });

  document.addEventListener("dragover", (event) => {
    if (!dragged) return;
    const over = movable(event.target);
    if (!over || over === dragged) {
      if (event.target.closest && event.target.closest("#rule-list")) event.preventDefault();
      return;
    }
    event.preventDefault();
    event.dataTransfer.dropEffect = "move";
    const box = over.getBoundingClientRect();
    const after = event.clientY > box.top + box.height / 2;
    over.parentNode.insertBefore(dragged, after ? over.nextSibling : over);
  });

  document.addEventListener("drop", (event) => {
    if (dragged && event.target.closest && event.target.closest("#rule-list")) {
      event.preventDefault();
    }
  });

  document.addEventListener("dragend", () => {
    if (!dragged) return;
    const item = dragged;
    dragged = null;
    item.classList.remove("kme-dragging");
    item.draggable = false;
    const form = document.getElementById("reorder-form");
    if (!form || !list()) return;
    const order = [...list().querySelectorAll(":scope > li[data-movable]")]
      .map((li) => li.dataset.ruleId)
      .join(",");
    const field = form.querySelector('input[name="order"]');
    if (order === field.value) return; // dropped where it was
    field.value = order;
    form.requestSubmit();
  });
})();

// The rule editor: a CSV file chosen is added to the identifiers at once, through the Preview
// button (the page comes back with the list filled in and counted).
document.addEventListener("change", (event) => {
  const input = event.target;
  if (!input.matches('#rule-form input[type="file"]') || !input.files.length) return;
  const preview = input.form.querySelector('[data-testid="preview-button"]');
  if (preview) input.form.requestSubmit(preview);
});
