"""Dashboard accounts, sessions, CSRF and the login rate limit.

Staff accounts live in `web_users`; an account linked to a resident (resident_id) acts as that
resident, so a grid or building lead sees only the buildings under the nodes they lead (the
same rule as in chat, bot.domain.requests.access.scope). An unlinked account (the configured "admin")
is community staff.

Passwords: scrypt with a per-user salt, compared in constant time. Sessions: a random token in
an HttpOnly, SameSite=Strict cookie, also `Secure` whenever the dashboard is served over HTTPS
(see served_over_https); only its SHA-256 is stored, so a copy of the database does not hand out
live sessions. Each session has its own CSRF token, required on every POST (form field `csrf` or
header X-CSRF-Token). Login rate limit: MAX_FAILURES failures per username and address within
FAILURE_WINDOW_S, each attempt counted before its password is checked. Expiry and the rate-limit
window use the injected app.clock. SQL is in bot/data/accounts.py.
"""
from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from urllib.parse import urlencode

from aiohttp import web

from bot.core import texts
from bot.core.filters import roles_of
from bot.data import accounts, people
from bot.domain import areas

COOKIE = "linli_session"
LOGIN_COOKIE = "linli_login_csrf"  # double-submit token for the login form (no session yet)
MAX_FAILURES, FAILURE_WINDOW_S = 5, 600
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}
# aiohttp >= 3.13 wants typed request keys; older ones (pyproject allows 3.9) take a string
USER_KEY = web.RequestKey("linli_web_user", object) if hasattr(web, "RequestKey") else "linli_web_user"


# -- passwords ---------------------------------------------------------------------------------
def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **_SCRYPT)
    b64 = base64.b64encode
    return f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        got = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), dklen=32,
                             n=int(n), r=int(r), p=int(p))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, base64.b64decode(digest))


# an unknown username still costs one scrypt, so response time does not tell which names exist
_DUMMY_HASH = hash_password(secrets.token_hex(8))


def create_user(store, username: str, password: str, resident_id: int | None = None) -> int:
    """Add a dashboard account, or reset its password and link if it exists. Returns its id."""
    username = username.strip()
    if not username or not password:
        raise ValueError("username and password are required")
    if resident_id is not None and people.get(store, resident_id) is None:
        raise ValueError(f"no resident with id {resident_id}")
    # a changed password ends the account's open sessions (accounts.save_user does both)
    return accounts.save_user(store, username, resident_id, hash_password(password))


def ensure_admin(store, password: str) -> None:
    """The `[dashboard] password` account: created at start-up, re-hashed only if it changed."""
    row = accounts.user_by_name(store, "admin", active_only=False)
    if row is None or row["resident_id"] is not None or not verify_password(password, row["password_hash"]):
        create_user(store, "admin", password)


# -- who is logged in --------------------------------------------------------------------------
@dataclass(frozen=True)
class WebUser:
    id: int
    username: str
    person: dict            # the actor for domain calls (the resident, or a synthetic staff member)
    scope: frozenset | None  # building ids this user may see; None = everything
    csrf: str
    # community staff: may issue warnings, retry sends, see exports. Usually also scope None, but
    # a staff member of one community in a multi-community register is staff with a scope.
    staff: bool | None = None

    @property
    def is_staff(self) -> bool:
        return self.scope is None if self.staff is None else self.staff

    @property
    def limited(self) -> bool:
        """Sees part of the register only (a lead, or staff of one community among several)."""
        return self.scope is not None


def _labels():
    return texts.env().get_template("web/_labels.html").module


def person_for(store, user_row: dict) -> dict | None:
    if user_row["resident_id"] is None:
        # not a register entry: a staff actor whose name the residents' messages can show
        return {"id": None, "name": _labels().STAFF_NAME, "roles": "staff", "household_id": None,
                "wecom_userid": None, "oa_openid": None}
    return people.active(store, user_row["resident_id"])


def scope_of(store, person: dict) -> frozenset | None:
    """The buildings a dashboard user may see: the same area the chat applies (bot.domain.areas):
    a lead their buildings, staff everything — or, in a register of several communities, the
    staff of one community only theirs."""
    area = areas.buildings_of(store, person)
    return None if area is None else frozenset(area)


def is_staff_person(person: dict) -> bool:
    return "staff" in roles_of(person)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def current_user(request: web.Request, app) -> WebUser | None:
    if USER_KEY in request:
        return request[USER_KEY]
    token = request.cookies.get(COOKIE)
    user = None
    if token:
        row = accounts.session_user(app.store, _digest(token), app.clock.now())
        person = person_for(app.store, row) if row else None
        if person is not None:
            user = WebUser(row["id"], row["username"], person, scope_of(app.store, person), row["csrf"],
                           staff=is_staff_person(person))
    request[USER_KEY] = user
    return user


