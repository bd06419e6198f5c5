#!/usr/bin/env python3
"""A complete floatd client in Python, standard library only.

Written against docs/protocol.md, it does what a product instance should do:

- say hello and acquire a lease, trying again every --retry-seconds (10 s) while
  no seat is free or the server is unreachable (0: give up at once); refusals
  that waiting cannot fix (UNKNOWN_PRODUCT, BAD_REQUEST, ...) end it at once;
- renew the lease when the server says (renewAfterMs, half the lease); when a
  renewal fails, try again after a few seconds (jittered back-off) until the
  lease itself runs out, so a server outage shorter than the time left costs
  nothing; only then report the lease lost and go back to acquiring;
- listen for what the server pushes: a lease it revoked or expired is reported
  as such, and a new one is sought;
- release the lease when --hold seconds are over, or on Ctrl-C / SIGTERM.

    python3 floatd_client.py --server licenses.example.com --product cad --hold 3600

--server may name several servers, the nodes of one floatd cluster: a comma-
separated list (or --server again), and a name that resolves to several
addresses counts as several servers. The client holds its lease through one;
when that one drops the connection, cannot be reached, or answers UNAVAILABLE,
SUSPENDED or SHUTTING_DOWN, it renews the same lease (same id, same secret) on
the next, after a short jittered back-off (below 0.1 s, the bound doubling up
to 5 s), so the loss of a node costs nothing while the lease has time left:

    python3 floatd_client.py --server lic-a.example.com,lic-b.example.com --product cad

With --tls it speaks the same protocol inside TLS (a floatd listener written
tls://HOST:PORT, port 8991 by default), checking the server's certificate
against --ca FILE (the system's CAs without it) and, if the server asks for
one, showing the client certificate --cert FILE with its key --key FILE:

    python3 floatd_client.py --server licenses.example.com --tls --ca ca.pem --product cad

--hold stands in for a product session: the client runs that many seconds from
its start, holding a lease whenever it can get one, and then stops.

Each step is printed as one JSON line, so scripts can follow along (the lines
are listed in docs/client.md). Exit status: 0 when it held a lease to the end
and released it (or tried to); 1 when it ended without one (refused for good,
retrying off, or the hold time ran out first); 2 for a bad command line;
128 + the signal number when stopped by SIGINT or SIGTERM (after releasing).

The lease token's signature is Ed25519; Python's standard library cannot verify
it, so by default this example checks the token's claims only. Given the
vendor's public key (--vendor-public-key vendor-public.jwk, which needs the
`cryptography` package), it accepts only a lease that chains to the vendor, as
LeaseClient's vendorPublicKey does: the license key in the lease is signed by
the vendor and is for this product, the activation beside it is signed by the
vendor and names the server key `hello` announced, and the lease token is
signed by that key and comes from that license key's pool. A server the vendor
never activated (a rogue one on the network, or an evaluation) is refused.
"""

import argparse
import base64
import getpass
import hashlib
import json
import os
import random
import signal
import socket
import ssl
import sys
import time
import uuid

DEFAULT_PORT = 8989
DEFAULT_TLS_PORT = 8991
REQUEST_TIMEOUT = 10.0  # seconds; a request unanswered this long means the server is unreachable
# Refusals that no amount of waiting fixes: the request or the setup is wrong.
PERMANENT = {"BAD_REQUEST", "UNKNOWN_PRODUCT", "PRODUCT_REQUIRED", "UNSUPPORTED_VERSION", "TOKEN_INVALID", "LEASE_NOT_YOURS"}
# Answers to a renewal that mean the server no longer holds the lease for us.
LEASE_GONE = {"LEASE_EXPIRED", "LEASE_NOT_FOUND", "LEASE_NOT_YOURS", "LEASE_SECRET_MISMATCH", "TOKEN_INVALID"}
# Answers that say this server cannot serve us now, though another node of the cluster may.
TRY_ANOTHER_SERVER = {"UNAVAILABLE", "SUSPENDED", "SHUTTING_DOWN"}
# The back-off between tries at reaching a server: below 0.1 s at first, the bound doubling up to 5 s.
BACKOFF_INITIAL = 0.1
BACKOFF_MAX = 5.0


