"""An embedded MQTT 3.1.1 broker (amqtt) for the zero-set-up path: ``officesensor demo`` and
``officesensor broker``. For an office or the cloud use Mosquitto or AWS IoT Core instead.

amqtt runs on its own asyncio loop in a background thread, so the rest of the program stays
synchronous. Port 0 picks a free port, so the demo never collides with a broker on 1883.
"""

from __future__ import annotations

import asyncio
import logging
import threading

from officesensor.errors import BrokerError

log = logging.getLogger(__name__)


class EmbeddedBroker:
    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._stop: asyncio.Event | None = None

    def start(self, timeout_s: float = 10.0) -> None:
        """Start listening; returns once the port is open (``self.port`` is then the real one)."""
        for name in ("amqtt", "transitions"):  # they log every connection at INFO
            logging.getLogger(name).setLevel(logging.WARNING)
        self._thread = threading.Thread(target=self._run, name="embedded-broker", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise BrokerError(f"embedded broker did not start within {timeout_s:.0f} s")
        if self._error is not None:
            raise BrokerError(
                f"embedded broker failed to start on {self.host}:{self.port}: {self._error}"
            ) from self._error
        log.info("embedded MQTT broker listening on %s:%d", self.host, self.port)

    def stop(self, timeout_s: float = 10.0) -> None:
        if self._loop is not None and self._stop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(timeout_s)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported to start(); the thread just ends
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        from amqtt.broker import Broker

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            "plugins": {
                "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True},
            },
        }
        broker = Broker(config)
        await broker.start()
        server = broker._servers["default"].instance
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await broker.shutdown()
