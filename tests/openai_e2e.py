"""The official `openai` Python client, unchanged, against a Plexus devnet's gateway.

Usage: python openai_e2e.py DEVNET_DIR PLEXUS_BINARY

Reads the gateway URL and API key from DEVNET_DIR/devnet.json, then checks: the model list,
embeddings (one text, many texts split over several jobs, float and base64), chat (plain and
streaming, the same greedy answer as `plexus infer chat`), the error shapes and status codes
(bad key, unknown model, invalid parameter, input too long, spending limit, insufficient
funds), and that each receipt verifies against the chain with `plexus receipt verify`.
"""

import json
import math
import subprocess
import sys
import time
import urllib.request

import openai
from openai import OpenAI

EMBED = "all-minilm-l6-v2"
CHAT = "smollm2-135m-instruct"

devnet_dir, plexus = sys.argv[1], sys.argv[2]
checks = 0


def check(condition, what):
    global checks
    if not condition:
        raise AssertionError(what)
    checks += 1


def devnet():
    with open(f"{devnet_dir}/devnet.json") as f:
        return json.load(f)


def run(*args):
    out = subprocess.run([plexus, *args], capture_output=True, text=True)
    return out.returncode, out.stdout, out.stderr


def wait_for(what, timeout, probe):
    started = time.time()
    while True:
        value = probe()
        if value:
            return value
        if time.time() - started > timeout:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)


# Both providers up (each loads and hashes the models; a provider that gets a job while the
# other is still loading competes with it for the CPU).
info = wait_for(
    "the gateway and both providers in devnet.json",
    600,
    lambda: devnet().get("gateway") and len(devnet().get("providers", [])) == 2 and devnet(),
)
rpc = info["rpc"]
client = OpenAI(base_url=info["gateway"], api_key=info["api_key"], max_retries=0, timeout=180)


def expect_error(status, code, call, param=None):
    try:
        call()
    except openai.APIStatusError as e:
        check(e.status_code == status, f"status {e.status_code} != {status}: {e}")
        body = e.body if isinstance(e.body, dict) else {}
        error = body.get("error", body)
        check(set(error) >= {"message", "type", "param", "code"}, f"OpenAI error shape: {e.body}")
        check(error["code"] == code, f"code {error['code']} != {code}")
        if param is not None:
            check(error["param"] == param, f"param {error['param']} != {param}")
        check("Traceback" not in error["message"] and "panicked" not in error["message"], "no internals")
        return error
    raise AssertionError(f"expected HTTP {status} {code}, got success")


# --- models: both served once the providers registered ---
def served():
    ids = {m.id for m in client.models.list().data}
    return ids >= {EMBED, CHAT} and ids


ids = wait_for("both models to have providers", 120, served)
check(client.models.retrieve(CHAT).id == CHAT, "retrieve a model")
print(f"models: {sorted(ids)}")


# --- embeddings: one text, the same vector as local inference ---
def local_embed(texts):
    args = ["infer", "embed", "--model", EMBED, "--json"]
    for t in texts:
        args += ["--text", t]
    code, out, err = run(*args)
    check(code == 0, err)
    return json.loads(out)["embeddings"]


def cosine(a, b):
    dot = sum(x * y for x, y in zip(a, b))
    return dot / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


raw = client.embeddings.with_raw_response.create(model=EMBED, input="Plexus pays providers for honest work.")
one = raw.parse()
receipts = [r for r in raw.headers["x-plexus-receipt"].split(",") if r]
check(len(receipts) == 1, "one job, one receipt")
check(len(one.data) == 1 and len(one.data[0].embedding) == 384, "one 384-d vector")
check(one.usage.prompt_tokens > 0 and one.usage.total_tokens == one.usage.prompt_tokens, "usage")
local = local_embed(["Plexus pays providers for honest work."])[0]
check(cosine(one.data[0].embedding, local) > 0.99999, "the network's vector is the local one")
embed_receipt = receipts[0]

# Many texts: split over several jobs, returned in order; explicit float format too.
texts = [f"sentence number {i} about decentralized inference" for i in range(70)]
raw = client.embeddings.with_raw_response.create(model=EMBED, input=texts, encoding_format="float")
many = raw.parse()
check(len(raw.headers["x-plexus-receipt"].split(",")) == 2, "70 texts make two jobs")
check([d.index for d in many.data] == list(range(70)), "vectors in input order")
local = local_embed([texts[0], texts[69]])
check(cosine(many.data[0].embedding, local[0]) > 0.99999, "first vector matches")
check(cosine(many.data[69].embedding, local[1]) > 0.99999, "last vector matches")
print(f"embeddings: 1 text and 70 texts ok (receipt {embed_receipt})")