class FloatdError(Exception):
    """An error reply from the server: `code` is the stable error code."""

    def __init__(self, code, message, details=None):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.details = details or {}


class Stopped(Exception):
    """Raised by the SIGINT / SIGTERM handler, so that any wait ends at once."""

    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def split_address(address, default_port=DEFAULT_PORT):
    """`host`, `host:port` or `[v6addr]:port`; a bare host means port 8989 (8991 with TLS)."""
    if address.startswith("["):
        host, _, rest = address[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else default_port
    if address.count(":") == 1:
        host, port = address.split(":")
        return host, int(port)
    return address, default_port


def endpoints(servers, default_port):
    """The servers to try, in order: each of the list, and each address a name resolves to
    as a server of its own (looked up now, at connect time). A name that does not resolve
    stays, so that connecting to it says why. The same address is tried once."""
    found = []
    seen = set()
    for server in servers:
        host, port = split_address(server, default_port)
        try:
            infos = [(family, sockaddr) for family, _, _, _, sockaddr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]
        except socket.gaierror:
            infos = [(None, (host, port))]
        for family, sockaddr in infos:
            if (sockaddr[0], sockaddr[1]) in seen:
                continue
            seen.add((sockaddr[0], sockaddr[1]))
            found.append({"server": server, "host": host, "port": port, "family": family, "sockaddr": sockaddr})
    return found


def tls_context(ca_file, cert_file, key_file):
    """What --tls connections use: the server's certificate checked against `ca_file` (the
    system's CAs when None) and its name, TLS 1.2 at least, and a client certificate if given."""
    context = ssl.create_default_context(cafile=ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert_file:
        context.load_cert_chain(cert_file, key_file)
    return context


def say(**fields):
    print(json.dumps(fields), flush=True)


class Connection:
    """One NDJSON connection: requests with ids, replies matched by id, pushed events put in `events`."""

    def __init__(self, endpoint, events, tls=None):
        host = endpoint["host"]
        if endpoint["family"] is None:
            sock = socket.create_connection((host, endpoint["port"]), timeout=REQUEST_TIMEOUT)
        else:
            # The one address of the endpoint; the name still serves for the TLS certificate check.
            sock = socket.socket(endpoint["family"], socket.SOCK_STREAM)
            sock.settimeout(REQUEST_TIMEOUT)
            try:
                sock.connect(endpoint["sockaddr"])
            except BaseException:
                sock.close()
                raise
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls:
            try:
                # The handshake happens here; a certificate that does not check out raises
                # ssl.SSLCertVerificationError, an OSError like any unreachable server.
                sock = tls.wrap_socket(sock, server_hostname=host)
            except BaseException:
                sock.close()
                raise
        self.sock = sock
        self.buffer = b""
        self.next_id = 1
        self.events = events
        self.last_error = None  # an error sent without an id (IDLE_TIMEOUT, ...), to explain a close

    def request(self, op, **fields):
        """The reply to one request; FloatdError for an error reply, OSError when the server cannot be reached."""
        request_id = self.next_id
        self.next_id += 1
        line = json.dumps({"op": op, "id": request_id, **fields}, separators=(",", ":")) + "\n"
        self.sock.sendall(line.encode("utf-8"))
        deadline = time.monotonic() + REQUEST_TIMEOUT
        while True:
            message = self.read(deadline)
            if message is None:
                raise TimeoutError(f"no answer to {op} within {REQUEST_TIMEOUT:g} s")
            if message.get("id") != request_id:
                continue  # a pushed event, or the late reply to an earlier request
            if message.get("ok") is True:
                return message
            error = message.get("error") if isinstance(message.get("error"), dict) else {}
            raise FloatdError(str(error.get("code", "INTERNAL")), str(error.get("message", "")), error)

    def read(self, deadline):
        """Reads one message, waiting until `deadline` (monotonic) at most; None if none came."""
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                return None
            if not chunk:
                why = f" ({self.last_error})" if self.last_error else ""
                raise ConnectionError(f"the server closed the connection{why}")
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        try:
            message = json.loads(line)
        except ValueError:
            message = None
        if not isinstance(message, dict):
            raise ConnectionError("the server sent a line that is not a JSON object")
        if "event" in message:
            self.events.append(message)  # e.g. {"event":"revoked","lease":"…","reason":"…"}
        elif "id" not in message and isinstance(message.get("error"), dict):
            self.last_error = f"{message['error'].get('code')}: {message['error'].get('message')}"
        return message

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class Backoff:
    """Waits between renewal attempts, "full jitter": at random below a bound that starts
    at BACKOFF_INITIAL and doubles up to `cap`, so the clients of a server that went down
    do not all come at the next one (or at it, restarted) in the same instant."""

    def __init__(self, cap, initial=BACKOFF_INITIAL):
        self.cap = cap
        self.initial = min(initial, cap)
        self.attempt = 0

    def next(self):
        bound = min(self.cap, self.initial * 2 ** min(self.attempt, 30))
        self.attempt += 1
        return random.uniform(0.0, bound)

    def reset(self):
        self.attempt = 0


def b64decode(text):
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def jwk_thumbprint(jwk):
    """RFC 7638 thumbprint of an Ed25519 JWK, as floatd prints key ids."""
    canonical = json.dumps({"crv": jwk["crv"], "kty": jwk["kty"], "x": jwk["x"]}, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(hashlib.sha256(canonical.encode()).digest()).rstrip(b"=").decode()


class VendorChain:
    """Checks that a lease chains to the vendor: license key -> activation -> server key -> lease token."""

    def __init__(self, jwk_files):
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

        self.invalid_signature = InvalidSignature
        self.public_key = lambda jwk: Ed25519PublicKey.from_public_bytes(b64decode(jwk["x"]))
        self.vendor = {}
        for path in jwk_files:
            with open(path, encoding="utf-8") as f:
                jwk = json.load(f)
            if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519" or "d" in jwk:
                raise ValueError(f"{path}: not the vendor's public Ed25519 key")
            self.vendor[jwk_thumbprint(jwk)] = jwk

    def verify(self, token, jwk, typ, what):
        """The claims of a compact JWS of type `typ` whose signature `jwk` verifies."""
        try:
            header_b64, payload_b64, signature_b64 = token.split(".")
            header = json.loads(b64decode(header_b64))
            if header.get("alg") != "EdDSA" or header.get("typ") != typ:
                raise ValueError(f"not a {typ}")
            self.public_key(jwk).verify(b64decode(signature_b64), f"{header_b64}.{payload_b64}".encode())
            return header, json.loads(b64decode(payload_b64))
        except self.invalid_signature:
            raise FloatdError("TOKEN_INVALID", f"the lease does not chain to the vendor: the signature of its {what} does not verify")
        except (AttributeError, TypeError, ValueError, KeyError) as err:
            raise FloatdError("TOKEN_INVALID", f"the lease does not chain to the vendor: its {what} cannot be read ({err})")

    def vendor_key(self, token, what):
        try:
            kid = json.loads(b64decode(token.split(".")[0])).get("kid")
        except (AttributeError, IndexError, ValueError):
            kid = None
        if kid not in self.vendor:
            raise FloatdError("TOKEN_INVALID", f"the lease does not chain to the vendor: its {what} is not signed by the vendor's key")
        return self.vendor[kid]

    def check(self, lease, server_key):
        def refuse(why):
            raise FloatdError("TOKEN_INVALID", f"the lease does not chain to the vendor: {why}")

        chain = lease.get("license")
        if not isinstance(chain, dict) or not isinstance(chain.get("key"), str):
            refuse("it carries no license key (an evaluation lease, or a server that cannot show a license from this vendor)")
        _, key = self.verify(chain["key"], self.vendor_key(chain["key"], "license key"), "floatd-license+jwt", "license key")
        if key.get("product") != lease["product"]:
            refuse(f"its license key is for product {key.get('product')!r}, not {lease['product']!r}")
        if not isinstance(key.get("activation"), dict):
            refuse(f"license key {key.get('jti')} needs no activation, so nothing ties it to this server's key")
        if not isinstance(chain.get("activation"), str):
            refuse(f"it carries no activation of license key {key.get('jti')}")
        _, activation = self.verify(chain["activation"], self.vendor_key(chain["activation"], "activation"), "floatd-activation+jwt", "activation")
        if activation.get("key") != key.get("jti"):
            refuse(f"its activation is for license key {activation.get('key')}, not {key.get('jti')}")
        if not isinstance(server_key, dict) or activation.get("server") != jwk_thumbprint(server_key):
            refuse("no activation names this server's key")
        _, claims = self.verify(lease["token"], server_key, "floatd-lease+jwt", "lease token")
        if claims.get("pool") != key.get("jti"):
            refuse(f"the lease token is from pool {claims.get('pool')}, not license key {key.get('jti')}")


class LeaseHolder:
    """One product instance's lease: acquires, renews, notices its end, releases."""

    def __init__(self, servers, product, user, host, instance, retry_seconds, renew_after_ms=None, tls=None, chain=None):
        self.servers = servers  # the list, as given: several nodes of one cluster, or one server
        self.cursor = 0  # the server to try first: the one in use, or the one after a server that failed
        self.server_count = len(servers)  # the servers the list came to when names were last resolved
        self.chain = chain  # a VendorChain with --vendor-public-key, else None
        self.server_key = None  # the lease-signing key hello announced
        self.tls = tls  # an ssl.SSLContext for --tls, else None
        self.product = product
        self.user = user
        self.host = host
        self.instance = instance
        self.retry_seconds = retry_seconds
        self.renew_after_ms = renew_after_ms
        self.conn = None
        self.events = []  # pushed by the server, not yet acted on
        self.lease = None  # the lease held now, as the server sent it
        # The secret of the reply that granted the lease: kept in memory only, and sent with every
        # renew, release and acquire, so that a new connection (after a reconnect) can act on the lease.
        self.secret = None
        self.renew_at = 0.0  # when to renew it (monotonic clock)
        self.expires_at = 0.0  # when it runs out, counted from when its request was sent
        self.held_before = False
        # Renewal retries back off up to the retry interval, at least 1 s and at most 5 s.
        self.backoff = Backoff(max(1.0, min(retry_seconds or BACKOFF_MAX, BACKOFF_MAX)))

    def connect(self):
        """The open connection, or a new one that has said hello: to the server at the cursor,
        or the next one that answers. OSError when none can be reached (naming each)."""
        if self.conn is not None:
            return self.conn
        found = endpoints(self.servers, DEFAULT_TLS_PORT if self.tls else DEFAULT_PORT)
        self.server_count = len(found)
        start = self.cursor % len(found)
        failures = []
        for k in range(len(found)):
            endpoint = found[(start + k) % len(found)]
            try:
                conn = Connection(endpoint, self.events, self.tls)
            except OSError as err:
                failures.append(err)
                continue
            hello = {"v": 1, "client": {"user": self.user, "host": self.host, "instance": self.instance}}
            if self.product:
                hello["product"] = self.product
            try:
                reply = conn.request("hello", **hello)
            except FloatdError as err:
                conn.close()
                if err.code in PERMANENT or len(found) == 1:
                    raise  # every node would say the same
                failures.append(OSError(str(err)))
                continue
            except OSError as err:
                conn.close()
                failures.append(err)
                continue
            except BaseException:
                conn.close()
                raise
            self.conn = conn
            self.cursor = (start + k) % len(found)
            self.server_key = reply.get("publicKey")
            say(connected=endpoint["server"], server_version=reply.get("version"))
            return conn
        self.cursor = start + 1
        if len(failures) == 1:
            raise failures[0]
        raise ConnectionError("no server could be reached: " + "; ".join(
            f"{e['server']}{'' if e['family'] is None else ' (' + str(e['sockaddr'][0]) + ')'}: {err}"
            for e, err in zip([found[(start + k) % len(found)] for k in range(len(found))], failures)))

    def with_secret(self):
        return {"leaseSecret": self.secret} if self.secret is not None else {}

    def drop_connection(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None

    def leave(self):
        """Stops using a server that failed us: the next connection goes to the one after it."""
        if self.conn is not None:
            self.drop_connection()
            self.cursor += 1

    def check(self, lease):
        """The lease of a reply, once its token's claims name this lease, product, user and instance."""
        try:
            payload = lease["token"].split(".")[1]
            claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
            expected = {"jti": lease["id"], "product": lease["product"], "user": self.user, "instance": self.instance}
            good = all(claims.get(name) == value for name, value in expected.items())
            good = good and (not self.product or lease["product"] == self.product)
            good = good and lease["expiresInMs"] >= 0 and lease["renewAfterMs"] >= 0
        except (AttributeError, IndexError, KeyError, TypeError, ValueError):
            good = False
        if not good:
            raise FloatdError("TOKEN_INVALID", "the server's answer does not hold a lease for this client")
        if self.chain is not None:
            self.chain.check(lease, self.server_key)
        return lease

    def hold(self, lease, sent):
        """Keeps `lease`; `sent` is when the request that brought it was sent."""
        self.lease = lease
        self.expires_at = sent + lease["expiresInMs"] / 1000.0
        renew_after_ms = lease["renewAfterMs"]
        if self.renew_after_ms is not None:
            renew_after_ms = min(renew_after_ms, self.renew_after_ms)
        self.renew_at = sent + renew_after_ms / 1000.0
        self.backoff.reset()

    def end(self, kind, **fields):
        """The lease ended without our releasing it (`lost` or `revoked`): say so, and forget it."""
        say(**{kind: self.lease["id"]}, **fields)
        self.lease = None

    def handle_events(self):
        """Acts on what the server pushed: `revoked` or `expired` about the lease we hold."""
        while self.events:
            event = self.events.pop(0)
            if self.lease is None or event.get("lease") != self.lease["id"]:
                continue
            if event.get("event") == "revoked":
                self.end("revoked", reason=event.get("reason"))
            elif event.get("event") == "expired":
                self.end("lost", code="LEASE_EXPIRED", message="the server expired the lease: it was not renewed in time")

    def acquire(self, end):
        """One try at a lease. False when the run should stop: the refusal is permanent,
        retrying is off, or the next try would come after `end`. A server that cannot be
        reached, or cannot serve now (TRY_ANOTHER_SERVER), sends it to the next one at once."""
        tries = 0
        while True:
            tries += 1
            try:
                conn = self.connect()
            except FloatdError as err:
                permanent = err.code in PERMANENT
                outcome = {"denied": err.code, "reason": err.details.get("reason"), "message": err.message}
                break
            except OSError as err:  # no server of the list could be reached
                permanent = False
                outcome = {"unreachable": str(err)}
                break
            try:
                sent = time.monotonic()
                reply = conn.request("acquire", **({"product": self.product} if self.product else {}), **self.with_secret())
                self.hold(self.check(reply.get("lease")), sent)
                if isinstance(reply.get("leaseSecret"), str):
                    self.secret = reply["leaseSecret"]
                kind = "regained" if self.held_before else "acquired"
                self.held_before = True
                say(**{kind: self.lease["id"]}, product=self.lease["product"],
                    expires_in_ms=self.lease["expiresInMs"], renew_after_ms=self.lease["renewAfterMs"])
                return True
            except FloatdError as err:
                if err.code in TRY_ANOTHER_SERVER and tries < self.server_count:
                    self.leave()
                    continue
                permanent = err.code in PERMANENT
                outcome = {"denied": err.code, "reason": err.details.get("reason"), "message": err.message}
                break
            except OSError as err:
                self.leave()
                if tries < self.server_count:
                    continue
                permanent = False
                outcome = {"unreachable": str(err)}
                break
        retry_at = time.monotonic() + self.retry_seconds
        retry = self.retry_seconds > 0 and not permanent and retry_at < end
        say(**outcome, retry_in_s=self.retry_seconds if retry else None)
        if retry:
            time.sleep(max(0.0, retry_at - time.monotonic()))
        return retry

    def renew(self):
        lease_id = self.lease["id"]
        try:
            conn = self.connect()
            sent = time.monotonic()
            renewed = self.check(conn.request("renew", lease=lease_id, **self.with_secret()).get("lease"))
        except FloatdError as err:
            self.handle_events()  # the server pushes `revoked` / `expired` before such an answer
            if self.lease is None:
                return
            if err.code == "LICENSE_EXPIRED":  # the server revoked the lease: its key is gone or invalid
                self.end("revoked", reason=err.message)
            elif err.code in LEASE_GONE:
                self.end("lost", code=err.code, message=err.message)
            else:
                if err.code in TRY_ANOTHER_SERVER and self.server_count > 1:
                    self.leave()  # the next try goes to the next server of the list
                self.renew_later(f"{err.code}: {err.message}")
            return
        except OSError as err:
            self.leave()
            self.handle_events()
            if self.lease is not None:
                self.renew_later(str(err))
            return
        self.hold(renewed, sent)
        say(renewed=lease_id, expires_in_ms=renewed["expiresInMs"])

    def renew_later(self, error):
        """The renewal failed but the lease has time left: try again soon, never after it runs out."""
        left = self.expires_at - time.monotonic()
        if left <= 0:
            self.end("lost", code="SERVER_UNREACHABLE", message=f"the lease ran out before it could be renewed: {error}")
            return
        # The last try goes out a moment before the lease runs out; after that, nothing is left to try.
        wait = min(self.backoff.next(), left - 0.25) if left > 0.25 else None
        self.renew_at = time.monotonic() + wait if wait is not None else self.expires_at
        say(renew_failed=self.lease["id"], error=error, retry_in_s=round(wait, 2) if wait is not None else None, expires_in_s=round(left, 1))

    def wait_until(self, until):
        """Waits until `until` (monotonic clock), acting on what the server pushes meanwhile."""
        while self.lease is not None and time.monotonic() < until:
            if self.conn is None:
                time.sleep(max(0.0, until - time.monotonic()))
                return
            try:
                self.conn.read(until)
            except OSError as err:
                self.leave()
                self.handle_events()
                say(disconnected=str(err))
                # Renew on a fresh connection soon: the server pushes events only to the
                # connection that last acquired or renewed the lease.
                self.renew_at = min(self.renew_at, time.monotonic() + self.backoff.next())
                return
            self.handle_events()

    def release(self):
        """Gives the lease back. False when the server says it no longer held it."""
        lease_id = self.lease["id"]
        try:
            reply = self.connect().request("release", lease=lease_id, **self.with_secret())
        except (OSError, FloatdError) as err:
            left = max(0.0, self.expires_at - time.monotonic())
            say(release_failed=lease_id, error=str(err), expires_in_s=round(left, 1))
            self.lease = None
            return True
        self.handle_events()
        if self.lease is None:
            return False  # it had ended already; the line above says how
        self.lease = None
        if reply.get("released", True) is False:
            say(lost=lease_id, code="LEASE_NOT_FOUND", message="the server no longer held the lease when it was released")
            return False
        say(released=lease_id)
        return True

    def run(self, seconds):
        """Holds a lease (as well as it can) for `seconds`; returns the exit status."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.handle_events()
            if self.lease is None:
                if not self.acquire(end):
                    return 1
            elif time.monotonic() >= self.expires_at:
                self.end("lost", code="SERVER_UNREACHABLE", message="the lease ran out before the server could be reached to renew it")
            elif time.monotonic() >= self.renew_at:
                self.renew()
            else:
                self.wait_until(min(self.renew_at, end))
        if self.lease is None:
            return 1
        return 0 if self.release() else 1

    def close(self):
        self.drop_connection()


def seconds(text):
    value = float(text)
    if not 0 <= value < 1e9:
        raise argparse.ArgumentTypeError(f"{text}: must be a number of seconds, 0 or more")
    return value


def server_address(text):
    """One --server: an address, or a comma-separated list of them."""
    servers = [part.strip() for part in text.split(",")]
    for server in servers:
        if server == "":
            raise argparse.ArgumentTypeError(f"{text}: an empty server in the list")
        if "://" in server:
            raise argparse.ArgumentTypeError(f"{server}: give host, host:port or [v6addr]:port (add --tls for a tls:// listener)")
        try:
            split_address(server)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{server}: give host, host:port or [v6addr]:port")
    return servers


def main():
    parser = argparse.ArgumentParser(description="Hold a floatd lease for a while.")
    parser.add_argument("--server", required=True, type=server_address, action="append",
                        help="host, host:port or [v6addr]:port (port 8989 by default, 8991 with --tls); several: a comma-separated list, or --server again")
    parser.add_argument("--tls", action="store_true", help="speak to a tls:// listener: the protocol inside TLS")
    parser.add_argument("--ca", metavar="FILE", help="with --tls: the CA certificate(s) to trust (default: the system's)")
    parser.add_argument("--cert", metavar="FILE", help="with --tls: a client certificate to show the server (with --key)")
    parser.add_argument("--key", metavar="FILE", help="with --tls: the client certificate's private key")
    parser.add_argument("--product", help="may be left out when the server serves one product")
    parser.add_argument("--user", default=getpass.getuser())
    parser.add_argument("--host", default=socket.gethostname())
    parser.add_argument("--instance", default=str(uuid.uuid4()), help="a stable id for this product instance")
    parser.add_argument("--hold", type=seconds, default=60.0, help="seconds to run, holding a lease when one can be had (default 60)")
    parser.add_argument("--retry-seconds", type=seconds, default=10.0, help="how often to try again for a lease (default 10); 0 gives up at once")
    parser.add_argument("--renew-after-ms", type=int, help="renew sooner than the server asks (for testing)")
    parser.add_argument("--vendor-public-key", metavar="FILE", action="append", default=[],
                        help="accept only leases that chain to this vendor key (needs the cryptography package)")
    args = parser.parse_args()
    if not args.tls and (args.ca or args.cert or args.key):
        parser.error("--ca, --cert and --key need --tls")
    if bool(args.cert) != bool(args.key):
        parser.error("--cert and --key go together")
    tls = None
    if args.tls:
        for flag, path in (("--ca", args.ca), ("--cert", args.cert), ("--key", args.key)):
            if path and not os.path.isfile(path):
                parser.error(f"{flag} {path}: no such file")
        try:
            tls = tls_context(args.ca, args.cert, args.key)
        except (OSError, ssl.SSLError) as err:
            parser.error(f"--tls: {err}")

    chain = None
    if args.vendor_public_key:
        try:
            chain = VendorChain(args.vendor_public_key)
        except ImportError:
            parser.error("--vendor-public-key needs the cryptography package (pip install cryptography, or apt install python3-cryptography)")
        except (OSError, ValueError, KeyError) as err:
            parser.error(f"--vendor-public-key: {err}")

    servers = [server for servers in args.server for server in servers]
    holder = LeaseHolder(servers, args.product, args.user, args.host, args.instance, args.retry_seconds, args.renew_after_ms, tls, chain)

    def stop(signum, _frame):
        raise Stopped(signum)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        status = holder.run(args.hold)
    except Stopped as stopped:
        # Release, then exit as the signal asked; a second signal ends the process at once.
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        say(stopping=str(stopped))
        if holder.lease is not None:
            holder.release()
        status = 128 + stopped.signum
    holder.close()
    sys.exit(status)


if __name__ == "__main__":
    main()
