"""The HTTP API and the review endpoints: good and bad input (never a 5xx), auth, batching, ratings on disk."""
import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import pytest

from supportagent.app.server import Limits, create_app, is_loopback
from supportagent.evaluation.review import ReviewSet, read_ratings


@dataclass
class Reply:
    brand: str
    reply: str

    def to_dict(self):
        return {"brand": self.brand, "reply": self.reply}


class FakeAgent:
    """Answers like the agent's `reply_many`, slowly enough for requests to pile up; records batch sizes."""

    def __init__(self, seconds=0.2):
        self.batches, self.seconds, self.items = [], seconds, []

    def __call__(self, items):
        self.batches.append(len(items))
        self.items += items
        time.sleep(self.seconds)
        return [Reply(it["brand"], f"re: {it['text']}") for it in items]


def write_predictions(folder, systems=("qlora", "prompt_tuning"), n=4):
    folder.mkdir(parents=True, exist_ok=True)
    for s in systems:
        rows = [{"pair_id": i, "brand": "AmazonHelp", "customer": f"message {i}", "context": "", "reference": "ref",
                 "prediction": f"{s} says {i}", "served": f"{s} says {i}", "tags": "[intent=other]",
                 "path": "fallback_template", "flags": ["mood_mismatch: cheers"], "passed_over": ["candidate 1: x"]}
                for i in range(n)]
        (folder / f"{s}.jsonl").write_text("\n".join([json.dumps({"_base": {"base": "x"}}),
                                                      *map(json.dumps, rows)]) + "\n")


@contextmanager
def live(app):
    """A real uvicorn server on a free loopback port, in a thread."""
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            httpx.get(f"{url}/healthz", timeout=0.5)
            break
        except httpx.HTTPError:
            time.sleep(0.05)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def review(tmp_path):
    write_predictions(tmp_path / "predictions")
    return ReviewSet(tmp_path / "predictions", ["qlora", "prompt_tuning"], n=3, seed=1)


@pytest.fixture
def client(tmp_path, review):
    from fastapi.testclient import TestClient

    app = create_app(FakeAgent(0.0), "qlora", review, tmp_path / "ratings.csv", limits=Limits(max_items=4,
                                                                                              max_body_bytes=2000))
    with TestClient(app) as c:
        yield c


def test_one_message_and_a_list_get_the_agent_fields_and_their_ids(client):
    r = client.post("/v1/reply", json={"brand": "AmazonHelp", "text": "where is my order", "id": "a1"})
    assert r.status_code == 200 and r.json() == {"id": "a1", "brand": "AmazonHelp", "reply": "re: where is my order"}
    r = client.post("/v1/reply", json=[{"text": "one", "id": 1}, {"text": "two", "context": "earlier"}])
    assert r.status_code == 200 and [x.get("id") for x in r.json()] == [1, None]
    assert client.get("/healthz").json()["method"] == "qlora"


@pytest.mark.parametrize("body,status,says", [
    (b"{not json", 400, "not JSON"),
    (b'{"text": 123}', 422, "text"),
    (b'{"text": null}', 422, "text"),
    (b'{"brand": "AmazonHelp"}', 422, "text"),
    (b'{"text": "hi", "colour": "red"}', 422, "colour"),
    (b'"a string"', 422, "JSON object"),
    (b"[]", 422, "empty list"),
    (b'{"text": "hi", "method": "prompt_tuning"}', 422, "serves 'qlora'"),
    (json.dumps([{"text": "x"}] * 5).encode(), 413, "at most 4"),
    (json.dumps({"text": "x" * 3000}).encode(), 413, "over 2000 bytes"),
    (b"\xff\xfe not utf-8", 400, "not JSON"),
])
def test_bad_input_gets_a_4xx_with_a_message(client, body, status, says):
    r = client.post("/v1/reply", content=body, headers={"content-type": "application/json"})
    assert r.status_code == status and says in r.json()["error"], r.text


