// kmeweb: the little JavaScript the console needs; htmx does the rest.
// Plain (non-htmx) forms with data-confirm ask before they submit.
document.addEventListener("submit", (event) => {
  const form = event.target;
  const message = form.getAttribute && form.getAttribute("data-confirm");
  if (message && !form.hasAttribute("hx-confirm") && !window.confirm(message)) {
    event.preventDefault();
  }
});
