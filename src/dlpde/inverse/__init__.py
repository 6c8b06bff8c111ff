"""dlpde.inverse (public names are re-exported here as the thread is built)."""

__all__: list[str] = []
