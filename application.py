"""Elastic Beanstalk's entry point, at the repository root as in the original sample.

``application`` is the WSGI app: the dashboard (pages, JSON API, /healthz, /readyz,
/metrics) over the store that the ``OFFICESENSOR_*`` variables name, for any WSGI server
(``gunicorn application:application``, which Elastic Beanstalk runs when there is no
Procfile). It does not ingest, and it has no live stream: those need one long-lived process.

It refuses to load unless viewers must sign in (``auth.token`` or ``auth.users_file``) or
``auth.behind_proxy`` says an authenticating proxy guards it, whatever ``http`` says: the WSGI
server binds the socket, so the app cannot see its address, and this module exists for
Elastic Beanstalk, whose nginx serves it to the internet (exposure.require_viewer_auth).

The Procfile therefore runs ``officesensor serve`` instead: ingest (one MQTT session per
instance, under its own ``mqtt.client_id``) and the same Flask app inside the ASGI app of
``officesensor.web.asgi`` (Server-Sent Events on an event loop), served by uvicorn. Use that
on Elastic Beanstalk; docs/deploy-aws.md explains why and how.
"""

from __future__ import annotations

from collections.abc import Mapping

from flask import Flask

from officesensor.config import load_settings
from officesensor.exposure import require_viewer_auth
from officesensor.store import open_store
from officesensor.web import create_app


def create_application(environ: Mapping[str, str] | None = None) -> Flask:
    """The dashboard configured from ``environ`` (default: the process environment)."""
    settings = load_settings(environ=environ)
    require_viewer_auth(
        settings,
        "application.py",
        "the WSGI app is served to the internet (Elastic Beanstalk's nginx)",
    )
    return create_app(settings, open_store(settings.store, settings.tz))


# A WSGI server imports this module to serve exactly this object.
application = create_application()
