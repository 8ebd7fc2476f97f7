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


class ConfigErrors(ConfigError):
    """Several located errors found in one pass (the bad layers of a net): printed one per line,
    in file order.  Its own file, line, layer and field are those of the first."""

    def __init__(self, errors: list[ConfigError]):
        flat = [e for err in errors for e in (err.errors if isinstance(err, ConfigErrors) else [err])]
        self.errors = sorted(flat, key=lambda e: (e.line is None, e.line or 0))
        first = self.errors[0]
        super().__init__(first.message, file=first.file, line=first.line, layer=first.layer,
                         layer_type=first.layer_type, field=first.field)

    def __str__(self) -> str:
        return "\n".join(str(e) for e in self.errors)

    @staticmethod
    def of(errors: list[ConfigError]) -> ConfigError:
        """One error for all of ``errors``: the error itself when there is one."""
        return errors[0] if len(errors) == 1 else ConfigErrors(errors)
