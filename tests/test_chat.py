"""Chat templates render like Hugging Face's apply_chat_template, and hostile templates cannot escape."""

from __future__ import annotations

import jinja2
import pytest

from qrt import chat

SMOLLM2_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\\n' }}"
    "{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def test_smollm2_template_renders_chatml_with_default_system_prompt() -> None:
    text = chat.render(SMOLLM2_TEMPLATE, [{"role": "user", "content": "Hi!"}])
    assert text == (
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"
        "<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n"
    )


def test_missing_template_falls_back_to_chatml() -> None:
    text = chat.render(None, [{"role": "user", "content": "x"}], add_generation_prompt=False)
    assert text == "<|im_start|>user\nx<|im_end|>\n"


def test_raise_exception_is_a_template_error() -> None:
    with pytest.raises(jinja2.TemplateError, match="roles must alternate"):
        chat.render("{{ raise_exception('roles must alternate') }}", [])


@pytest.mark.parametrize(
    "payload",
    [
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ cycler.__init__.__globals__.os.system('echo pwned') }}",
        "{{ messages.append({'role': 'x', 'content': 'y'}) }}",
        "{% set x = messages.pop() %}",
    ],
)
def test_injection_payloads_are_refused(payload: str) -> None:
    with pytest.raises(jinja2.TemplateError):
        chat.render(payload, [{"role": "user", "content": "hi"}])


def test_huge_output_is_capped() -> None:
    bomb = "{% for i in range(100000) %}{% for j in range(100000) %}xxxxxxxx{% endfor %}{% endfor %}"
    with pytest.raises(jinja2.TemplateError, match="exceeds"):
        chat.render(bomb, [])


def test_malformed_messages() -> None:
    with pytest.raises(TypeError, match="list of"):
        chat.render(None, "hello")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"messages\[1\]"):
        chat.render(None, [{"role": "user", "content": "a"}, {"role": "user"}])
