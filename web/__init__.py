"""The web page over the same queue, quotas and store as the Discord bot, and the HTTP surface for operations
(``/healthz``, ``/metrics``). Served by aiohttp in the app process; never imports discord."""