def test_a_token_is_required_when_set(tmp_path, review):
    from fastapi.testclient import TestClient

    with TestClient(create_app(FakeAgent(0.0), "qlora", review, tmp_path / "r.csv", token="s3cret")) as c:
        assert c.get("/healthz").status_code == 200
        assert c.post("/v1/reply", json={"text": "hi"}).status_code == 401
        assert c.post("/v1/reply", json={"text": "hi"}, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.post("/v1/reply", json={"text": "hi"}, headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert c.get("/review").status_code == 200  # the page holds no data; its API calls carry the token
        assert c.get("/v1/review/next?reviewer=ana").status_code == 401
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")


def test_binding_beyond_loopback_without_a_token_is_refused(tmp_path):
    from supportagent.__main__ import main

    with pytest.raises(SystemExit, match="bearer token"):
        main(["serve", "--host", "0.0.0.0", "--no-model"])


def test_concurrent_requests_are_answered_in_batches(tmp_path, review):
    agent = FakeAgent(0.2)
    with live(create_app(agent, "qlora", review, tmp_path / "r.csv", limits=Limits(max_batch=16))) as url:
        with ThreadPoolExecutor(16) as pool:
            replies = list(
                pool.map(lambda i: httpx.post(f"{url}/v1/reply", json={"text": f"m{i}"}, timeout=30), range(16))
            )
        assert [r.json()["reply"] for r in replies] == [f"re: m{i}" for i in range(16)]  # each gets its own answer
        health = httpx.get(f"{url}/healthz").json()
    assert health["messages"] == 16 and health["batches"] < 16 and max(agent.batches) > 1, agent.batches


def test_the_model_answers_in_the_thread_that_loaded_it(tmp_path, review):
    """`serve` loads the agent in `model_thread`'s thread and every batch is answered there (torch's CPU thread pool
    is fast only in the thread that first used it), whatever thread the event loop or the clients run in."""
    from supportagent.app.server import model_thread

    agent = FakeAgent(0.05)
    answered = []
    thread, loaded_in = model_thread(lambda: threading.get_ident())

    def answer(items):
        answered.append(threading.get_ident())
        return agent(items)

    with live(create_app(answer, "qlora", review, tmp_path / "r.csv", executor=thread)) as url:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda i: httpx.post(f"{url}/v1/reply", json={"text": f"m{i}"}, timeout=30), range(8)))
    thread.shutdown()
    assert answered and set(answered) == {loaded_in} and loaded_in != threading.get_ident()


def test_serve_loads_the_agent_in_the_thread_it_answers_in(monkeypatch):
    """`python -m supportagent serve` wires `model_thread` into the app: the agent is built in the executor's
    thread, and that executor is the one create_app gets. It warms the agent up (compiling the compiled engine)
    in that thread too, before the app is made."""
    import supportagent.__main__ as cli
    import supportagent.app.server as server

    built, warmed, given = [], [], {}

    class Agent:
        method = "qlora"

        def warm_up(self, batch_size):
            warmed.append((threading.get_ident(), bool(given), batch_size))
            return 1.5

    monkeypatch.setattr(cli, "_agent", lambda params, args: built.append(threading.get_ident()) or Agent())
    monkeypatch.setattr(server, "create_app", lambda *a, **k: given.update(k) or object())
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: None)
    cli.main(["serve", "--max-batch", "4"])
    assert built and built[0] != threading.get_ident()
    assert warmed == [(built[0], False, 4)]  # in the model's thread, before the app takes requests, for its batches
    assert given["executor"].submit(threading.get_ident).result() == built[0]
    given["executor"].shutdown()


def test_a_failing_model_gives_500_to_its_batch_only_and_the_server_goes_on(tmp_path, review):
    from fastapi.testclient import TestClient

    calls = []

    def flaky(items):
        calls.append(len(items))
        if len(calls) == 1:
            raise RuntimeError("out of memory")
        return [Reply("", "ok") for _ in items]

    with TestClient(create_app(flaky, "qlora", review, tmp_path / "r.csv"), raise_server_exceptions=False) as c:
        assert c.post("/v1/reply", json={"text": "a"}).status_code == 500
        assert c.post("/v1/reply", json={"text": "b"}).json()["reply"] == "ok"


