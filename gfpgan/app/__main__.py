"""``python -m gfpgan.app``: serve the web page (see :mod:`gfpgan.app.server`)."""

from gfpgan.app.server import cli

if __name__ == "__main__":
    cli()
