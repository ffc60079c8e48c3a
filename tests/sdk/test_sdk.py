"""The proxy driven by the official SDKs, as Dex and Dexto use it."""
import anthropic
import openai
import pytest

WEATHER_TOOL = {
    "type": "function",
    "function": {"name": "lookup", "description": "Look something up", "parameters": {"type": "object", "properties": {"query": {"type": "string"}}}},
}


def test_openai_chat_plain(oai):
    raw = oai.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi there"}])
    assert raw.headers.get("x-dexto-request-id")
    assert raw.headers.get("x-dexto-cost-usd")
    c = raw.parse()
    assert c.choices[0].message.content.startswith("Hello from the fake OpenAI")
    assert c.model == "gpt-4o-mini"
    assert c.usage.prompt_tokens > 0 and c.usage.completion_tokens > 0


def test_openai_chat_streaming_with_and_without_usage(oai):
    chunks = list(oai.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "stream please"}], stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("Hello from the fake OpenAI")
    assert all(c.usage is None for c in chunks), "usage was not asked for, so it is stripped"
    chunks = list(oai.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "stream please"}], stream=True,
                                              stream_options={"include_usage": True}))
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert chunks[-1].choices == []


def test_openai_tool_calls(oai):
    c = oai.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "use a tool"}], tools=[WEATHER_TOOL])
    call = c.choices[0].message.tool_calls[0]
    assert call.function.name == "lookup"
    assert c.choices[0].finish_reason == "tool_calls"


def test_openai_sdk_to_claude_model(oai):
    c = oai.chat.completions.create(model="claude-sonnet-4-5", messages=[{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello claude"}])
    assert c.choices[0].message.content.startswith("Hello from the fake Anthropic")
    assert c.choices[0].finish_reason == "stop"
    assert c.model == "claude-sonnet-4-5"
    assert c.usage.prompt_tokens > 0


def test_openai_sdk_to_claude_model_streaming_and_tools(oai):
    chunks = list(oai.chat.completions.create(model="claude-sonnet-4-5", messages=[{"role": "user", "content": "hello stream"}], stream=True,
                                              stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("Hello from the fake Anthropic")
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == ["stop"]
    c = oai.chat.completions.create(model="claude-sonnet-4-5", messages=[{"role": "user", "content": "please use a tool"}], tools=[WEATHER_TOOL])
    assert c.choices[0].finish_reason == "tool_calls"
    assert c.choices[0].message.tool_calls[0].function.name == "lookup"


def test_anthropic_sdk_native(claude):
    m = claude.messages.create(model="claude-sonnet-4-5", max_tokens=200, messages=[{"role": "user", "content": "hello"}])
    assert m.content[0].text.startswith("Hello from the fake Anthropic")
    assert m.usage.output_tokens > 0
    with claude.messages.stream(model="claude-sonnet-4-5", max_tokens=200, messages=[{"role": "user", "content": "hello stream"}]) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text.startswith("Hello from the fake Anthropic")
    assert final.usage.output_tokens > 0


def test_anthropic_sdk_to_gpt_model(claude):
    m = claude.messages.create(model="gpt-4o-mini", max_tokens=200, messages=[{"role": "user", "content": "hello gpt"}])
    assert m.content[0].text.startswith("Hello from the fake OpenAI")
    assert m.stop_reason == "end_turn"
    with claude.messages.stream(model="gpt-4o-mini", max_tokens=200, messages=[{"role": "user", "content": "hello gpt stream"}]) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text.startswith("Hello from the fake OpenAI")
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 0


def test_embeddings(oai):
    e = oai.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    assert len(e.data) == 2 and len(e.data[0].embedding) > 0


def test_models_list(oai):
    ids = [m.id for m in oai.models.list()]
    assert "gpt-4o-mini" in ids and "claude-sonnet-4-5" in ids


def test_errors_surface_as_sdk_exceptions(stack, oai, claude):
    with pytest.raises(openai.NotFoundError) as e:
        oai.chat.completions.create(model="gpt-99-imaginary", messages=[{"role": "user", "content": "x"}])
    assert e.value.status_code == 404
    with pytest.raises(openai.BadRequestError):
        oai.chat.completions.create(model="gpt-4o-mini", messages=[])
    bad = openai.OpenAI(base_url=stack["base_url"] + "/v1", api_key="pk_live_000000000000000000000000000000000", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bad.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(anthropic.NotFoundError):
        claude.messages.create(model="claude-imaginary", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    bad_claude = anthropic.Anthropic(base_url=stack["base_url"], api_key="pk_live_000000000000000000000000000000000", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        bad_claude.messages.create(model="claude-sonnet-4-5", max_tokens=10, messages=[{"role": "user", "content": "x"}])
