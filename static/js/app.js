// kmeweb: the little JavaScript the console needs; htmx and Bootstrap do the rest.
// Loaded without defer in <head>: it sets the colour mode before the first paint and
// otherwise only listens on the document, so it needs neither the DOM nor its libraries yet.
"use strict";

// Light or dark, as the system says, and again whenever the system changes its mind.
(() => {
  const dark = window.matchMedia("(prefers-color-scheme: dark)");
  const apply = () =>
    document.documentElement.setAttribute("data-bs-theme", dark.matches ? "dark" : "light");
  apply();
  dark.addEventListener("change", apply);
})();

// Bootstrap ignores hide() while a dialog is still opening (its fade and slide), which a quick
// admin or a slow machine can outrun: closeDialog closes it then as soon as it has opened.
const openingDialogs = new WeakSet();
document.addEventListener("show.bs.modal", (event) => openingDialogs.add(event.target));
document.addEventListener("shown.bs.modal", (event) => openingDialogs.delete(event.target));

function closeDialog(dialog) {
  const modal = window.bootstrap.Modal.getOrCreateInstance(dialog);
  if (openingDialogs.has(dialog)) {
    dialog.addEventListener("shown.bs.modal", () => modal.hide(), { once: true });
  } else {
    modal.hide();
  }
}

// Confirmation dialog: a form or button with data-confirm="message" opens #confirm-dialog
// (templates/_macros/dialogs.html) and goes on only after its confirm button.
// Optional: data-confirm-title, data-confirm-button (the button's label) and
// data-confirm-variant="primary" for an action that destroys nothing (red otherwise).
(() => {
  let proceed = null; // what the confirm button does for the dialog now open
  let opener = null; // where focus goes back when the dialog closes

  function ask(source, onConfirm) {
    const dialog = document.getElementById("confirm-dialog");
    const accept = dialog.querySelector("[data-confirm-accept]");
    dialog.querySelector("[data-confirm-title]").textContent =
      source.dataset.confirmTitle || "Please confirm";
    dialog.querySelector("[data-confirm-message]").textContent = source.dataset.confirm;
    accept.textContent = source.dataset.confirmButton || "Confirm";
    const variant = source.dataset.confirmVariant === "primary" ? "primary" : "danger";
    accept.className = `btn btn-${variant}`;
    proceed = onConfirm;
    opener = document.activeElement;
    window.bootstrap.Modal.getOrCreateInstance(dialog).show();
  }

  document.addEventListener("click", (event) => {
    const accept = event.target.closest("#confirm-dialog [data-confirm-accept]");
    if (!accept) return;
    const go = proceed;
    proceed = opener = null; // the action goes on: focus follows it, not the opener
    closeDialog(document.getElementById("confirm-dialog"));
    if (go) go();
  });

  document.addEventListener("shown.bs.modal", (event) => {
    if (event.target.id === "confirm-dialog") {
      event.target.querySelector("[data-confirm-cancel]").focus(); // the safe choice first
    }
  });

  document.addEventListener("hidden.bs.modal", (event) => {
    if (event.target.id !== "confirm-dialog") return;
    if (opener && opener.isConnected) opener.focus();
    proceed = opener = null;
  });

  // htmx requests: htmx asks every element before it sends; we answer for data-confirm ones.
  document.addEventListener("htmx:confirm", (event) => {
    const source = event.detail.elt.closest("[data-confirm]");
    if (!source) return;
    event.preventDefault();
    ask(source, () => event.detail.issueRequest(true));
  });

  // Plain forms (htmx forms are asked through htmx:confirm above).
  const htmxVerbs = "[hx-get],[hx-post],[hx-put],[hx-patch],[hx-delete]";
  document.addEventListener("submit", (event) => {
    const form = event.target;
    if (form.matches(htmxVerbs) || form.closest('[hx-boost="true"]')) return;
    const submitter = event.submitter;
    const source = (submitter && submitter.closest("[data-confirm]")) || form.closest("[data-confirm]");
    if (!source || form.dataset.confirmed === "yes") return;
    event.preventDefault();
    ask(source, () => {
      form.dataset.confirmed = "yes";
      try {
        form.requestSubmit(submitter || undefined);
      } finally {
        delete form.dataset.confirmed;
      }
    });
  });
})();

