"""The straightforward synchronous WeCom callback people write with wechatpy + Flask. It does the
same work as Linli's inbound path (bench.reference.handle: verify, decrypt, parse, insert one row,
commit) and answers only after the commit. Served two usual ways by `python -m bench callbacks`:
gunicorn's sync workers (one request per process at a time, the connection closed after each
answer) and its threaded workers (`-k gthread --threads N`: keep-alive, N requests per process
at a time). Run as `gunicorn bench.flask_app:app` with BENCH_DB set.
"""
from __future__ import annotations

import os
import threading

from flask import Flask, abort, request
from wechatpy.enterprise.exceptions import InvalidCorpIdException
from wechatpy.exceptions import InvalidSignatureException

from bench import reference

app = Flask(__name__)
crypto = reference.make_crypto()
# one connection per thread, opened after the fork: a sqlite3 connection may not be shared
# between threads, and the gthread worker runs several requests of one process at once
_local = threading.local()


def _db():
    conn = getattr(_local, "conn", None)
    if conn is None:
        conn = _local.conn = reference.connect(os.environ["BENCH_DB"])
    return conn


@app.post(reference.PATH)
def callback():
    args = request.args
    try:
        reference.handle(crypto, _db(), args.get("msg_signature", ""), args.get("timestamp", ""),
                         args.get("nonce", ""), request.get_data())
    except (InvalidSignatureException, InvalidCorpIdException):
        abort(403)
    return "success"
