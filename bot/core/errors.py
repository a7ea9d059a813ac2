"""The error a person can act on: a `code` that picks the Chinese sentence in a template, and the
`params` that fill it. Each concern subclasses it and names its template; doors render `text()`."""
from __future__ import annotations

from bot.core import texts


class CodedError(ValueError):
    template = ""  # the concern's sentences, chosen by `code`

    def __init__(self, code: str, **params):
        self.code, self.params = code, params
        super().__init__(f"{code}: {params}")

    def text(self) -> str:
        return texts.render(self.template, code=self.code, **self.params)
