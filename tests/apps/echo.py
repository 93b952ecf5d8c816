"""The WSGI application tests/tests/uwsgi_app.rs runs under a real uWSGI.

/echo...   JSON: every string variable of the WSGI environ (the CGI
           variables the router sent, and uWSGI's own), and the length and
           SHA-256 of the request body as the application read it.
/mirror    The request body, as read, with its SHA-256 in X-Body-Sha256.
/large     ?size=N&seed=S[&length=no]: N pseudo-random bytes seeded by S,
           their SHA-256 in X-Body-Sha256, sent in 64 KiB pieces. With
           length=no there is no Content-Length and uWSGI ends the body by
           closing the connection.
/status    ?STATUS (percent-encoded, e.g. 299%20Custom%20Reason): that status
           line and an empty body.
"""

import hashlib
import json
import random
from urllib.parse import parse_qs, unquote

PIECE = 64 * 1024


def read_body(environ):
    if environ.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked":
        # Over --http11-socket uWSGI hands chunked input on as it came;
        # its API takes the chunks off one by one.
        import uwsgi

        chunks = iter(uwsgi.chunked_read, b"")
        return b"".join(chunks)
    # uWSGI reads exactly CONTENT_LENGTH bytes.
    return environ["wsgi.input"].read()


def echo(environ, start_response):
    body = read_body(environ)
    document = {
        "environ": {k: v for k, v in environ.items() if isinstance(v, str)},
        "body_len": len(body),
        "body_sha256": hashlib.sha256(body).hexdigest(),
    }
    out = json.dumps(document).encode()
    start_response(
        "200 OK",
        [("Content-Type", "application/json"), ("Content-Length", str(len(out)))],
    )
    return [out]


def mirror(environ, start_response):
    body = read_body(environ)
    start_response(
        "200 OK",
        [
            ("Content-Type", "application/octet-stream"),
            ("Content-Length", str(len(body))),
            ("X-Body-Sha256", hashlib.sha256(body).hexdigest()),
        ],
    )
    return [body]


def large(environ, start_response):
    query = parse_qs(environ["QUERY_STRING"])
    size = int(query["size"][0])
    data = random.Random(int(query["seed"][0])).randbytes(size)
    headers = [
        ("Content-Type", "application/octet-stream"),
        ("X-Body-Sha256", hashlib.sha256(data).hexdigest()),
    ]
    if query.get("length") != ["no"]:
        headers.append(("Content-Length", str(size)))
    start_response("200 OK", headers)
    return (data[i : i + PIECE] for i in range(0, size, PIECE))


def status(environ, start_response):
    start_response(unquote(environ["QUERY_STRING"]), [("Content-Length", "0")])
    return [b""]


def application(environ, start_response):
    path = environ["PATH_INFO"]
    if path.startswith("/echo"):
        return echo(environ, start_response)
    handler = {"/mirror": mirror, "/large": large, "/status": status}.get(path)
    if handler is None:
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"no such endpoint: " + path.encode("latin-1")]
    return handler(environ, start_response)
