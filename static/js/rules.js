// Admin › Routing rules: drag a rule by its handle to reorder the list (the Up and Down
// buttons do the same without JavaScript), and the rule editor's CSV file, added to the list
// of identifiers as soon as it is chosen. Loaded (deferred) by templates/rules/*.html only.
"use strict";

// Dragging: the order the page showed (expected_order) and the new one are posted through
// #reorder-form (htmx, with the CSRF token as every htmx request); the answer is the list in
// its new order, or the list as it is now with the reason (409: someone reordered meanwhile).
// The list moves under the pointer before anything is saved, so from the drop until the answer
// comes the page says it is saving (and the list is aria-busy): only the answer says "saved".
// No new drag starts meanwhile, and an answer that swaps nothing (a 400 or 500, the network
// down) puts the rules back in the order the server still has.
(() => {
  document.documentElement.classList.add("kme-can-drag");
  let dragged = null;
  let before = null; // the rules as the page showed them when the drag started
  let saving = null; // the form whose request is on its way

  const list = () => document.getElementById("rule-list");
  const movable = (el) => el && el.closest("#rule-list > li[data-movable]");
  const flashArea = () => document.getElementById("flash-area");
  // The numbers follow the rules as they move (the answer brings the server's anyway).
  const renumber = (rules) => {
    [...rules.children].forEach((li, i) => {
      const number = li.querySelector(".kme-rule-number");
      if (number) number.textContent = `${i + 1}.`;
    });
  };

  document.addEventListener("pointerdown", (event) => {
    // Only the handle starts a drag, so text in a rule can still be selected.
    const item = movable(event.target);
    if (item) item.draggable = Boolean(event.target.closest(".kme-drag-handle"));
  });

  document.addEventListener("dragstart", (event) => {
    const item = movable(event.target);
    if (!item) return;
    if (saving) {
      event.preventDefault(); // the last order is still being saved
      return;
    }
    dragged = item;
    before = [...item.parentNode.children];
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
    renumber(over.parentNode);
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
    const rules = list();
    if (!form || !rules) return;
    const order = [...rules.querySelectorAll(":scope > li[data-movable]")]
      .map((li) => li.dataset.ruleId)
      .join(",");
    const field = form.querySelector('input[name="order"]');
    if (order === field.value) return; // dropped where it was
    field.value = order;
    saving = form;
    rules.setAttribute("aria-busy", "true");
    // In place of a message about an earlier change (Up, Down, the last drag), which no longer
    // says how things are: replaced after the drop, so nothing above the list moves during it.
    const area = flashArea();
    if (area) {
      const note = document.createElement("div");
      note.className = "alert alert-info";
      note.id = "reorder-saving";
      note.setAttribute("role", "status");
      note.textContent = "Saving the new order of the rules…";
      area.replaceChildren(note);
    }
    form.requestSubmit();
  });

  // The answer came (or the request failed). A swapped answer has replaced the list, the form
  // and the message; otherwise the list still shows an order the server does not have.
  document.addEventListener("htmx:afterRequest", (event) => {
    const config = event.detail.requestConfig;
    if (!saving || !config || config.elt !== saving) return;
    saving = null;
    const rules = list();
    if (rules && rules.getAttribute("aria-busy") === "true") {
      rules.removeAttribute("aria-busy");
      if (before) rules.replaceChildren(...before);
      renumber(rules);
      const field = document.querySelector('#reorder-form input[name="order"]');
      const expected = document.querySelector('#reorder-form input[name="expected_order"]');
      if (field && expected) field.value = expected.value;
    }
    before = null;
    const note = document.getElementById("reorder-saving");
    if (note) note.remove();
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
