#!/usr/bin/env python3
"""A complete floatd client in Python, standard library only.

Written against docs/protocol.md: it says hello, acquires a lease (trying again
every 10 s while no seat is free or the server is unreachable), renews it when
the server says (half the lease), and releases it when done or on Ctrl-C / SIGTERM.

    python3 floatd_client.py --server licenses.example.com --product cad --hold 3600

Each step is printed as one JSON line, so scripts can follow along.

The lease token's signature is Ed25519; Python's standard library cannot verify
it, so this example checks the token's claims only. Verify the signature with a
library such as PyNaCl or cryptography (against the key `hello` returns, or one
you pinned) before trusting a token offline.
"""

import argparse
import base64
import getpass
import json
import signal
import socket
import sys
import time
import uuid

DEFAULT_PORT = 8989


class FloatdError(Exception):
    """A refusal from the server: `code` is the stable error code."""

    def __init__(self, code, message, reply=None):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.reply = reply or {}


def split_address(address):
    """`host`, `host:port` or `[v6addr]:port`; a bare host means port 8989."""
    if address.startswith("["):
        host, _, rest = address[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else DEFAULT_PORT
    if address.count(":") == 1:
        host, port = address.split(":")
        return host, int(port)
    return address, DEFAULT_PORT


class Connection:
    """One NDJSON connection: requests with ids, replies matched by id, pushed events kept aside."""

    def __init__(self, address, timeout=10.0):
        self.sock = socket.create_connection(split_address(address), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = self.sock.makefile("r", encoding="utf-8", newline="\n")
        self.next_id = 1
        self.events = []

    def request(self, op, **fields):
        request_id = self.next_id
        self.next_id += 1
        line = json.dumps({"op": op, "id": request_id, **fields}, separators=(",", ":")) + "\n"
        self.sock.sendall(line.encode("utf-8"))
        while True:
            text = self.reader.readline()
            if not text:
                raise ConnectionError("the server closed the connection")
            message = json.loads(text)
            if "event" in message:
                self.events.append(message)  # e.g. {"event":"revoked","lease":…}
                continue
            if message.get("id") != request_id:
                continue
            if not message.get("ok"):
                error = message.get("error", {})
                raise FloatdError(error.get("code", "INTERNAL"), error.get("message", ""), error)
            return message

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def token_claims(token):
    """The claims of a compact JWS (not verified: see the module docstring)."""
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def say(**fields):
    print(json.dumps(fields), flush=True)


class LeaseHolder:
    def __init__(self, server, product, user, host, instance, retry_seconds):
        self.server = server
        self.product = product
        self.user = user
        self.host = host
        self.instance = instance
        self.retry_seconds = retry_seconds
        self.conn = None
        self.lease = None

    def connect(self):
        self.conn = Connection(self.server)
        hello = {"v": 1, "client": {"user": self.user, "host": self.host, "instance": self.instance}}
        if self.product:
            hello["product"] = self.product
        reply = self.conn.request("hello", **hello)
        say(connected=self.server, server_version=reply.get("version"))

    def check(self, lease):
        claims = token_claims(lease["token"])
        if claims.get("jti") != lease["id"] or claims.get("user") != self.user or claims.get("instance") != self.instance:
            raise FloatdError("TOKEN_INVALID", "the lease token is not for this lease")
        return lease

    def acquire(self):
        """Blocks until a lease is held, retrying while no seat is free or the server is down."""
        while True:
            try:
                if self.conn is None:
                    self.connect()
                fields = {"product": self.product} if self.product else {}
                self.lease = self.check(self.conn.request("acquire", **fields)["lease"])
                say(acquired=self.lease["id"], product=self.lease["product"], renew_after_ms=self.lease["renewAfterMs"])
                return self.lease
            except FloatdError as err:
                if err.code not in ("NO_FREE_SEATS", "RULE_DENIED", "LICENSE_EXPIRED", "EVALUATION_EXPIRED", "NOT_ACTIVATED"):
                    raise
                say(denied=err.code, reason=err.reply.get("reason"), message=str(err), retry_in_s=self.retry_seconds)
            except OSError as err:
                self.conn = None
                say(unreachable=str(err), retry_in_s=self.retry_seconds)
            if self.retry_seconds <= 0:
                raise SystemExit(1)
            time.sleep(self.retry_seconds)

    def renew(self):
        """Renews; on a dropped connection reconnects; if the lease is gone, acquires again."""
        try:
            if self.conn is None:
                self.connect()
            self.lease = self.check(self.conn.request("renew", lease=self.lease["id"])["lease"])
            say(renewed=self.lease["id"], expires_in_ms=self.lease["expiresInMs"])
        except FloatdError as err:
            if err.code in ("LEASE_EXPIRED", "LEASE_NOT_FOUND", "LICENSE_EXPIRED"):
                say(lost=self.lease["id"], code=err.code)
                self.acquire()
            else:
                raise
        except OSError as err:
            self.conn = None
            say(unreachable=str(err))  # try again soon; the lease has time left

    def release(self):
        if self.lease is not None and self.conn is not None:
            try:
                self.conn.request("release", lease=self.lease["id"])
                say(released=self.lease["id"])
            except (OSError, FloatdError) as err:
                say(release_failed=str(err))
        self.lease = None
        if self.conn is not None:
            self.conn.close()


def main():
    parser = argparse.ArgumentParser(description="Hold a floatd lease for a while.")
    parser.add_argument("--server", required=True, help="host, host:port or [v6]:port (port 8989 by default)")
    parser.add_argument("--product")
    parser.add_argument("--user", default=getpass.getuser())
    parser.add_argument("--host", default=socket.gethostname())
    parser.add_argument("--instance", default=str(uuid.uuid4()), help="a stable id for this product instance")
    parser.add_argument("--hold", type=float, default=60.0, help="seconds to hold the lease")
    parser.add_argument("--retry-seconds", type=float, default=10.0, help="0 gives up at once")
    parser.add_argument("--renew-after-ms", type=int, help="renew sooner than the server asks (for testing)")
    args = parser.parse_args()

    holder = LeaseHolder(args.server, args.product, args.user, args.host, args.instance, args.retry_seconds)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        holder.acquire()
        # Deadlines on the monotonic clock: wall-clock jumps cannot make renewals late.
        end = time.monotonic() + args.hold
        while time.monotonic() < end:
            wait_ms = holder.lease["renewAfterMs"]
            if args.renew_after_ms is not None:
                wait_ms = min(wait_ms, args.renew_after_ms)
            time.sleep(max(0.0, min(wait_ms / 1000.0, end - time.monotonic())))
            if time.monotonic() < end:
                holder.renew()
    except KeyboardInterrupt:
        pass
    finally:
        holder.release()


if __name__ == "__main__":
    main()
