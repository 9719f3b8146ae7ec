"""``POST /v1/responses`` parameters, with OpenAI's names, and their translation to a chat request.

A Responses request runs as the chat completion it corresponds to (:meth:`ResponseCreateRequest.chat_fields`):
the API builds chat's request from those fields, so the backend gets the same ``SamplingParams``,
``text.format`` constrains decoding exactly as chat's ``response_format`` does, and function ``tools`` are
offered and parsed as chat's.

What openft cannot do is refused with a 400 naming the parameter, never ignored: built-in tools
(web search, file search, code interpreter, computer use, MCP, image generation, shell...),
``reasoning``, ``background``, ``conversation``, reusable ``prompt`` templates,
``include`` values other than ``message.output_text.logprobs``, and ``text.verbosity`` other than
``medium``. Parameters that only name the caller or hint at caching (``user``, ``safety_identifier``,
``prompt_cache_key``, ``prompt_cache_retention``, ``service_tier``) change no answer and are accepted.
``seed`` is openft's addition (OpenAI's Responses API has none), sent by clients through ``extra_body``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from openft.errors import InvalidRequest

LOGPROBS_INCLUDE = "message.output_text.logprobs"

_REFUSED = {
    "reasoning": "openft's models do not reason: `reasoning` is not supported.",
    "conversation": "Conversations are not supported; continue a response with `previous_response_id`.",
    "prompt": "Reusable prompt templates are not supported; send `input` and `instructions`.",
    "context_management": "Context management is not supported.",
    "moderation": "Moderation is not supported.",
    "image": "Image generation options are not supported.",
    "access_programs": "`access_programs` is not supported.",
    "background_options": "Background responses are not supported.",
    "prompt_cache_options": "`prompt_cache_options` is not supported.",
}
"""Parameters of OpenAI's spec that openft cannot honour: any value other than null is a 400."""

MetadataKey = Annotated[str, StringConstraints(max_length=64)]
MetadataValue = Annotated[str, StringConstraints(max_length=512)]


class TextFormat(BaseModel):
    """``text.format``: ``{"type": "text"}``, ``{"type": "json_object"}`` or a ``json_schema`` format."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)
    type: Literal["text", "json_object", "json_schema"]
    name: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    description: str | None = None
    strict: bool | None = None

    def wire(self) -> dict[str, Any]:
        """The format as a response object shows it."""
        if self.type != "json_schema":
            return {"type": self.type}
        return {
            "type": "json_schema",
            "name": self.name,
            "schema": self.schema_,
            "description": self.description,
            "strict": self.strict,
        }

    def chat_response_format(self) -> dict[str, Any]:
        """The same format in chat's ``response_format`` shape."""
        if self.type != "json_schema":
            return {"type": self.type}
        spec = {"name": self.name, "schema": self.schema_, "description": self.description, "strict": self.strict}
        return {"type": "json_schema", "json_schema": {k: v for k, v in spec.items() if v is not None}}


class TextConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    format: TextFormat | None = None
    verbosity: Literal["low", "medium", "high"] | None = None


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    include_obfuscation: bool | None = None


class ResponseCreateRequest(BaseModel):
    """The body of ``POST /v1/responses``; unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")
    model: str
    input: str | list[Any]
    instructions: str | None = None
    max_output_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    seed: int | None = None
    """openft's addition: the same seed, model and parameters give the same output."""
    metadata: dict[MetadataKey, MetadataValue] | None = Field(default=None, max_length=16)
    store: bool | None = True
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    previous_response_id: str | None = Field(default=None, max_length=64)
    text: TextConfig | None = None
    tools: list[Any] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    max_tool_calls: int | None = Field(default=None, ge=1)
    """Limits built-in tool calls, of which openft makes none."""
    truncation: Literal["auto", "disabled"] | None = None
    include: list[str] | None = None
    background: bool | None = None
    user: str | None = None
    safety_identifier: str | None = None
    prompt_cache_key: str | None = None
    prompt_cache_retention: Literal["in_memory", "24h"] | None = None
    service_tier: Literal["auto", "default", "flex", "scale", "priority"] | None = None
    reasoning: Any = None
    conversation: Any = None
    prompt: Any = None
    context_management: Any = None
    moderation: Any = None
    image: Any = None
    access_programs: Any = None
    background_options: Any = None
    prompt_cache_options: Any = None

    def refuse_unsupported(self) -> None:
        """Raise InvalidRequest for the first parameter openft cannot honour."""
        for name, message in _REFUSED.items():
            if getattr(self, name) is not None:
                raise InvalidRequest(message, param=name)
        if self.background:
            raise InvalidRequest("Background responses are not supported; use `stream` instead.", param="background")
        for i, value in enumerate(self.include or []):
            if value != LOGPROBS_INCLUDE:
                raise InvalidRequest(
                    f"include value '{value}' is not supported; only '{LOGPROBS_INCLUDE}' is.", param=f"include[{i}]"
                )
        if self.text is not None and self.text.verbosity not in (None, "medium"):
            raise InvalidRequest(
                f"Unsupported value: '{self.text.verbosity}' is not supported; only 'medium' is.",
                param="text.verbosity",
            )
        chat_tools(self.tools)
        chat_tool_choice(self.tool_choice, self.tools)

    @property
    def wants_logprobs(self) -> bool:
        return LOGPROBS_INCLUDE in (self.include or [])

    def text_format(self) -> TextFormat:
        return (self.text.format if self.text else None) or TextFormat(type="text")

    def chat_fields(self, messages: list[dict[str, Any]]) -> dict[str, Any]:
        """The fields of the chat completion request this request runs as, over ``messages`` (the whole
        conversation)."""
        fields: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "max_completion_tokens": self.max_output_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "seed": self.seed,
            "response_format": self.text_format().chat_response_format(),
            "tools": offered_tools(self.tools, self.tool_choice),
            "tool_choice": chat_tool_choice(self.tool_choice, self.tools),
        }
        if self.wants_logprobs:
            fields.update(logprobs=True, top_logprobs=self.top_logprobs or 0)
        return fields


