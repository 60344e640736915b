"""``ferkit serve``: a FastAPI web service and a web page (photo upload and live webcam)."""

from ferkit.serving.app import ServeConfig, create_app, serve

__all__ = ["ServeConfig", "create_app", "serve"]