// Error answers to htmx requests carry an out-of-band flash message and HX-Reswap: none.
// htmx does not swap 4xx/5xx answers by default; let it process these, so the message
// reaches the flash area while the request's target stays as it was.
document.addEventListener("htmx:beforeSwap", (event) => {
  const xhr = event.detail.xhr;
  if (xhr.status >= 400 && xhr.getResponseHeader("HX-Reswap") === "none") {
    event.detail.shouldSwap = true;
  }
});

// Answers that carry no message of ours (a proxy's error page, the network down) still
// tell the admin something went wrong.
function showError(message) {
  const area = document.getElementById("flash-area");
  if (!area) return;
  const item = document.createElement("div");
  item.className = "alert alert-danger";
  item.setAttribute("role", "alert");
  item.textContent = message;
  area.replaceChildren(item);
}

document.addEventListener("htmx:responseError", (event) => {
  const xhr = event.detail.xhr;
  if (xhr.getResponseHeader("HX-Reswap") !== "none") {
    showError(`The server answered ${xhr.status}; reload the page and try again.`);
  }
});

document.addEventListener("htmx:sendError", () => {
  showError("The server could not be reached; check the connection and try again.");
});

// A dialog whose content asks for it (data-reload-on-close) reloads the page when it closes,
// however it is closed, so the table behind it shows what the dialog's action changed.
document.addEventListener("hidden.bs.modal", (event) => {
  if (event.target.querySelector("[data-reload-on-close]")) window.location.reload();
});

// Form dialogs (templates/_macros/dialogs.html form_dialog): htmx loads a dialog partial into
// #form-dialog-content; open the modal then, and focus its first invalid field, else the one
// marked autofocus, else its first field.
document.addEventListener("htmx:afterSwap", (event) => {
  if (event.detail.target.id !== "form-dialog-content") return;
  const dialog = document.getElementById("form-dialog");
  const modal = window.bootstrap.Modal.getOrCreateInstance(dialog);
  // An answer that closed the dialog (kme:dialog-done, below) swaps its "Done" text in too.
  if ("done" in dialog.dataset) return;
  if (!dialog.classList.contains("show")) modal.show();
  const first =
    dialog.querySelector(".is-invalid") ||
    dialog.querySelector("[autofocus]") ||
    dialog.querySelector(
      ".modal-body input:not([type=hidden]), .modal-body select, .modal-body textarea"
    );
  // Focus is placed here, once. htmx would also focus an [autofocus] field when the swap
  // settles (20 ms later): after a refusal, that took focus from the field the admin had
  // moved to, and what they typed next went into the autofocus field (a name typed after a
  // refused email went into Email). The attribute is for the page without JavaScript.
  for (const auto of dialog.querySelectorAll("[autofocus]")) auto.removeAttribute("autofocus");
  if (first) {
    if (dialog.classList.contains("show")) first.focus();
    else dialog.addEventListener("shown.bs.modal", () => first.focus(), { once: true });
  }
});

// A closed form dialog is empty, and no longer done (kme:dialog-done, below).
document.addEventListener("hidden.bs.modal", (event) => {
  if (event.target.id === "form-dialog") {
    event.target.querySelector("#form-dialog-content").replaceChildren();
    delete event.target.dataset.done;
  }
});

// Device tables: "Select this page" ticks every row; ticking a row again ends "all matching".
document.addEventListener("change", (event) => {
  const box = event.target;
  const form = box.form;
  if (!form) return;
  if (box.matches("[data-select-page]")) {
    form.querySelectorAll('input[name="device_ids"]').forEach((row) => {
      row.checked = box.checked;
    });
  } else if (box.matches('input[name="device_ids"]') && !box.checked) {
    const page = form.querySelector("[data-select-page]");
    if (page) page.checked = false;
  } else if (box.matches("[data-all-matching]") && box.checked) {
    form.querySelectorAll('input[name="device_ids"], [data-select-page]').forEach((row) => {
      row.checked = true;
    });
  }
});

