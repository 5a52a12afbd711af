// kmeweb: the little JavaScript the console needs; htmx does the rest.
// Plain (non-htmx) forms with data-confirm ask before they submit.
document.addEventListener("submit", (event) => {
  const form = event.target;
  const message = form.getAttribute && form.getAttribute("data-confirm");
  if (message && !form.hasAttribute("hx-confirm") && !window.confirm(message)) {
    event.preventDefault();
  }
});

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
  item.className = "flash flash-error";
  item.setAttribute("role", "status");
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
