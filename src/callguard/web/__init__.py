"""The web console and HTTP API, served from inside the listener process.

``callguard run <pbx>`` serves it when ``[web] enabled`` is true (off by
default, on a loopback port).  Importing this package is cheap: the ASGI
stack (FastAPI, uvicorn, Jinja2) is imported only by the modules that need
it, so ``callguard.config`` can use :mod:`callguard.web.settings`.
"""
