"""The official OpenAI and Anthropic SDKs pointed at the running stack.

scripts/e2e.sh starts the stack and sets DEX_STACK_JSON; these tests make
an account of their own through the operator API so they share no state.
"""
import json
import os
import time
import urllib.request

import anthropic
import openai
import pytest


@pytest.fixture(scope="session")
def stack():
    with open(os.environ["DEX_STACK_JSON"]) as f:
        return json.load(f)


def _post(url, token, body):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"authorization": "Bearer " + token, "content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.load(r)


@pytest.fixture(scope="session")
def api_key(stack):
    email = f"sdk-{int(time.time() * 1000)}@sdk.test"
    created = _post(stack["base_url"] + "/v1/admin/accounts", stack["operator"]["api_key"],
                    {"email": email, "password": "sdk-password-123", "key_name": "sdk"})
    return created["api_key"]["key"]


@pytest.fixture(scope="session")
def oai(stack, api_key):
    # The per-key limit is 60/min with burst 10; the SDKs' own retries are
    # turned off so a refusal is seen as such.
    return openai.OpenAI(base_url=stack["base_url"] + "/v1", api_key=api_key, max_retries=0)


@pytest.fixture(scope="session")
def claude(stack, api_key):
    return anthropic.Anthropic(base_url=stack["base_url"], api_key=api_key, max_retries=0)


@pytest.fixture(autouse=True)
def pace():
    # Stay inside the key's token bucket (1 request a second sustained).
    yield
    time.sleep(1.1)
