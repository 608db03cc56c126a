"""Request bodies of the API, in OpenAI's shapes where OpenAI has the endpoint.

Fields OpenAI defines but this server does not use (``logprobs``, ``user``, ``presence_penalty``, ...) are
accepted and ignored, so existing clients work unchanged; values out of range are refused with 400 and an
OpenAI-style error body (see :mod:`genchain.serve.app`). Responses are plain dicts built in the app, in
OpenAI's shapes plus one ``genchain`` field.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_CHOICES = 16
MAX_STOPS = 4
MAX_PROMPT_CHARS = 100_000


class _Sampling(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1, max_length=200)
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=1.0, ge=0.0, le=2.0)
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    n: int = Field(default=1, ge=1, le=MAX_CHOICES)
    stop: str | list[str] | None = None
    seed: int | None = Field(default=None, ge=-(2**63), lt=2**63)
    stream: bool = False

    @field_validator("stop")
    @classmethod
    def _stops(cls, value: str | list[str] | None) -> str | list[str] | None:
        stops = [value] if isinstance(value, str) else value or []
        if len(stops) > MAX_STOPS:
            raise ValueError(f"at most {MAX_STOPS} stop sequences")
        if any(not s for s in stops):
            raise ValueError("stop sequences cannot be empty")
        return value

    def stops(self) -> tuple[str, ...]:
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())


class CompletionRequest(_Sampling):
    prompt: str | list[str] = Field(default="")

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, value: str | list[str]) -> str | list[str]:
        if isinstance(value, list) and len(value) != 1:
            raise ValueError("this server takes one prompt per request (a string, or a list of one string)")
        text = value if isinstance(value, str) else value[0]
        if len(text) > MAX_PROMPT_CHARS:
            raise ValueError(f"the prompt is longer than {MAX_PROMPT_CHARS} characters")
        return value

    def text(self) -> str:
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: str
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None
    name: str | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(part.text or "" for part in self.content if part.type == "text")
        return self.content or ""


class ChatRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1, max_length=256)

    def prompt(self) -> str:
        """Our GPTs are not chat-tuned: the conversation is the messages' text, one per line, and the model
        continues it on a new line."""
        text = "\n".join(m.text() for m in self.messages) + "\n"
        if len(text) > MAX_PROMPT_CHARS:
            raise ValueError(f"the messages are longer than {MAX_PROMPT_CHARS} characters")
        return text


class ImageRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1, max_length=200)
    prompt: str | None = Field(default=None, max_length=200)
    n: int = Field(default=1, ge=1, le=MAX_CHOICES)
    seed: int | None = Field(default=None, ge=0, lt=2**63)
    response_format: Literal["b64_json", "url"] = "b64_json"


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    artefact_id: str = Field(min_length=1, max_length=64)
    thumbs: Literal["up", "down"] | None = None
    rating: int | None = Field(default=None, ge=1, le=5)
    comment: str | None = Field(default=None, max_length=4000)


class ArenaPairRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    prompt: str = Field(default="", max_length=4000)
    models: list[str] | None = Field(default=None, min_length=2, max_length=2)
    max_tokens: int = Field(default=64, ge=1, le=512)


class ArenaVoteRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    left_sample_id: str = Field(min_length=1, max_length=64)
    right_sample_id: str = Field(min_length=1, max_length=64)
    choice: Literal["left", "right", "tie"]
