"""The agent over HTTP and the blind review page: `python -m supportagent serve`.

- `POST /v1/reply`: `{brand, text, context?, id?}` or a list of them -> the fields of `reply --json`. The model
  is loaded once; requests that arrive together are answered in one batch (`Batcher`).
- `POST /v1/chat/completions`: the same agent in the convention OpenAI clients speak (`ChatRequest`): the last
  message is the customer's (role `user`); the brand and the previous turn go in the fields `brand` and
  `previous` (or the previous turn as the `assistant` message before it). The checked reply is the assistant
  message; the agent's other fields (tags, escalation, path, flags) are under `supportagent`.
- `GET /healthz`: liveness, the served method, and how requests were batched.
- `GET /review` (page), `GET /v1/review/next`, `POST /v1/review/ratings`: the blind review of
  `review.systems`; ratings are appended to the ratings CSV (`review.py`).
Bound to 127.0.0.1 by default; bound wider, it requires a bearer token on everything but /healthz.
"""
from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import re
import time
import uuid
from concurrent.futures import Executor, ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Callable, TypeVar

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from ..evaluation.review import CRITERIA, TIE, ReviewSet, append_ratings, read_ratings

T = TypeVar("T")


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 256 * 1024  # a request body larger than this gets 413
    max_items: int = 64  # messages in one request
    max_text_chars: int = (
        20_000  # longer `text` is refused; the agent truncates at rules.max_message_chars and flags it
    )
    max_batch: int = 16  # messages the model answers at once
    max_wait_ms: float = 50.0  # how long a batch waits for more messages under concurrent traffic (Batcher)
    in_flight: int = 1  # batches answered at once (more than 1 for an engine that batches continuously: vLLM)


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    text: str
    brand: str = ""
    context: str = ""
    id: str | int | None = None
    method: str | None = None  # if given, must be the served method


_MESSAGES = TypeAdapter(list[Message])
CHAT_PATH = "/v1/chat/completions"


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    role: str
    content: str


class ChatRequest(BaseModel):
    """OpenAI's chat completion request, the fields the agent reads: sampling settings are the served params'
    (`evaluate.*`), so `temperature`, `max_tokens` and the like are refused rather than ignored."""
    model_config = ConfigDict(extra="forbid", strict=True)
    messages: list[ChatMessage] = Field(min_length=1)
    model: str | None = None  # the served method, or "supportagent"
    brand: str = ""
    previous: str | None = None  # the turn the customer answers; default: the assistant message before the last
    stream: bool = False
    n: int = 1
    user: str | None = None


def chat_item(req: ChatRequest) -> tuple[dict | None, str | None]:
    """The agent's input for a chat request, or the reason it cannot be answered."""
    roles = {m.role for m in req.messages}
    if roles - {"user", "assistant"}:
        return None, (f"role(s) {sorted(roles - {'user', 'assistant'})}: the agent's instructions are fixed "
                      "(params: model.system_prompt); send the customer's turns as `user` and the brand's as "
                      "`assistant`")
    if req.messages[-1].role != "user":
        return None, "the last message must be the customer's (role `user`): it is the one answered"
    if req.stream or req.n != 1:
        return None, "one checked reply per request: `stream` must be false and `n` 1"
    previous = req.previous
    if previous is None:
        earlier = [m.content for m in req.messages[:-1] if m.role == "assistant"]
        previous = earlier[-1] if earlier else ""
    return {"brand": req.brand, "text": req.messages[-1].content, "context": previous}, None
_REVIEWER = re.compile(r"^[\w .@-]{1,40}$")


class RatingRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    reviewer: str
    item: int
    scores: list[dict[str, int]] = Field(min_length=2)
    preferred: int | str


def model_thread(load: Callable[[], T]) -> tuple[ThreadPoolExecutor, T]:
    """One worker thread, and what `load` (e.g. loading the agent) returns when run in it. Give the thread to
    `create_app` so that every answer runs there too: torch's CPU (OpenMP) thread pool runs at full speed in the
    thread that first used it, and replies computed in another thread than the one that loaded the model were
    markedly slower on 2 cores (benchmarks/results/serve_load/; tests/test_server.py checks the thread)."""
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
    return pool, pool.submit(load).result()