def _function_tool(i: int, tool: Any) -> dict[str, Any]:
    if not isinstance(tool, dict):
        raise InvalidRequest(f"tools[{i}] must be an object.", param=f"tools[{i}]")
    kind = tool.get("type")
    if kind != "function":
        raise InvalidRequest(
            f"Tool type '{kind}' is not supported: openft runs function tools only.", param=f"tools[{i}].type"
        )
    name = tool.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidRequest("A function tool needs a `name`.", param=f"tools[{i}].name")
    parameters = tool.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        raise InvalidRequest("`parameters` must be a JSON Schema object.", param=f"tools[{i}].parameters")
    return tool


def chat_tools(tools: list[Any] | None) -> list[dict[str, Any]] | None:
    """Responses function tools (``{"type", "name", "parameters"...}``) in chat's nested form."""
    if not tools:
        return None
    out = []
    for i, tool in enumerate(tools):
        checked = _function_tool(i, tool)
        function = {
            k: checked[k] for k in ("name", "description", "parameters", "strict") if checked.get(k) is not None
        }
        out.append({"type": "function", "function": function})
    return out


def wire_tools(tools: list[Any] | None) -> list[dict[str, Any]]:
    """The function tools as a response object lists them (``strict`` defaults to true, as OpenAI's)."""
    return [
        {
            "type": "function",
            "name": t["name"],
            "description": t.get("description"),
            "parameters": t.get("parameters"),
            "strict": True if t.get("strict") is None else t["strict"],
        }
        for t in (tools or [])
    ]


def _tool_names(tools: list[Any] | None) -> list[str]:
    # A list, not a set: a client's name may be any JSON value, and membership must not hash it.
    return [t["name"] for t in tools or [] if isinstance(t, dict) and isinstance(t.get("name"), str)]


def offered_tools(tools: list[Any] | None, choice: str | dict[str, Any] | None) -> list[dict[str, Any]] | None:
    """The function tools the model is shown: all of them, or those an ``allowed_tools`` choice names."""
    chat = chat_tools(tools)
    if chat is None or not isinstance(choice, dict) or choice.get("type") != "allowed_tools":
        return chat
    allowed = [t.get("name") for t in choice.get("tools") or [] if isinstance(t, dict)]
    return [t for t in chat if t["function"]["name"] in allowed]


def chat_tool_choice(choice: str | dict[str, Any] | None, tools: list[Any] | None) -> str | dict[str, Any] | None:
    """A Responses ``tool_choice`` in chat's form; hosted-tool choices and unknown functions are refused."""
    if choice is None or choice in ("auto", "none", "required"):
        return choice
    if isinstance(choice, str):
        raise InvalidRequest(f"Invalid value for tool_choice: '{choice}'.", param="tool_choice")
    kind = choice.get("type")
    if kind == "function":
        name = choice.get("name")
        if name not in _tool_names(tools):
            raise InvalidRequest(f"Tool choice '{name}' is not one of the function tools.", param="tool_choice.name")
        return {"type": "function", "function": {"name": name}}
    if kind == "allowed_tools":
        mode = choice.get("mode")
        allowed = choice.get("tools") or []
        if mode not in ("auto", "required") or not isinstance(allowed, list):
            raise InvalidRequest(
                "allowed_tools needs `mode` auto or required and a list of `tools`.", param="tool_choice"
            )
        for j, tool in enumerate(allowed):
            if (
                not isinstance(tool, dict)
                or tool.get("type") != "function"
                or tool.get("name") not in _tool_names(tools)
            ):
                raise InvalidRequest(
                    "allowed_tools may name only the request's function tools.", param=f"tool_choice.tools[{j}]"
                )
        return str(mode)
    raise InvalidRequest(
        f"Tool choice type '{kind}' is not supported: openft runs function tools only.", param="tool_choice.type"
    )
