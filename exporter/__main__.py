from exporter.cli import entrypoint

entrypoint()