class Batcher:
    """Collects the messages of concurrent requests into batches for `answer(messages) -> results` (run in the
    `executor`'s thread, default: asyncio's worker threads, one batch at a time), at most `max_batch` messages each
    (more than that from one request are answered whole). A batch starts once it is full, or when no message came
    for a short wait: `max_wait_ms` (at most four of them in all) when the last batch was shared by several messages
    (clients answered together send again together, and should not split into half batches), about a millisecond
    when traffic is one request at a time. With `in_flight` > 1, up to that many batches are answered at once (in
    the executor's threads), for an engine that joins concurrent requests into its running batch (vLLM)."""

    def __init__(self, answer: Callable[[list[dict]], list], max_batch: int, max_wait_ms: float,
                 executor: Executor | None = None, in_flight: int = 1):
        self.answer, self.max_batch, self.max_wait, self.executor = answer, max_batch, max_wait_ms / 1000, executor
        self.queue: asyncio.Queue = asyncio.Queue()
        self.batches = self.messages = self.last = 0
        self.slots, self.tasks = asyncio.Semaphore(in_flight), set()

    async def submit(self, messages: list[dict]) -> list:
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((messages, future))
        return await future

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self.slots.acquire()  # released when a batch is answered
            batch = [await self.queue.get()]
            size, wait = len(batch[0][0]), self.max_wait if self.last > 1 else min(self.max_wait, 0.001)
            start = loop.time()
            deadline = start + wait
            while size < self.max_batch:
                try:
                    nxt = self.queue.get_nowait() if not self.queue.empty() else \
                        await asyncio.wait_for(self.queue.get(), max(deadline - loop.time(), 0))
                except (asyncio.TimeoutError, TimeoutError):
                    break
                batch.append(nxt)
                size += len(nxt[0])
                deadline = min(loop.time() + wait, start + 4 * wait)  # while messages trickle in, up to 4 waits
            self.last = size
            task = asyncio.create_task(self._answer(batch))
            self.tasks.add(task)  # held until done (the loop keeps only weak references)
            task.add_done_callback(self.tasks.discard)

    async def _answer(self, batch: list) -> None:
        flat = [m for messages, _ in batch for m in messages]
        try:
            results = await asyncio.get_running_loop().run_in_executor(self.executor, self.answer, flat)
        except Exception as err:  # noqa: BLE001 - handed to every waiting request
            for _, future in batch:
                if not future.done():
                    future.set_exception(err)
            return
        finally:
            self.slots.release()
        self.batches, self.messages = self.batches + 1, self.messages + len(flat)
        start = 0
        for messages, future in batch:
            if not future.done():
                future.set_result(results[start:start + len(messages)])
            start += len(messages)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


MAX_DEPTH = 8  # a request is a list of flat objects: two levels; a rating's scores, three


def nesting(obj) -> int:
    """How deep lists and objects nest in `obj` (0 for a plain value), without recursion."""
    deepest, todo = 0, [(obj, 1)]
    while todo:
        x, d = todo.pop()
        if isinstance(x, (list, dict)):
            deepest = max(deepest, d)
            if d <= MAX_DEPTH:  # deeper is refused anyway: stop looking
                todo += [(v, d + 1) for v in (x.values() if isinstance(x, dict) else x)]
    return deepest


