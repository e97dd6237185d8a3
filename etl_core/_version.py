import importlib.metadata

try:
    __version__ = importlib.metadata.version("etl")
except importlib.metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0+unknown"