# --- chat: the greedy answer equals local inference ---
question = [{"role": "user", "content": "What is the capital of France?"}]
raw = client.chat.completions.with_raw_response.create(model=CHAT, messages=question, max_tokens=24)
chat = raw.parse()
chat_receipt = raw.headers["x-plexus-receipt"]
answer = chat.choices[0].message.content
check(chat.object == "chat.completion" and chat.choices[0].message.role == "assistant", "chat shape")
check("Paris" in answer, f"a sensible answer: {answer!r}")
check(chat.choices[0].finish_reason in ("stop", "length"), "finish reason")
check(chat.usage.completion_tokens > 0 and chat.usage.prompt_tokens > 0, "usage")
code, out, err = run("infer", "chat", "--model", CHAT, "--prompt", question[0]["content"],
                     "--max-tokens", "24", "--json")
check(code == 0, err)
check(json.loads(out)["text"] == answer, "the network's answer is local greedy decoding's")
print(f"chat: {answer!r}")

# A long generation takes several seconds: its commit deadline stretches with its size, so the
# provider is paid, not penalised (checked at the end).
story = client.chat.completions.create(
    model=CHAT, messages=[{"role": "user", "content": "Write a long story about a lighthouse keeper."}],
    max_tokens=128,
)
check(story.usage.completion_tokens > 64, f"a long generation completes: {story.usage}")

# Streaming: tokens arrive in several chunks and add up to the same answer.
stream = client.chat.completions.create(
    model=CHAT, messages=question, max_tokens=24, stream=True, stream_options={"include_usage": True}
)
pieces, finish, usage = [], None, None
for chunk in stream:
    if chunk.choices:
        delta = chunk.choices[0].delta
        if delta.content:
            pieces.append(delta.content)
        finish = chunk.choices[0].finish_reason or finish
    if chunk.usage:
        usage = chunk.usage
check("".join(pieces) == answer, f"streamed text {''.join(pieces)!r} == {answer!r}")
check(len(pieces) > 1, "tokens arrive as they are produced")
check(finish in ("stop", "length") and usage is not None and usage.completion_tokens > 0, "stream end")
print(f"streaming: {len(pieces)} chunks")

# --- errors: OpenAI's shape and status codes ---
bad = OpenAI(base_url=info["gateway"], api_key="sk-plexus-" + "0" * 64, max_retries=0)
expect_error(401, "invalid_api_key", lambda: bad.models.list())
expect_error(404, "model_not_found", lambda: client.embeddings.create(model="no-such-model", input="x"), "model")
expect_error(400, "invalid_parameter",
             lambda: client.chat.completions.create(model=CHAT, messages=question, temperature=5), "temperature")
expect_error(400, "invalid_parameter",
             lambda: client.chat.completions.create(model=CHAT, messages=question, n=2), "n")
expect_error(400, "invalid_parameter", lambda: client.embeddings.create(model=EMBED, input=[]), "input")
expect_error(400, "context_length_exceeded",
             lambda: client.chat.completions.create(
                 model=CHAT, messages=[{"role": "user", "content": "word " * 20000}], max_tokens=8))

gateway_dir = f"{devnet_dir}/gateway"
alice_key = f"{devnet_dir}/keys/alice.key"
code, out, err = run("gateway", "keys", "create", "--account", alice_key, "--limit", "1",
                     "--name", "tiny", "--dir", gateway_dir, "--json")
check(code == 0, err)
limited = OpenAI(base_url=info["gateway"], api_key=json.loads(out)["api_key"], max_retries=0)
expect_error(429, "spending_limit_exceeded", lambda: limited.embeddings.create(model=EMBED, input="x"))

pauper_key = f"{devnet_dir}/pauper.key"
run("keys", "new", "--out", pauper_key)
code, out, err = run("gateway", "keys", "create", "--account", pauper_key, "--dir", gateway_dir, "--json")
check(code == 0, err)
pauper = OpenAI(base_url=info["gateway"], api_key=json.loads(out)["api_key"], max_retries=0)
expect_error(402, "insufficient_funds", lambda: pauper.embeddings.create(model=EMBED, input="x"))
print("errors: 401, 404, 400 (parameters, input too long), 429, 402 as expected")


# --- receipts: verified against the chain, not the gateway ---
def verified(receipt):
    def probe():
        code, out, err = run("receipt", "verify", receipt, "--rpc", rpc, "--json")
        report = json.loads(out) if out.strip() else {}
        check(report.get("status") not in ("invalid", "disputed", "refunded"), f"{receipt}: {out} {err}")
        return report.get("status") == "verified" and report
    return wait_for(f"receipt {receipt} to settle", 120, probe)


for receipt in (embed_receipt, chat_receipt):
    report = verified(receipt)
    check(report["signature_valid"] is True and report["output_checked"] is True, "signature and output")
with urllib.request.urlopen(f"{info['gateway']}/receipts/{chat_receipt}") as r:
    served_report = json.load(r)
check(served_report["status"] == "verified", "the gateway serves the same receipt")
print(f"receipts: {embed_receipt[:16]}... and {chat_receipt[:16]}... verified")

code, out, err = run("providers", "--rpc", rpc, "--json")
check(code == 0, err)
for p in json.loads(out)["providers"]:
    check(p["reputation"] == 10000, f"no provider missed a deadline: {p}")
print(f"openai e2e: {checks} checks passed")
