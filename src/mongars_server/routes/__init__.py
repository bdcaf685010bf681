"""The bundled routers; :mod:`mongars_server.plugin` registers them."""