def create_app(answer: Callable[[list[dict]], list] | None, method: str | None, review: ReviewSet | None,
               ratings_path: str | Path, token: str | None = None, limits: Limits = Limits(),
               executor: Executor | None = None):
    """`answer`: messages -> objects with `to_dict()` (the agent's `reply_many`), or None to serve the review
    page only; `executor`: where it runs (`model_thread`'s, for a model loaded there). `review`: the review items,
    or None when the predictions are not there."""
    batcher = Batcher(answer, limits.max_batch, limits.max_wait_ms, executor, limits.in_flight) if answer else None

    @asynccontextmanager
    async def lifespan(app):
        task = asyncio.create_task(batcher.run()) if batcher else None
        yield
        if task:
            task.cancel()

    app = FastAPI(title="supportagent", lifespan=lifespan, docs_url=None, redoc_url=None)

    def error(status: int, message: str, chat: bool = False, **extra) -> JSONResponse:
        """`{"error": message}`; on the chat endpoint in OpenAI's shape, which its clients read the message from."""
        if chat:
            kind = "authentication_error" if status == 401 else "invalid_request_error"
            return JSONResponse({"error": {"message": message, "type": kind, "param": None, "code": None}},
                                status_code=status)
        return JSONResponse({"error": message, **extra}, status_code=status)

    @app.middleware("http")
    async def guard(request: Request, call_next):
        chat = request.url.path == CHAT_PATH
        if token and request.url.path != "/healthz":
            # the page itself is public: it holds no data, and asks for the token to call the API
            given = request.headers.get("authorization", "")
            if request.url.path != "/review" and not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                return error(401, "missing or wrong bearer token (Authorization: Bearer <token>)", chat)
        size = request.headers.get("content-length")
        if size is not None and (not size.isdigit() or int(size) > limits.max_body_bytes):
            return error(413, f"request body over {limits.max_body_bytes} bytes", chat)
        return await call_next(request)

    async def body(request: Request) -> tuple[object | None, JSONResponse | None]:
        chat = request.url.path == CHAT_PATH
        raw = b""
        async for chunk in request.stream():  # also bounded when no Content-Length was sent
            raw += chunk
            if len(raw) > limits.max_body_bytes:
                return None, error(413, f"request body over {limits.max_body_bytes} bytes", chat)
        too_deep = (f"the body nests lists or objects deeper than {MAX_DEPTH} levels: send one message (or rating) "
                    "as a flat object, or a list of them")
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            return None, error(400, f"the body is not JSON: {err}", chat)
        except RecursionError:  # Python's parser recurses once per level
            return None, error(400, too_deep, chat)
        return (None, error(400, too_deep, chat)) if nesting(data) > MAX_DEPTH else (data, None)

    def invalid(err: ValidationError, chat: bool = False) -> JSONResponse:
        problems = [f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in err.errors(include_url=False)]
        return error(422, "invalid request: " + "; ".join(problems[:10]), chat)

    @app.get("/healthz")
    async def healthz():
        stats = {"batches": batcher.batches, "messages": batcher.messages} if batcher else {}
        return {"status": "ok", "method": method, "review_items": len(review.items) if review else 0, **stats}

    @app.post("/v1/reply")
    async def reply(request: Request):
        if batcher is None:
            return error(503, "this server was started without a model (--no-model): only the review page runs")
        data, err = await body(request)
        if err:
            return err
        if not isinstance(data, (dict, list)):
            return error(422, "send one message as a JSON object ({\"text\": ...}) or a list of them")
        try:
            messages = _MESSAGES.validate_python(data if isinstance(data, list) else [data])
        except ValidationError as verr:
            return invalid(verr)
        if not messages:
            return error(422, "an empty list: send at least one message")
        if len(messages) > limits.max_items:
            return error(413, f"{len(messages)} messages in one request; at most {limits.max_items}")
        for i, m in enumerate(messages):
            if m.method is not None and m.method != method:
                return error(422, f"message {i}: method '{m.method}' is not served here; this server serves '{method}'")
            if len(m.text) > limits.max_text_chars or len(m.context) > limits.max_text_chars:
                return error(413, f"message {i}: text or context over {limits.max_text_chars} characters")
        results = await batcher.submit([{"brand": m.brand, "text": m.text, "context": m.context} for m in messages])
        out = [({"id": m.id} if m.id is not None else {}) | r.to_dict() for m, r in zip(messages, results)]
        return out if isinstance(data, list) else out[0]

    @app.post(CHAT_PATH)
    async def chat_completions(request: Request):
        if batcher is None:
            return error(503, "this server was started without a model (--no-model): only the review page runs", True)
        data, err = await body(request)
        if err:
            return err
        if not isinstance(data, dict):
            return error(422, "send a chat completion request as a JSON object ({\"messages\": [...]})", True)
        try:
            req = ChatRequest.model_validate(data)
        except ValidationError as verr:
            return invalid(verr, True)
        if req.model not in (None, method, "supportagent"):
            return error(422, f"model '{req.model}' is not served here; this server serves '{method}' "
                              "(or ask for 'supportagent')", True)
        item, problem = chat_item(req)
        if problem:
            return error(422, problem, True)
        if len(item["text"]) > limits.max_text_chars or len(item["context"]) > limits.max_text_chars:
            return error(413, f"the message or previous turn is over {limits.max_text_chars} characters", True)
        result, = await batcher.submit([item])
        fields = result.to_dict()
        return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
                "model": method,
                "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                             "message": {"role": "assistant", "content": fields["reply"]}}],
                "supportagent": {k: v for k, v in fields.items() if k != "reply"}}

    @app.get("/review")
    async def review_page():
        return HTMLResponse(resources.files(__package__).joinpath("static/review.html").read_text())

    def next_item(reviewer: str) -> dict:
        done = review.done(read_ratings(ratings_path), reviewer)
        todo = [it for it in review.items if it.pair_id not in done]
        out = {"reviewer": reviewer, "rated": len(review.items) - len(todo), "total": len(review.items), "item": None,
               "criteria": list(CRITERIA)}
        if todo:
            it = todo[0]
            out["item"] = {"id": it.pair_id, "brand": it.brand, "message": it.message, "context": it.context,
                           "tags": it.tags, "replies": [it.replies[s[0]] for s in review.slots(reviewer, it.pair_id)]}
        return out

    def check_reviewer(name: str) -> JSONResponse | None:
        if review is None:
            return error(409, "no predictions to review: run `dvc repro` (reports/predictions/) first")
        if not _REVIEWER.match(name or ""):
            return error(422, "reviewer: 1-40 letters, digits, spaces or . @ - _")
        return None

    @app.get("/v1/review/next")
    async def review_next(reviewer: str = ""):
        return check_reviewer(reviewer) or next_item(reviewer)

    @app.post("/v1/review/ratings")
    async def review_rate(request: Request):
        data, err = await body(request)
        if err:
            return err
        try:
            r = RatingRequest.model_validate(data)
        except ValidationError as verr:
            return invalid(verr)
        if (bad := check_reviewer(r.reviewer)) is not None:
            return bad
        if review.item(r.item) is None:
            return error(404, f"item {r.item} is not in this review")
        if isinstance(r.preferred, str) and r.preferred != TIE:
            return error(422, f"preferred: a reply's position (0, 1, ...) or '{TIE}'")
        try:
            rows = review.rows(r.reviewer, r.item, r.scores, r.preferred)
        except ValueError as verr:
            return error(422, str(verr))
        await asyncio.to_thread(append_ratings, ratings_path, rows)
        return next_item(r.reviewer)

    return app
