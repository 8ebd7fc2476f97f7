"""User-facing errors: each carries enough context to be printed as one line."""

from __future__ import annotations


class TrainnetError(Exception):
    """A user's mistake (bad config, missing file, corrupt weights): printed as one line by the CLI."""


class ConfigError(TrainnetError):
    """An error in a config file, located by file, line, layer and field.

    Prints as ``file:line: layer 'conv2' (Convolution): kernel_size: must be >= 1``.
    """

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 layer: str | None = None, layer_type: str | None = None, field: str | None = None):
        self.message = message
        self.file = file
        self.line = line
        self.layer = layer
        self.layer_type = layer_type
        self.field = field
        super().__init__(str(self))

    def __str__(self) -> str:
        parts = []
        if self.file:
            parts.append(f"{self.file}:{self.line}" if self.line else self.file)
        if self.layer is not None:
            parts.append(f"layer '{self.layer}' ({self.layer_type})" if self.layer_type
                         else f"layer '{self.layer}'")
        if self.field:
            parts.append(self.field)
        parts.append(self.message)
        return ": ".join(parts)