// A page shown again from the back-forward cache keeps the ticks it had, on devices an action
// may have moved or deleted since: a selection form (data-fresh-selection) starts empty.
window.addEventListener("pageshow", (event) => {
  if (!event.persisted) return;
  document.querySelectorAll("form[data-fresh-selection]").forEach((form) => form.reset());
});

// A submit button with data-requires="<field id>" is enabled only while that field has a
// value (Move Devices: nothing is chosen for the admin); the server refuses it empty anyway.
document.addEventListener("change", (event) => {
  const field = event.target;
  if (!field.id || !field.form) return;
  field.form.querySelectorAll(`[data-requires="${CSS.escape(field.id)}"]`).forEach((button) => {
    button.disabled = !field.value;
  });
});

// A checkbox with data-disables="<field id>" (Never expires) disables that field of its form
// while ticked: a number of days would do nothing then.
(() => {
  const apply = (box) => {
    const field = box.form && box.form.querySelector(`#${CSS.escape(box.dataset.disables)}`);
    if (field) field.disabled = box.checked;
  };
  document.addEventListener("change", (event) => {
    if (event.target.matches("[data-disables]")) apply(event.target);
  });
  document.addEventListener("htmx:load", (event) => {
    event.target.querySelectorAll("[data-disables]").forEach(apply);
  });
})();

// A form dialog whose work is done in place (the answer changed the page behind it out of
// band) closes on the kme:dialog-done event its answer triggers; the "Done" text the answer
// swaps into it must not open it again (htmx:afterSwap above).
document.addEventListener("kme:dialog-done", () => {
  const dialog = document.getElementById("form-dialog");
  if (!dialog || !(openingDialogs.has(dialog) || dialog.classList.contains("show"))) return;
  dialog.dataset.done = "";
  closeDialog(dialog);
});

// Copy buttons: data-copy-target="#id" copies that element's text.
document.addEventListener("click", (event) => {
  const button = event.target.closest("[data-copy-target]");
  if (!button) return;
  const source = document.querySelector(button.dataset.copyTarget);
  if (!source || !navigator.clipboard) return;
  navigator.clipboard.writeText(source.textContent.trim()).then(() => {
    button.setAttribute("aria-label", "Copied");
    button.classList.add("btn-success");
    setTimeout(() => button.classList.remove("btn-success"), 1500);
  });
});

// Editable rows (custom keys, attributes): data-add-row="#tbody" data-row-template="#template"
// appends a copy of the template with __INDEX__ numbered; data-remove-row removes its row.
// Both tell listeners (the live preview) with a kme:rows-changed event.
document.addEventListener("click", (event) => {
  const add = event.target.closest("[data-add-row]");
  const remove = event.target.closest("[data-remove-row]");
  if (add) {
    const body = document.querySelector(add.dataset.addRow);
    const template = document.querySelector(add.dataset.rowTemplate);
    if (!body || !template) return;
    const used = [...body.querySelectorAll("[name]")].map((el) => {
      const match = /-(\d+)-/.exec(el.name);
      return match ? Number(match[1]) : -1;
    });
    const next = String(Math.max(-1, ...used) + 1);
    const html = template.innerHTML.replaceAll("__INDEX__", next);
    body.insertAdjacentHTML("beforeend", html);
    const field = body.lastElementChild && body.lastElementChild.querySelector("input, select");
    if (field) field.focus();
    document.body.dispatchEvent(new Event("kme:rows-changed"));
  } else if (remove) {
    const row = remove.closest("[data-row]");
    if (row) row.remove();
    document.body.dispatchEvent(new Event("kme:rows-changed"));
  }
});

// A search box inside a bigger form (Select User) searches as you type; Enter must not
// submit the form around it.
document.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && event.target.matches("[data-no-enter]")) event.preventDefault();
});

