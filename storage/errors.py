"""The storage layer's own exception type."""


class StorageError(Exception):
    """A database operation failed; the driver's exception is chained as ``__cause__``."""
