"""Elastic Beanstalk's entry point, at the repository root as in the original sample.

``application`` is the WSGI app: the dashboard (pages, JSON API, /healthz, /readyz,
/metrics) over the store that the ``OFFICESENSOR_*`` variables name, for any WSGI server
(``gunicorn application:application``, which Elastic Beanstalk runs when there is no
Procfile). It does not ingest, and it has no live stream: those need one long-lived process.

The Procfile therefore runs ``officesensor serve`` instead: ingest (one MQTT session per
instance, under its own ``mqtt.client_id``) and the same Flask app inside the ASGI app of
``officesensor.web.asgi`` (Server-Sent Events on an event loop), served by uvicorn. Use that
on Elastic Beanstalk; docs/deploy-aws.md explains why and how.
"""

from __future__ import annotations

from collections.abc import Mapping

from flask import Flask

from officesensor.config import load_settings
from officesensor.store import open_store
from officesensor.web import create_app


def create_application(environ: Mapping[str, str] | None = None) -> Flask:
    """The dashboard configured from ``environ`` (default: the process environment)."""
    settings = load_settings(environ=environ)
    return create_app(settings, open_store(settings.store, settings.tz))


# A WSGI server imports this module to serve exactly this object.
application = create_application()