def test_review_items_are_blind_and_ratings_land_in_the_csv(client, review, tmp_path):
    first = client.get("/v1/review/next?reviewer=ana").json()
    assert first["rated"] == 0 and first["total"] == 3
    shown = json.dumps(first["item"])
    assert "qlora" not in shown.replace("qlora says", "") and "prompt_tuning" not in shown.replace(
        "prompt_tuning says", ""
    )
    # how the guard chose a reply is not shown before it is rated
    assert not any(w in shown for w in ("fallback", "passed", "mood_mismatch", "candidate"))
    order = review.order("ana", first["item"]["id"])
    scores = [{"helpfulness": 4, "tone": 5, "coherence": 3}, {"helpfulness": 2, "tone": 2, "coherence": 1}]
    nxt = client.post("/v1/review/ratings", json={"reviewer": "ana", "item": first["item"]["id"], "scores": scores,
                                                  "preferred": 0}).json()
    assert nxt["rated"] == 1 and nxt["item"]["id"] != first["item"]["id"]
    df = read_ratings(tmp_path / "ratings.csv")
    assert df["system"].tolist() == order and df["helpfulness"].tolist() == [4, 2]
    assert set(df["preferred"]) == {order[0]} and set(df["predictions_sha256"]) == {review.hashes[order[0]],
                                                                                   review.hashes[order[1]]}


SCORE = {"helpfulness": 3, "tone": 3, "coherence": 3}


def _rating(**changes) -> dict:
    """A valid rating of item 0 (the test's first item) with `changes`."""
    return {"reviewer": "ana", "item": 0, "scores": [SCORE] * 2, "preferred": 0, **changes}


@pytest.mark.parametrize("payload,status", [
    (_rating(item=999), 404),
    (_rating(item="ITEM", scores=[]), 422),
    (_rating(reviewer=""), 422),
    (_rating(scores=[{**SCORE, "helpfulness": 6}] * 2), 422),
    (_rating(scores=[SCORE] * 3), 422),
    (_rating(preferred=7), 422),
    (_rating(preferred="b"), 422),
])
def test_bad_ratings_get_a_4xx_and_nothing_is_written(client, tmp_path, payload, status):
    items = client.get("/v1/review/next?reviewer=ana").json()
    if payload["item"] == 0:
        payload = {**payload, "item": items["item"]["id"]}
    r = client.post("/v1/review/ratings", json=payload)
    assert r.status_code == status and r.json()["error"], r.text
    assert not (tmp_path / "ratings.csv").exists()


def test_no_model_serves_the_review_only(tmp_path, review):
    from fastapi.testclient import TestClient

    with TestClient(create_app(None, None, review, tmp_path / "r.csv")) as c:
        assert c.post("/v1/reply", json={"text": "hi"}).status_code == 503
        assert c.get("/v1/review/next?reviewer=bo").json()["total"] == 3
        assert "Blind review" in c.get("/review").text


def test_review_without_predictions_says_what_to_run(tmp_path):
    from fastapi.testclient import TestClient

    with TestClient(create_app(None, None, None, tmp_path / "r.csv")) as c:
        r = c.get("/v1/review/next?reviewer=bo")
        assert r.status_code == 409 and "dvc repro" in r.json()["error"]


def test_clients_answered_together_stay_in_one_batch(tmp_path, review):
    """16 clients that each send again as soon as they are answered: after the first wave the batches are
    full, instead of alternating half batches."""
    agent = FakeAgent(0.3)
    # the clients share this process (and its GIL) with the server: give them more time than the default (on a slow
    # 2-core CPU a wave of 15 answered clients took over 250 ms to send again)
    with live(create_app(agent, "qlora", review, tmp_path / "r.csv", limits=Limits(max_batch=16,
                                                                                  max_wait_ms=1000))) as url:
        def client(k):
            for i in range(4):
                httpx.post(f"{url}/v1/reply", json={"text": f"{k}-{i}"}, timeout=30)

        with ThreadPoolExecutor(16) as pool:
            list(pool.map(client, range(16)))
    assert sum(agent.batches) == 64 and len(agent.batches) <= 6, agent.batches


