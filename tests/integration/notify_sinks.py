"""Local stand-ins for a mail server and a webhook receiver, for the notification tests.

Both write what they receive into a directory, one JSON file per mail or request, so a test
reads the same evidence whether the sink runs in its own process (the integration tests) or
as a service inside the systemd sandbox (the system tests, which copy this file in and run it
with the container's python3: standard library only).

    python3 notify_sinks.py smtp PORT DIRECTORY [--reply CODE_TEXT]...
    python3 notify_sinks.py http PORT DIRECTORY [--status CODE]... [--delay SECONDS]

`--reply` scripts the answers to the end of DATA of the first transactions ("451 4.3.0 later",
"550 5.1.1 no"); later ones get 250. `--status` does the same for HTTP requests.
"""

from __future__ import annotations

import argparse
import json
import socketserver
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


class _Recorder:
    """Numbered JSON records in a directory, written atomically (readers poll for them)."""

    def __init__(self, directory: Path, prefix: str) -> None:
        self.directory = directory
        self.prefix = prefix
        self.count = 0
        self.lock = threading.Lock()
        directory.mkdir(parents=True, exist_ok=True)

    def record(self, data: dict[str, Any]) -> int:
        with self.lock:
            self.count += 1
            number = self.count
        path = self.directory / f"{self.prefix}-{number:03d}.json"
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(data, indent=1))
        temporary.replace(path)
        return number


def read_records(directory: Path, prefix: str) -> list[dict[str, Any]]:
    return [json.loads(path.read_text()) for path in sorted(directory.glob(f"{prefix}-*.json"))]


# ------------------------------------------------------------------------------ SMTP


class SmtpSink(socketserver.ThreadingTCPServer):
    """Just enough SMTP (RFC 5321) for smtplib: EHLO/HELO, MAIL, RCPT, DATA, RSET, QUIT."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int, directory: Path, replies: list[str] | None = None) -> None:
        super().__init__(("127.0.0.1", port), _SmtpHandler)
        self.mails = _Recorder(directory, "mail")
        self.attempts = _Recorder(directory, "attempt")
        self.replies = list(replies or [])
        self.replies_lock = threading.Lock()

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def next_reply(self) -> str:
        with self.replies_lock:
            return self.replies.pop(0) if self.replies else "250 2.0.0 queued"


class _SmtpHandler(socketserver.StreamRequestHandler):
    server: SmtpSink

    def send(self, line: str) -> None:
        self.wfile.write(line.encode() + b"\r\n")
        self.wfile.flush()

    def handle(self) -> None:
        self.send("220 sink ESMTP ready")
        sender: str | None = None
        recipients: list[str] = []
        while True:
            raw = self.rfile.readline(65536)
            if not raw:
                return
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            verb = line.split(" ", 1)[0].upper()
            if verb == "EHLO":
                self.send("250-sink")
                self.send("250-8BITMIME")
                self.send("250 SMTPUTF8")
            elif verb == "HELO":
                self.send("250 sink")
            elif verb == "MAIL":
                sender, recipients = _address(line), []
                self.send("250 2.1.0 ok")
            elif verb == "RCPT":
                recipients.append(_address(line))
                self.send("250 2.1.5 ok")
            elif verb == "DATA":
                self.send("354 end with <CRLF>.<CRLF>")
                data = self.read_data()
                reply = self.server.next_reply()
                self.server.attempts.record({"reply": reply})
                if reply.startswith("250"):
                    self.server.mails.record(
                        {"sender": sender, "recipients": recipients, "data": data}
                    )
                self.send(reply)
                sender, recipients = None, []
            elif verb in ("RSET", "NOOP"):
                sender, recipients = (None, []) if verb == "RSET" else (sender, recipients)
                self.send("250 2.0.0 ok")
            elif verb == "QUIT":
                self.send("221 2.0.0 bye")
                return
            else:
                self.send("502 5.5.2 not implemented")

    def read_data(self) -> str:
        lines = []
        while True:
            raw = self.rfile.readline(1 << 20)
            if not raw or raw in (b".\r\n", b".\n"):
                break
            if raw.startswith(b".."):
                raw = raw[1:]  # RFC 5321 4.5.2 dot-stuffing
            lines.append(raw)
        return b"".join(lines).decode("utf-8", "replace")


def _address(line: str) -> str:
    start, end = line.find("<"), line.find(">")
    return line[start + 1 : end] if 0 <= start < end else line.split(":", 1)[-1].strip()


# ------------------------------------------------------------------------------ HTTP


class HttpSink(ThreadingHTTPServer):
    """Records every POST; answers with the scripted statuses, then 200."""

    daemon_threads = True

    def __init__(
        self, port: int, directory: Path, statuses: list[int] | None = None, delay: float = 0.0
    ) -> None:
        super().__init__(("127.0.0.1", port), _HttpHandler)
        self.requests = _Recorder(directory, "request")
        self.statuses = list(statuses or [])
        self.statuses_lock = threading.Lock()
        self.delay = delay

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def next_status(self) -> int:
        with self.statuses_lock:
            return self.statuses.pop(0) if self.statuses else 200


class _HttpHandler(BaseHTTPRequestHandler):
    server: HttpSink

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length).decode("utf-8", "replace")
        status = self.server.next_status()
        self.server.requests.record(
            {
                "path": self.path,
                "headers": {key.lower(): value for key, value in self.headers.items()},
                "body": body,
                "status": status,
            }
        )
        if self.server.delay:
            time.sleep(self.server.delay)
        try:
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")
        except OSError:
            pass  # the client gave up waiting (the timeout tests)

    def log_message(self, format: str, *args: Any) -> None:
        pass


# ------------------------------------------------------------------------------ running


class Running:
    """Serve a sink in a background thread for the length of a `with` block."""

    def __init__(self, server: socketserver.BaseServer) -> None:
        self.server = server
        self.thread = threading.Thread(target=server.serve_forever, daemon=True)

    def __enter__(self) -> socketserver.BaseServer:
        self.thread.start()
        return self.server

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="notify_sinks.py")
    parser.add_argument("kind", choices=["smtp", "http"])
    parser.add_argument("port", type=int)
    parser.add_argument("directory", type=Path)
    parser.add_argument("--reply", action="append", default=[])
    parser.add_argument("--status", action="append", type=int, default=[])
    parser.add_argument("--delay", type=float, default=0.0)
    args = parser.parse_args(argv)
    server: socketserver.BaseServer
    if args.kind == "smtp":
        server = SmtpSink(args.port, args.directory, args.reply)
    else:
        server = HttpSink(args.port, args.directory, args.status, args.delay)
    print(f"{args.kind} sink listening on 127.0.0.1:{args.port}", flush=True)
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
