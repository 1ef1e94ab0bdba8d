"""Pages rendered on the server: the Jinja2 environment with kiban's filters, and ``render()`` for every route.

Apart from ``kiban.web.app`` so the page modules can render without importing the application that includes them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import Request
from fastapi.templating import Jinja2Templates
from jinja2 import pass_context
from markupsafe import Markup
from starlette.responses import Response

from kiban import __version__, messages
from kiban.web import i18n
from kiban.web.views import Site

HERE = Path(__file__).parent


def templates(site: Site) -> Jinja2Templates:
    found = Jinja2Templates(directory=HERE / "templates")
    env = found.env
    env.auto_reload = False  # the templates ship in the package: no stat() of each file on every page

    @pass_context
    def local(context: Any, value: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
        """A time in the project's time zone (every page says which) in the reader's locale (Dec 7, 8:30 AM ·
        12月7日 8:30), with the UTC time on hover and the ISO time in ``datetime=`` for machines."""
        if value is None:
            return "–"
        aware = (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
        shown = i18n.when(aware, fmt, context.get("lang", "en"), ZoneInfo(site.project.config.timezone))
        return Markup('<time datetime="{}" title="{} UTC">{}</time>').format(
            aware.strftime("%Y-%m-%dT%H:%M:%SZ"), aware.strftime("%Y-%m-%d %H:%M:%S"), shown)

    @pass_context
    def local_text(context: Any, value: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
        """A time in the project's time zone as plain text (for a tooltip), zone named, with the UTC time."""
        if value is None:
            return "–"
        aware = (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
        zone = site.project.config.timezone
        shown = i18n.when(aware, fmt, context.get("lang", "en"), ZoneInfo(zone))
        return f"{shown} ({zone}; {aware:%Y-%m-%d %H:%M} UTC)"

    @pass_context
    def day(context: Any, value: Any, long: bool = True) -> str:
        """A calendar day in the reader's locale (Dec 7, 2026 · 2026年12月7日)."""
        return i18n.day(value, context.get("lang", "en"), long)

    def seconds(value: float | None) -> str:
        if value is None:
            return "–"
        if value < 60:
            return f"{value:.2f} s"
        minutes, secs = divmod(int(value), 60)
        return f"{minutes} min {secs:02d} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"

    @pass_context
    def number(context: Any, value: float | None) -> str:
        """Grouped for the reader's locale (1,528,380), at most three decimals."""
        return i18n.number(value, context.get("lang", "en"))

    def percent(value: float | None) -> str:
        return "–" if value is None else f"{value:.0%}"

    @pass_context
    def say(context: Any, parts: Any) -> str:
        """A sentence kiban stored as parts (kind + parameters, kiban.messages), in the reader's language."""
        return messages.say(parts, context.get("_", _english), context.get("lang", "en"), markup=Markup)

    env.filters.update(local=local, local_text=local_text, day=day, seconds=seconds, number=number, percent=percent,
                       say=say)
    env.globals["version"] = __version__
    env.globals["_"] = lambda text: text  # pages rendered outside render() (errors) stay in English
    return found


def render(request: Request, name: str, status_code: int = 200, **context: Any) -> Response:
    """A page, with the signed-in user and the CSRF token its forms send back."""
    site: Site = request.app.state.site
    lang = i18n.choose(request)  # English or Japanese: the reader's choice, else the browser's
    context.update(request=request, user=request.state.user, csrf=request.state.csrf, project=site.project.name,
                   timezone=site.project.config.timezone, lang=lang, _=i18n.gettext(lang))
    response: Response = request.app.state.templates.TemplateResponse(request, name, context, status_code=status_code)
    return response


def _english(text: str) -> str:
    return text