def test_one_request_at_a_time_does_not_wait_for_company(tmp_path, review):
    agent = FakeAgent(0.0)
    with live(create_app(agent, "qlora", review, tmp_path / "r.csv", limits=Limits(max_wait_ms=500))) as url:
        start = time.perf_counter()
        for i in range(5):
            httpx.post(f"{url}/v1/reply", json={"text": str(i)}, timeout=30)
        assert (time.perf_counter() - start) / 5 < 0.25  # not the 500 ms a shared batch may wait
    assert agent.batches == [1] * 5


@pytest.mark.parametrize("path", ["/v1/reply", "/v1/chat/completions", "/v1/review/ratings"])
@pytest.mark.parametrize("depth", [9, 100, 50_000])
def test_deeply_nested_json_gets_a_4xx_on_every_endpoint_that_reads_a_body(tmp_path, review, path, depth):
    """Python's JSON parser recurses once per level: 50,000 levels once answered 500. Any depth past MAX_DEPTH is
    a 400 that says what to send, and the server goes on answering."""
    from fastapi.testclient import TestClient

    from supportagent.app.server import MAX_DEPTH

    app = create_app(FakeAgent(0.0), "qlora", review, tmp_path / "ratings.csv", limits=Limits(max_body_bytes=200_000))
    with TestClient(app) as client:
        _deep(client, path, depth, MAX_DEPTH)


def _deep(client, path, depth, max_depth):
    body = "[" * depth + "]" * depth
    r = client.post(path, content=body, headers={"content-type": "application/json"})
    message = r.json()["error"]
    message = message["message"] if isinstance(message, dict) else message  # the chat endpoint: OpenAI's shape
    assert r.status_code == 400 and f"deeper than {max_depth} levels" in message, r.text
    nested = {"reviewer": "ana", "item": 0, "scores": [{"helpfulness": {"a": [[[[[[[1]]]]]]]}}], "preferred": 0}
    assert client.post(path, json=nested).status_code == 400
    assert client.get("/healthz").status_code == 200


CHAT = [{"role": "user", "content": "my phone won't charge"}, {"role": "assistant", "content": "Did a restart help?"},
        {"role": "user", "content": "no, still broken"}]


def test_the_official_openai_client_gets_the_checked_reply_and_the_agent_fields(tmp_path, review):
    import openai

    agent = FakeAgent(0.0)
    app = create_app(agent, "qlora", review, tmp_path / "r.csv", token="s3cret")
    with live(app) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="s3cret")
        out = client.chat.completions.create(model="qlora", messages=CHAT, extra_body={"brand": "AppleSupport"})
        assert out.object == "chat.completion" and out.model == "qlora" and len(out.choices) == 1
        assert out.choices[0].message.role == "assistant" and out.choices[0].finish_reason == "stop"
        assert out.choices[0].message.content == "re: no, still broken"  # the agent's `reply`: what it sends
        assert out.model_extra["supportagent"] == {"brand": "AppleSupport"}  # the agent's other fields
        # the previous turn: the assistant message before the last, or the `previous` field over it
        client.chat.completions.create(model="supportagent", messages=CHAT[-1:],
                                       extra_body={"brand": "AppleSupport", "previous": "Which iOS version?"})
        assert [(i["text"], i["context"]) for i in agent.items] == [
            ("no, still broken", "Did a restart help?"), ("no, still broken", "Which iOS version?")]
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=f"{url}/v1", api_key="wrong").chat.completions.create(model="qlora", messages=CHAT)
        with pytest.raises(openai.UnprocessableEntityError, match="temperature"):
            client.chat.completions.create(model="qlora", messages=CHAT, temperature=0.2)


