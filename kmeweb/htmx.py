"""The only module that reads or writes HX-* headers."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import Response, make_response, render_template, request

from kmeweb.extensions import htmx


def is_htmx() -> bool:
    """True for a request made by htmx that wants a fragment.

    A boosted link or form and a history restore want the whole page, like a plain request.
    """
    return bool(htmx) and not htmx.boosted and not htmx.history_restore_request


def sign_in_again(login_url: str) -> Response:
    """401 for htmx without a session: HX-Redirect sends the whole page to sign-in."""
    response = make_response("", 401)
    response.headers["HX-Redirect"] = login_url
    return response


def current_page_path() -> str | None:
    """The path (and query) of the page that made this htmx request, from HX-Current-URL."""
    url = htmx.current_url if htmx else None
    if not url:
        return None
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def render(page: str, partial: str, code: int = 200, **context) -> Response:
    """Render the partial alone for htmx, the whole page otherwise; vary on HX-Request."""
    template = partial if is_htmx() else page
    response = make_response(render_template(template, **context), code)
    response.headers["Vary"] = "HX-Request"
    return response


def flash_fragment(message: str, category: str = "info") -> str:
    """An out-of-band flash message that htmx swaps into the page's flash area."""
    return render_template("_partials/_flash_oob.html", message=message, category=category)


def redirect(location: str) -> Response:
    """303 for a plain form post; for htmx, HX-Redirect (a full navigation, so the flash
    message and the whole next page arrive together)."""
    if is_htmx():
        response = make_response("", 204)
        response.headers["HX-Redirect"] = location
        return response
    response = make_response("", 303)
    response.headers["Location"] = location
    return response


def refresh() -> Response:
    response = make_response("", 204)
    response.headers["HX-Refresh"] = "true"
    return response


def trigger(response: Response, event: str) -> Response:
    response.headers["HX-Trigger"] = event
    return response


def request_target() -> str | None:
    return request.headers.get("HX-Target")


def retarget(response: Response, selector: str, swap: str = "outerHTML") -> Response:
    """Swap this htmx answer into `selector` instead of the requesting element's target."""
    if is_htmx():
        response.headers["HX-Retarget"] = selector
        response.headers["HX-Reswap"] = swap
    return response


def with_flash(response: Response, message: str, category: str = "info") -> Response:
    """Add an out-of-band flash message to an htmx fragment answer."""
    response.set_data(response.get_data(as_text=True) + flash_fragment(message, category))
    return response
