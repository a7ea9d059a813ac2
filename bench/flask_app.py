"""Reference (1): the straightforward synchronous WeCom callback people write with wechatpy +
Flask, served by gunicorn with one sync worker per core. It does the same work as Linli's
inbound path (bench.reference.handle: verify, decrypt, parse, insert one row, commit) and answers
only after the commit. Run as `gunicorn bench.flask_app:app` with BENCH_DB set.
"""
from __future__ import annotations

import os

from flask import Flask, abort, request
from wechatpy.enterprise.exceptions import InvalidCorpIdException
from wechatpy.exceptions import InvalidSignatureException

from bench import reference

app = Flask(__name__)
crypto = reference.make_crypto()
_conn = None  # one connection per worker process, opened after the fork


def _db():
    global _conn
    if _conn is None:
        _conn = reference.connect(os.environ["BENCH_DB"])
    return _conn


@app.post(reference.PATH)
def callback():
    args = request.args
    try:
        reference.handle(crypto, _db(), args.get("msg_signature", ""), args.get("timestamp", ""),
                         args.get("nonce", ""), request.get_data())
    except (InvalidSignatureException, InvalidCorpIdException):
        abort(403)
    return "success"