@pytest.mark.parametrize("body,status,says", [
    ({"messages": CHAT[:2]}, 422, "last message must be the customer's"),
    ({"messages": [{"role": "system", "content": "be rude"}, *CHAT]}, 422, "instructions are fixed"),
    ({"messages": []}, 422, "messages"),
    ({"messages": CHAT, "stream": True}, 422, "stream"),
    ({"messages": CHAT, "n": 3}, 422, "`n` 1"),
    ({"messages": CHAT, "model": "gpt-4o"}, 422, "serves 'qlora'"),
    ({"messages": CHAT, "max_tokens": 5}, 422, "max_tokens"),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]}, 422, "content"),
    ({"messages": [{"role": "user", "content": "x" * 2100}]}, 413, "over 2000 bytes"),
    ([{"messages": CHAT}], 422, "JSON object"),
])
def test_bad_chat_requests_get_a_4xx_with_a_message(client, body, status, says):
    r = client.post("/v1/chat/completions", json=body)
    assert r.status_code == status and says in r.json()["error"]["message"], r.text  # OpenAI's error shape
    assert r.json()["error"]["type"] == "invalid_request_error"


def test_the_review_page_can_show_the_full_configurations_committed_predictions(monkeypatch, tmp_path):
    """metrics/full/predictions holds the served method's and retrieval's replies of the GPU run: `serve
    --review-systems` shows those two, names hidden, where the params' default (both methods) would not load."""
    import uvicorn
    from conftest import ROOT
    from fastapi.testclient import TestClient

    from supportagent.__main__ import main

    apps = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: apps.append(app))
    main(["serve", "--no-model", "--predictions", str(ROOT / "metrics/full/predictions"), "--ratings",
          str(tmp_path / "r.csv"), "--review-systems", "qlora", "retrieval"])
    with TestClient(apps[0]) as c:
        item = c.get("/v1/review/next?reviewer=ana").json()
    assert item["total"] > 0 and len(item["item"]["replies"]) == 2 and "qlora" not in json.dumps(item)


def test_serve_with_a_continuously_batching_engine_steps_it_in_the_model_thread(monkeypatch):
    """With vLLM (a generator with `serve_forever`), the model thread steps the engine after the warm-up, replies
    run in `in_flight` other threads that feed it at once, and the loop is stopped when the server ends."""
    import supportagent.__main__ as cli
    import supportagent.app.server as server

    built, stepped, stopped, given = [], threading.Event(), [], {}

    class Generator:
        def serve_forever(self):
            stepped.thread = threading.get_ident()
            stepped.set()

        def stop(self):
            stopped.append(True)

    class Agent:
        method, generator = "qlora", Generator()

        def warm_up(self, batch_size):
            return 0.0

    monkeypatch.setattr(cli, "_agent", lambda params, args: built.append(threading.get_ident()) or Agent())
    monkeypatch.setattr(server, "create_app", lambda *a, **k: given.update(k) or object())
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: None)
    cli.main(["serve", "--in-flight", "3"])
    assert stepped.wait(5) and stepped.thread == built[0]
    assert given["limits"].in_flight == 3 and given["executor"]._max_workers == 3 and stopped == [True]
    name = given["executor"].submit(lambda: threading.current_thread().name).result()
    assert name.startswith("answer")  # not the model thread, which steps the engine
    given["executor"].shutdown()
    with pytest.raises(SystemExit, match="at least 1"):
        cli.main(["serve", "--in-flight", "0"])


def test_batches_in_flight_are_answered_at_once_and_each_gets_its_own_replies(tmp_path, review):
    """`Limits.in_flight` > 1 (vLLM): a second batch starts while the first is still being answered."""
    from concurrent.futures import ThreadPoolExecutor as Pool

    lock, active, most = threading.Lock(), [0], [0]

    def answer(items):
        with lock:
            active[0] += 1
            most[0] = max(most[0], active[0])
        try:
            return FakeAgent(0.3)(items)
        finally:
            with lock:
                active[0] -= 1

    for in_flight, overlapped in ((4, True), (1, False)):
        most[0] = 0
        limits = Limits(max_batch=1, in_flight=in_flight)
        app = create_app(answer, "qlora", review, tmp_path / "r.csv", limits=limits, executor=Pool(4))
        with live(app) as url, ThreadPoolExecutor(4) as pool:
            replies = list(pool.map(lambda i: httpx.post(f"{url}/v1/reply", json={"text": f"m{i}"}, timeout=30),
                                    range(4)))
        assert [r.json()["reply"] for r in replies] == [f"re: m{i}" for i in range(4)]
        assert (most[0] > 1) == overlapped  # in_flight 1: one batch at a time, as the eager engine needs
