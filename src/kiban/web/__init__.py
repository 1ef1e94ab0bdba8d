"""The web console and HTTP API (``kiban serve``): a thin front end over the same core as the CLI."""

from kiban.web.app import create_app

__all__ = ["create_app"]
