"""The one exception type the CLI turns into a one-line message and a non-zero exit code."""


class AdbenchError(Exception):
    """A user-facing error: bad input, missing file or weights, unknown name. Printed as one line."""


class WeightsNotFoundError(AdbenchError):
    """Pretrained weights for a backbone could not be found locally and could not be downloaded."""
