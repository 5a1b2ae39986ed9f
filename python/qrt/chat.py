"""Chat templates: render a GGUF's ``tokenizer.chat_template`` (Jinja) in a sandbox.

Templates come from model files, which are untrusted input: they are rendered with Jinja's
ImmutableSandboxedEnvironment (no attribute access to Python internals, no mutation of the messages),
and the output is capped so a template cannot loop us into gigabytes of text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

#: Rendered prompts longer than this many characters are refused.
MAX_RENDERED_CHARS = 1 << 22

# ChatML, used when a file carries no template (what llama.cpp falls back to as well).
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


# Gemma 3's own template (the text part of the one its instruction-tuned checkpoints ship), for gemma3 files
# that carry none: a system message goes in front of the first user turn; the assistant is "model".
GEMMA_TEMPLATE = (
    "{{ bos_token }}"
    "{% if messages[0]['role'] == 'system' %}"
    "{% set first_user_prefix = messages[0]['content'] + '\n\n' %}{% set loop_messages = messages[1:] %}"
    "{% else %}{% set first_user_prefix = '' %}{% set loop_messages = messages %}{% endif %}"
    "{% for message in loop_messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% endif %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') }}"
    "{{ message['content'] | trim }}{{ '<end_of_turn>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)

#: The template a file without ``tokenizer.chat_template`` gets, by ``general.architecture`` (ChatML for
#: the rest, as llama.cpp falls back to).
BUILTIN_TEMPLATES = {"gemma3": GEMMA_TEMPLATE}


def default_template(architecture: str | None) -> str:
    """The template for a file that carries none: its architecture's own, else ChatML."""
    return BUILTIN_TEMPLATES.get(architecture or "", CHATML_TEMPLATE)


def _raise_exception(message: str) -> None:
    raise jinja2.TemplateError(message)


def _environment() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, autoescape=False)
    env.globals["raise_exception"] = _raise_exception  # HF templates call it for invalid conversations
    return env


def check_messages(messages: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    """Validate a conversation: a list of ``{"role": str, "content": str}`` dicts."""
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
        raise TypeError("messages must be a list of {'role': ..., 'content': ...} dicts")
    out = []
    for i, m in enumerate(messages):
        if (
            not isinstance(m, Mapping)
            or not isinstance(m.get("role"), str)
            or not isinstance(m.get("content"), str)
        ):
            raise TypeError(f"messages[{i}] must be a dict with str 'role' and 'content'")
        out.append({"role": m["role"], "content": m["content"]})
    return out


def render(
    template: str | None,
    messages: Sequence[Mapping[str, Any]],
    *,
    bos_token: str = "",
    eos_token: str = "",
    add_generation_prompt: bool = True,
) -> str:
    """Render ``messages`` with ``template`` (ChatML when None) in the sandbox.

    Raises jinja2.TemplateError for a broken or hostile template (including one whose output exceeds
    MAX_RENDERED_CHARS), TypeError for malformed messages.
    """
    msgs = check_messages(messages)
    compiled = _environment().from_string(template or CHATML_TEMPLATE)
    pieces: list[str] = []
    size = 0
    for piece in compiled.generate(
        messages=msgs, bos_token=bos_token, eos_token=eos_token, add_generation_prompt=add_generation_prompt
    ):
        size += len(piece)
        if size > MAX_RENDERED_CHARS:
            raise jinja2.TemplateError(f"chat template output exceeds {MAX_RENDERED_CHARS} characters")
        pieces.append(piece)
    return "".join(pieces)
