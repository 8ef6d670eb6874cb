"""A fake Telegram Bot API server on 127.0.0.1 for driving bots end to end without the network.

It speaks the subset of the Bot API a generation bot uses, shaped like the real one (JSON `{"ok": ..., "result":
...}`, `error_code`/`description`/`parameters.retry_after` on errors), with the real limits that matter: 50 MB
uploads (413), 20 MB downloads through getFile, "message is not modified" on identical edits. Tests push user
updates (`push_text`, `push_callback`, `push_voice`...), inject 403 (`block`) and 429 (`throttle`), hold uploads
on the wire (`hold`: a bot killed meanwhile never completes them) and read every call the bot made (`calls`,
`wait_for`). Parameters are read from the query string and from url-encoded or
multipart bodies, since pyTelegramBotAPI sends them in the query string even on POST.
"""
from __future__ import annotations

import email.parser
import email.policy
import email.utils
import itertools
import json
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

UPLOAD_LIMIT = 50 * 1024 * 1024
DOWNLOAD_LIMIT = 20 * 1024 * 1024
BOT_ID = 999_000


@dataclass
class Call:
    """One Bot API call the bot made: method name, parameters (strings) and uploaded files (name -> bytes)."""

    method: str
    params: dict[str, str]
    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)
    at: float = field(default_factory=time.monotonic)
    status: int = 200
    result: Any = None

    @property
    def chat_id(self) -> int | None:
        raw = self.params.get("chat_id")
        return int(raw) if raw not in (None, "") else None