// A list box refreshed by a search as you type (the Select User picker) keeps the option the
// admin chose while the search was on its way, when the new options still hold it: the answer
// marks the choice of the moment the request left, which may no longer be the admin's.
(() => {
  const kept = new WeakMap();
  document.addEventListener("htmx:beforeSwap", (event) => {
    const target = event.detail.target;
    if (target instanceof HTMLSelectElement) kept.set(target, target.value);
  });
  document.addEventListener("htmx:afterSwap", (event) => {
    const target = event.detail.target;
    if (!(target instanceof HTMLSelectElement) || !kept.has(target)) return;
    const value = kept.get(target);
    kept.delete(target);
    if ([...target.options].some((option) => option.value === value)) target.value = value;
  });
})();

// A checkbox with data-hides="#id" hides that element while it is ticked (a <fieldset> is
// disabled too, so what it holds is neither reachable nor sent); data-shows="#id" shows one
// only then (a note saying what happens instead). The server renders the same state, so this
// only follows the ticks, and a state the browser restores on Back.
(() => {
  const follow = (box) => {
    const apply = (selector, hide) => {
      if (!selector) return;
      document.querySelectorAll(selector).forEach((el) => {
        el.hidden = hide;
        if (el instanceof HTMLFieldSetElement) el.disabled = hide;
      });
    };
    apply(box.dataset.hides, box.checked);
    apply(box.dataset.shows, !box.checked);
  };
  const followAll = (root) => root.querySelectorAll("[data-hides], [data-shows]").forEach(follow);
  document.addEventListener("change", (event) => {
    if (event.target.matches("[data-hides], [data-shows]")) follow(event.target);
  });
  document.addEventListener("DOMContentLoaded", () => followAll(document));
  window.addEventListener("pageshow", () => followAll(document));
  document.addEventListener("htmx:afterSwap", (event) => followAll(event.detail.target));
})();

// Form dialogs give focus back to the control that opened them when they close (Escape,
// Close, Cancel): Bootstrap does so only for its own data-bs-toggle triggers, and these
// open from htmx. Requests from inside the open dialog do not count as its opener.
(() => {
  let opener = null;
  document.addEventListener("htmx:beforeRequest", (event) => {
    const target = event.detail.target;
    const dialog = document.getElementById("form-dialog");
    if (!target || target.id !== "form-dialog-content" || !dialog) return;
    if (!dialog.classList.contains("show")) opener = event.detail.elt;
  });
  document.addEventListener("hidden.bs.modal", (event) => {
    if (event.target.id !== "form-dialog" || !opener) return;
    const back = opener;
    opener = null;
    if (back.isConnected) back.focus();
  });
})();

// A table's scroll box (.table-responsive role=region) is a tab stop only while it scrolls
// sideways, so that a keyboard can scroll it (at phone width); a table that fits would be
// a stop that does nothing. The server renders tabindex="0" for a browser without scripts.
(() => {
  const boxes = () => document.querySelectorAll(".table-responsive[role=region]");
  const update = (box) => {
    if (box.scrollWidth > box.clientWidth + 1) box.setAttribute("tabindex", "0");
    else if (document.activeElement !== box) box.removeAttribute("tabindex");
  };
  const watcher = "ResizeObserver" in window
    ? new ResizeObserver((entries) => entries.forEach((entry) => update(entry.target)))
    : null;
  const watch = () => boxes().forEach((box) => {
    update(box);
    if (watcher) watcher.observe(box);
  });
  document.addEventListener("DOMContentLoaded", watch);
  document.addEventListener("htmx:afterSettle", watch);
})();

// Operations: a self-polling status (templates/operations/_status.html, data-op-status) that
// appears or changes state announces kme:operation-changed on <body>, so the parts of the page
// behind that show what the operation changes reload themselves (hx-trigger="kme:operation-
// changed from:body"): the Uploads table while Approve All Devices runs, the Integration
// status after Sync now. Statuses on the page as it loads are known already.
(() => {
  const seen = new Map();
  const scan = (announce) => {
    let changed = false;
    document.querySelectorAll(".op-status[data-op-status]").forEach((el) => {
      const status = el.dataset.opStatus;
      if (seen.get(el.id) !== status) changed = true;
      seen.set(el.id, status);
    });
    if (changed && announce) document.body.dispatchEvent(new Event("kme:operation-changed"));
  };
  document.addEventListener("DOMContentLoaded", () => scan(false));
  document.addEventListener("htmx:afterSettle", () => scan(true));
})();
