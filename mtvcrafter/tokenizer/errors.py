"""The one exception type of the tokenizer layer."""


class TokenizerError(RuntimeError):
    """A tokenizer checkpoint, configuration or input that cannot be used, with the file and the fix."""
