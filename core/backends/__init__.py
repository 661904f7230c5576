"""Storage backends; open them by URL with `memfold.open_store`."""
