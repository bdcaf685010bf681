"""The monGARS server: a FastAPI app assembled from the installed plugins.

Not built yet; ``mongars_server.create_app(settings)`` arrives with the server
issue. Until then ``mongars chat`` is the way to talk to monGARS.
"""