async def check_csrf(request: web.Request, expected: str) -> None:
    """403 unless the POST carries the session's CSRF token (header or form field)."""
    sent = request.headers.get("X-CSRF-Token")
    if sent is None and request.content_type in ("application/x-www-form-urlencoded",
                                                 "multipart/form-data"):
        sent = (await request.post()).get("csrf")
    # bytes, not str: compare_digest refuses non-ASCII text (a stray byte would be a 500)
    if not sent or not hmac.compare_digest(str(sent).encode("utf-8", "surrogateescape"),
                                           expected.encode()):
        raise web.HTTPForbidden(text="csrf")


async def require(request: web.Request, app, *, api: bool = False, staff: bool = False) -> WebUser:
    """The logged-in user, CSRF-checked on POST. Pages redirect to the login form; the API 401s."""
    user = current_user(request, app)
    if user is None:
        if api or request.method != "GET":
            raise web.HTTPUnauthorized(text="login_required")
        # the raw (percent-encoded) path, itself encoded as one query value: a `&` or `?` in the
        # page's own query string must not leak into the login URL's
        raise web.HTTPFound("/login?" + urlencode({"next": request.rel_url.raw_path_qs}, safe="/"))
    if request.method == "POST":
        await check_csrf(request, user.csrf)
    if staff and not user.is_staff:
        raise web.HTTPForbidden(text="staff_only")
    return user


# -- logging in and out ------------------------------------------------------------------------
def recent_failures(store, who: str, now: float) -> int:
    return accounts.recent_failures(store, who, now - FAILURE_WINDOW_S)


async def login(app, username: str, password: str, ip: str) -> tuple[str, str | None]:
    """('ok', session token) | ('limited', None) | ('bad', None). Records the attempt.

    The attempt is counted as a failure *before* scrypt runs (and marked ok after): the check
    awaits the executor, so counting afterwards let any number of parallel guesses through the
    limit while the first five were still being hashed."""
    store, now = app.store, app.clock.now()
    who = f"{username.strip().lower()}|{ip}"
    attempt = accounts.claim_attempt(store, who, now, window_s=FAILURE_WINDOW_S,
                                     max_failures=MAX_FAILURES)
    if attempt is None:
        return "limited", None
    row = accounts.user_by_name(store, username.strip())
    # scrypt takes ~50 ms: keep it off the event loop that also answers WeChat callbacks
    ok = await asyncio.get_running_loop().run_in_executor(
        None, verify_password, password, row["password_hash"] if row else _DUMMY_HASH)
    person = person_for(store, row) if ok and row else None
    # a resident account that leads nothing would see an empty dashboard: refuse it plainly
    if person is None or (scope_of(store, person) is not None and not scope_of(store, person)):
        return "bad", None
    accounts.attempt_succeeded(store, attempt)
    token = secrets.token_urlsafe(32)
    accounts.open_session(store, _digest(token), row["id"], secrets.token_urlsafe(32),
                          now + app.settings.dashboard.session_hours * 3600, now)
    store.log(now, "web.login", "web_user", row["id"], person["id"], ip=ip)
    return "ok", token


def logout(app, request: web.Request) -> None:
    token = request.cookies.get(COOKIE)
    if token:
        accounts.close_session(app.store, _digest(token))


# -- cookies ---------------------------------------------------------------------------------------
# A reverse proxy on the same host (nginx in front of `linli serve`) ends TLS and says so in
# X-Forwarded-Proto. Only a loopback peer is believed: anyone else could send the header.
TRUSTED_PROXIES = ("127.0.0.1", "::1")


def served_over_https(request: web.Request, app) -> bool:
    """Whether the browser reached us over HTTPS, so cookies must be `Secure`.

    True when the deployment says so (`[server] public_url` is https: residents' links and the
    dashboard are then published at an https address, whatever the last hop to Linli is), when
    the connection itself is TLS, or when a trusted (loopback) proxy forwarded an https request.
    A plain-http setup (the demo, tests, a LAN-only office) keeps cookies without `Secure`, or
    the browser would never send them back."""
    if app.settings.server.public_url.lower().startswith("https://"):
        return True
    if request.secure:
        return True
    forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    return forwarded == "https" and request.remote in TRUSTED_PROXIES


def set_session_cookie(resp: web.StreamResponse, token: str, max_age: int, *, secure: bool = False) -> None:
    resp.set_cookie(COOKIE, token, httponly=True, samesite="Strict", path="/", max_age=max_age,
                    secure=secure)
