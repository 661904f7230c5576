"""Storage backends; open them by URL with :func:`memfold.open_store`."""