class FakeTelegram:
    """The fake server. Use as a context manager, or call `start()` / `stop()`."""

    def __init__(self, token: str = "123456:TEST-token") -> None:
        self.token = token
        self.calls: list[Call] = []
        self.polls = 0
        """How many getUpdates calls arrived (the bot is polling once this is above zero)."""
        self.upload_limit = UPLOAD_LIMIT
        self._lock = threading.Condition()
        self._updates: list[dict[str, Any]] = []
        self._update_ids = itertools.count(1)
        self._message_ids: dict[int, itertools.count] = {}
        self.messages: dict[tuple[int, int], dict[str, Any]] = {}
        self.files: dict[str, bytes] = {}
        self.blocked: set[int] = set()
        self._throttles: list[tuple[str, int, int]] = []  # (method, retry_after, times left)
        self._holding: set[str] = set()
        self.held = 0
        """How many calls wait in `hold` right now."""
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-telegram", daemon=True)

    # --- life cycle ----------------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def api_url(self) -> str:
        """A telebot `apihelper.API_URL` template ({0} = token, {1} = method)."""
        return self.base_url + "/bot{0}/{1}"

    @property
    def file_url(self) -> str:
        return self.base_url + "/file/bot{0}/{1}"

    def start(self) -> "FakeTelegram":
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._lock:
            self._lock.notify_all()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "FakeTelegram":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- what users do -------------------------------------------------------------------------------------
    def _user(self, user_id: int) -> dict[str, Any]:
        return {"id": user_id, "is_bot": False, "first_name": f"User{user_id}", "username": f"user{user_id}"}

    def _push(self, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            update = {"update_id": next(self._update_ids), kind: payload}
            self._updates.append(update)
            self._lock.notify_all()
        return payload

    def _user_message(self, user_id: int, chat_id: int | None, **content: Any) -> dict[str, Any]:
        chat_id = user_id if chat_id is None else chat_id
        message = {"message_id": self._next_message_id(chat_id), "date": int(time.time()),
                   "chat": {"id": chat_id, "type": "private" if chat_id == user_id else "group"},
                   "from": self._user(user_id), **content}
        return self._push("message", message)

    def push_text(self, user_id: int, text: str, chat_id: int | None = None) -> dict[str, Any]:
        """A text message from a user (commands included: "/start")."""
        entities = [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}] if text.startswith("/") else []
        extra = {"entities": entities} if entities else {}
        return self._user_message(user_id, chat_id, text=text, **extra)

    def push_callback(self, user_id: int, message: dict[str, Any] | Call, data: str) -> None:
        """A press on an inline button of `message` (a message dict the bot sent, or the Call that sent it)."""
        if isinstance(message, Call):
            message = self.result_of(message)
        self._push("callback_query", {"id": str(next(self._update_ids) + 10_000), "from": self._user(user_id),
                                      "message": message, "chat_instance": "ci", "data": data})

    def add_file(self, data: bytes, name: str = "file") -> tuple[str, str]:
        """Store a file users can send; returns (file_id, file_unique_id)."""
        with self._lock:
            file_id = f"F{len(self.files) + 1}{name}"
            self.files[file_id] = data
        return file_id, file_id + "u"

    def push_voice(self, user_id: int, data: bytes, duration: int = 1, size: int | None = None,
                   caption: str | None = None) -> dict[str, Any]:
        file_id, unique = self.add_file(data, "voice.ogg")
        voice = {"file_id": file_id, "file_unique_id": unique, "duration": duration, "mime_type": "audio/ogg",
                 "file_size": len(data) if size is None else size}
        extra = {"caption": caption} if caption else {}
        return self._user_message(user_id, None, voice=voice, **extra)

    def push_audio(self, user_id: int, data: bytes, name: str = "clip.wav", duration: int = 1,
                   size: int | None = None, caption: str | None = None) -> dict[str, Any]:
        file_id, unique = self.add_file(data, name)
        audio = {"file_id": file_id, "file_unique_id": unique, "duration": duration, "file_name": name,
                 "mime_type": "audio/x-wav", "file_size": len(data) if size is None else size}
        extra = {"caption": caption} if caption else {}
        return self._user_message(user_id, None, audio=audio, **extra)

    def push_document(self, user_id: int, data: bytes, name: str, mime: str, size: int | None = None) -> dict[str, Any]:
        file_id, unique = self.add_file(data, name)
        document = {"file_id": file_id, "file_unique_id": unique, "file_name": name, "mime_type": mime,
                    "file_size": len(data) if size is None else size}
        return self._user_message(user_id, None, document=document)

    def push_sticker(self, user_id: int) -> dict[str, Any]:
        sticker = {"file_id": "S1", "file_unique_id": "S1u", "type": "regular", "width": 512, "height": 512,
                   "is_animated": False, "is_video": False}
        return self._user_message(user_id, None, sticker=sticker)

    def push_photo(self, user_id: int) -> dict[str, Any]:
        photo = [{"file_id": "P1", "file_unique_id": "P1u", "width": 90, "height": 90, "file_size": 1000}]
        return self._user_message(user_id, None, photo=photo)

    # --- faults --------------------------------------------------------------------------------------------
    def block(self, chat_id: int) -> None:
        """The user blocked the bot: every call aimed at this chat answers 403."""
        with self._lock:
            self.blocked.add(chat_id)

    def throttle(self, method: str, retry_after: int = 1, times: int = 1) -> None:
        """The next `times` calls of `method` answer 429 with `retry_after`."""
        with self._lock:
            self._throttles.append((method, retry_after, times))

    def hold(self, *methods: str) -> None:
        """Calls of `methods` stay "on the wire" until `release`: like a slow upload, one whose bot dies meanwhile
        never reaches the server (Telegram acts only on a complete request), one whose bot lives on goes through."""
        with self._lock:
            self._holding.update(methods)

    def release(self) -> None:
        with self._lock:
            self._holding.clear()
            self._lock.notify_all()

    def wait_held(self, count: int, timeout: float = 10.0) -> None:
        with self._lock:
            assert self._lock.wait_for(lambda: self.held >= count, timeout), f"{self.held} of {count} calls held"

    def _gate(self, method: str) -> None:
        with self._lock:
            if method not in self._holding:
                return
            self.held += 1
            self._lock.notify_all()
            self._lock.wait_for(lambda: method not in self._holding)
            self.held -= 1

    @staticmethod
    def _peer_gone(http: BaseHTTPRequestHandler) -> bool:
        """The client closed its side (it was killed): what it sent while held never arrived."""
        try:
            return http.connection.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            return True

    # --- what the bot did ----------------------------------------------------------------------------------
    def calls_of(self, method: str, chat_id: int | None = None) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.method == method and c.status == 200
                    and (chat_id is None or c.chat_id == chat_id)]

    def wait_for(self, predicate: Callable[[Call], bool], count: int = 1, timeout: float = 10.0) -> list[Call]:
        """Wait until `count` successful calls satisfy `predicate`; AssertionError with the call log otherwise."""
        end = time.monotonic() + timeout
        with self._lock:
            while True:
                found = [c for c in self.calls if c.status == 200 and predicate(c)]
                if len(found) >= count:
                    return found
                remaining = end - time.monotonic()
                if remaining <= 0:
                    log = "\n".join(f"  {c.status} {c.method} {c.params}" for c in self.calls[-40:])
                    raise AssertionError(f"only {len(found)} of {count} expected calls after {timeout} s:\n{log}")
                self._lock.wait(remaining)

    def wait_method(self, method: str, chat_id: int | None = None, count: int = 1, timeout: float = 10.0,
                    text: str | None = None) -> list[Call]:
        """Wait for `count` calls of `method` (to `chat_id`, whose text/caption contains `text`)."""
        def match(c: Call) -> bool:
            body = c.params.get("text", "") + c.params.get("caption", "")
            return (c.method == method and (chat_id is None or c.chat_id == chat_id)
                    and (text is None or text in body))
        return self.wait_for(match, count, timeout)

    def result_of(self, call: Call) -> dict[str, Any]:
        """The message object the server returned for a send call."""
        return call.result

    # --- the server ----------------------------------------------------------------------------------------
    def _next_message_id(self, chat_id: int) -> int:
        with self._lock:
            counter = self._message_ids.setdefault(chat_id, itertools.count(1))
            return next(counter)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:
                fake._serve(self)

            do_POST = do_GET

        return Handler

    def _serve(self, http: BaseHTTPRequestHandler) -> None:
        url = urllib.parse.urlsplit(http.path)
        self._gate(url.path.rsplit("/", 1)[-1])
        length = int(http.headers.get("Content-Length") or 0)
        if length > self.upload_limit:
            http.rfile.read(length)
            with self._lock:
                self.calls.append(Call(url.path.rsplit("/", 1)[-1], {}, status=413))
                self._lock.notify_all()
            return self._reply(http, 413, {"ok": False, "error_code": 413, "description": "Request Entity Too Large"})
        body = http.rfile.read(length) if length else b""
        if len(body) < length or self._peer_gone(http):
            return  # the upload never completed
        file_prefix = f"/file/bot{self.token}/"
        if url.path.startswith(file_prefix):
            data = self.files.get(urllib.parse.unquote(url.path[len(file_prefix):]))
            if data is None:
                return self._reply(http, 404, {"ok": False, "error_code": 404, "description": "Not Found"})
            return self._reply_raw(http, 200, data, "application/octet-stream")
        prefix = f"/bot{self.token}/"
        if not url.path.startswith(prefix):
            return self._reply(http, 401, {"ok": False, "error_code": 401, "description": "Unauthorized"})
        method = url.path[len(prefix):]
        params = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query, keep_blank_values=True).items()}
        files: dict[str, tuple[str, bytes]] = {}
        ctype = http.headers.get("Content-Type", "")
        if ctype.startswith("multipart/form-data"):
            files = self._parse_multipart(ctype, body, params)
        elif ctype.startswith("application/x-www-form-urlencoded") and body:
            params.update({k: v[-1] for k, v in urllib.parse.parse_qs(body.decode()).items()})
        call = Call(method, params, files)
        status, payload = self._dispatch(call)
        call.status = status
        if method != "getUpdates" or payload.get("result"):
            with self._lock:
                self.calls.append(call)
                self._lock.notify_all()
        self._reply(http, status, payload)

    @staticmethod
    def _parse_multipart(ctype: str, body: bytes, params: dict[str, str]) -> dict[str, tuple[str, bytes]]:
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
            b"Content-Type: " + ctype.encode() + b"\r\n\r\n" + body)
        files: dict[str, tuple[str, bytes]] = {}
        for part in message.iter_parts():
            # An RFC 2231 parameter comes back as a (charset, language, value) tuple; collapse it to the text.
            name = email.utils.collapse_rfc2231_value(part.get_param("name", "", header="content-disposition"))
            payload = part.get_payload(decode=True)  # the part's bytes; None when it has no body
            data = payload if isinstance(payload, bytes) else b""
            filename = part.get_filename()
            if filename is not None:
                files[name] = (filename, data)
            else:
                params[name] = data.decode()
        return files

    def _reply(self, http: BaseHTTPRequestHandler, status: int, payload: dict[str, Any]) -> None:
        self._reply_raw(http, status, json.dumps(payload).encode(), "application/json")

    @staticmethod
    def _reply_raw(http: BaseHTTPRequestHandler, status: int, data: bytes, ctype: str) -> None:
        try:
            http.send_response(status)
            http.send_header("Content-Type", ctype)
            http.send_header("Content-Length", str(len(data)))
            http.end_headers()
            http.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass

    @staticmethod
    def _error(code: int, description: str, **parameters: Any) -> tuple[int, dict[str, Any]]:
        payload: dict[str, Any] = {"ok": False, "error_code": code, "description": description}
        if parameters:
            payload["parameters"] = parameters
        return code, payload

    def _fault(self, call: Call) -> tuple[int, dict[str, Any]] | None:
        with self._lock:
            for i, (method, retry_after, times) in enumerate(self._throttles):
                if method == call.method:
                    if times <= 1:
                        del self._throttles[i]
                    else:
                        self._throttles[i] = (method, retry_after, times - 1)
                    return self._error(429, f"Too Many Requests: retry after {retry_after}", retry_after=retry_after)
            if call.chat_id is not None and call.chat_id in self.blocked:
                return self._error(403, "Forbidden: bot was blocked by the user")
        return None

    def _dispatch(self, call: Call) -> tuple[int, dict[str, Any]]:
        handler = getattr(self, "_api_" + call.method, None)
        if handler is None:
            return self._error(404, "Not Found: method not found")
        fault = self._fault(call) if call.method != "getUpdates" else None
        if fault is not None:
            return fault
        result = handler(call)
        if isinstance(result, tuple):
            return result
        call.result = result
        return 200, {"ok": True, "result": result}

    def _api_getMe(self, call: Call) -> Any:
        return {"id": BOT_ID, "is_bot": True, "first_name": "TAG", "username": "tag_test_bot"}

    def _api_getUpdates(self, call: Call) -> Any:
        offset = int(call.params.get("offset") or 0)
        timeout = float(call.params.get("timeout") or 0)
        end = time.monotonic() + timeout
        with self._lock:
            self.polls += 1
            self._lock.notify_all()
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
            while not self._updates and time.monotonic() < end:
                self._lock.wait(end - time.monotonic())
            return list(self._updates[: int(call.params.get("limit") or 100)])

    def _api_setMyCommands(self, call: Call) -> Any:
        json.loads(call.params["commands"])
        return True

    def _bot_message(self, chat_id: int, **content: Any) -> dict[str, Any]:
        message = {"message_id": self._next_message_id(chat_id), "date": int(time.time()),
                   "chat": {"id": chat_id, "type": "private"},
                   "from": {"id": BOT_ID, "is_bot": True, "first_name": "TAG"}, **content}
        if "reply_markup" in message:
            message["reply_markup"] = json.loads(message["reply_markup"])
        with self._lock:
            self.messages[(chat_id, message["message_id"])] = message
        return message

    def _api_sendMessage(self, call: Call) -> Any:
        text = call.params.get("text", "")
        if not text.strip():
            return self._error(400, "Bad Request: message text is empty")
        if len(text) > 4096:
            return self._error(400, "Bad Request: message is too long")
        extra = {"reply_markup": call.params["reply_markup"]} if "reply_markup" in call.params else {}
        return self._bot_message(int(call.params["chat_id"]), text=text, **extra)

    def _api_editMessageText(self, call: Call) -> Any:
        key = (int(call.params["chat_id"]), int(call.params["message_id"]))
        with self._lock:
            message = self.messages.get(key)
            if message is None:
                return self._error(400, "Bad Request: message to edit not found")
            if message.get("text") == call.params.get("text") and "reply_markup" not in call.params:
                return self._error(400, "Bad Request: message is not modified: specified new message content "
                                        "and reply markup are exactly the same")
            message["text"] = call.params.get("text", "")
            if "reply_markup" in call.params:  # as on Telegram: an edit without a keyboard removes the old one
                message["reply_markup"] = json.loads(call.params["reply_markup"])
            else:
                message.pop("reply_markup", None)
            return dict(message)

    def _api_deleteMessage(self, call: Call) -> Any:
        key = (int(call.params["chat_id"]), int(call.params["message_id"]))
        with self._lock:
            if self.messages.pop(key, None) is None:
                return self._error(400, "Bad Request: message to delete not found")
        return True

    def _api_answerCallbackQuery(self, call: Call) -> Any:
        return True

    def _api_sendChatAction(self, call: Call) -> Any:
        return True

    def _send_file(self, call: Call, field_name: str, kind: str) -> Any:
        if field_name not in call.files:
            return self._error(400, f"Bad Request: there is no {field_name} in the request")
        name, data = call.files[field_name]
        caption = call.params.get("caption", "")
        if len(caption) > 1024:
            return self._error(400, "Bad Request: message caption is too long")
        file_id, unique = self.add_file(data, name)
        content: dict[str, object] = {
            kind: {"file_id": file_id, "file_unique_id": unique, "file_size": len(data),
                   **({"duration": int(call.params.get("duration", 0))} if kind != "document" else {}),
                   **({"file_name": name} if kind != "voice" else {})}}
        if caption:
            content["caption"] = caption
        if "reply_markup" in call.params:
            content["reply_markup"] = call.params["reply_markup"]
        return self._bot_message(int(call.params["chat_id"]), **content)

    def _api_sendVoice(self, call: Call) -> Any:
        return self._send_file(call, "voice", "voice")

    def _api_sendAudio(self, call: Call) -> Any:
        return self._send_file(call, "audio", "audio")

    def _api_sendDocument(self, call: Call) -> Any:
        return self._send_file(call, "document", "document")

    def _api_getFile(self, call: Call) -> Any:
        file_id = call.params.get("file_id", "")
        data = self.files.get(file_id)
        if data is None:
            return self._error(400, "Bad Request: invalid file_id")
        if len(data) > DOWNLOAD_LIMIT:
            return self._error(400, "Bad Request: file is too big")
        return {"file_id": file_id, "file_unique_id": file_id + "u", "file_size": len(data), "file_path": file_id}
