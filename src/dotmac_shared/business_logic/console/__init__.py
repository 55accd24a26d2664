"""The operator console: server-rendered pages under ``/console`` of the API app.

Sign in with an API key (``dotmac-bl apikey create``): a ``platform`` key sees every tenant,
any other key its own tenant only. Pages: the sagas (filters, paging), a saga (steps, event
history, repair actions behind a confirmation), billing runs (live progress, report) and
policies (versions, diff, evaluation). Every form carries a CSRF token. Jinja2 templates and
one small script, shipped in the package: no CDN.

``create_app`` mounts it; :func:`create_console` builds it on an app's services for a
custom mount.

Example:
    >>> from dotmac_shared.business_logic.http import create_app
    >>> app = create_app(factory, console_secret=secret)  # doctest: +SKIP
    >>> # uvicorn.run(app), then open http://127.0.0.1:8000/console
"""

from dotmac_shared.business_logic.console._app import COOKIE_NAME, create_console
from dotmac_shared.business_logic.console._auth import ConsoleUser
from dotmac_shared.business_logic.console._session import ConsoleSession, SessionCodec

__all__ = ["COOKIE_NAME", "ConsoleSession", "ConsoleUser", "SessionCodec", "create_console"]
