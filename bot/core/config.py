"""Settings: config.toml read once into frozen dataclasses, with LINLI_* environment overrides.

Every key can be overridden by an environment variable named LINLI_<SECTION>_<KEY>
(e.g. LINLI_WECOM_SECRET, LINLI_DASHBOARD_PASSWORD); that is how secrets stay out of the file.
A wrong or missing key fails at start-up with a ConfigError naming the key and the file.
"""
from __future__ import annotations

import base64
import dataclasses
import os
import re
import secrets
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from bot.core import resources

SECRET_KEYS = {"secret", "token", "encoding_aes_key", "app_secret", "password", "link_secret", "feed_token"}

# the checked-in Dalong register (top-level data/) that `linli demo` imports and `linli demo-data`
# rewrites: package data in an installed wheel, the checkout's files otherwise (bot/core/resources.py)
DEMO_REGISTER = resources.shipped("data/dalong_register.csv")
DEMO_GROUPS = resources.shipped("data/dalong_register_groups.csv")


class ConfigError(Exception):
    """A configuration problem, with the file and key it concerns."""


@dataclass(frozen=True)
class StoreSettings:
    path: str = "data/linli.db"


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str = "http://127.0.0.1:8080"  # base for ack links sent to residents
    timestamp_window_s: int = 300  # 0 turns the freshness check off
    max_body_bytes: int = 65536
    link_secret: str = "change-me-link-secret"  # signs per-household ack links
    feed_token: str = ""  # bearer token for POST /api/alerts/cap (a weather feed); empty = off
    # with front processes, the worker runs at this lower CPU priority: under a burst the
    # fronts answer the platform first (its 5 s deadline), the worker catches up after
    worker_nice: int = 0
    # `linli serve`: HTTP front processes sharing the port; -1 = cores - 1 (at least 1);
    # 0 = one process does everything
    fronts: int = -1
    body_read_timeout_s: float = 10.0  # a callback body not received by then: 408, connection closed
    record_give_up_s: float = 3.0  # a valid callback not recorded by then: 503 + Retry-After (platform retries)
    inbound_retention_days: int = 30  # handled callbacks older than this are pruned (at least 1 day)


@dataclass(frozen=True)
class WecomSettings:
    corp_id: str = ""
    agent_id: int = 0
    secret: str = ""
    token: str = ""
    encoding_aes_key: str = ""
    api_base: str = "https://qyapi.weixin.qq.com"
    # documented send limits (developer.work.weixin.qq.com, message/send and appchat/send); the token bucket uses them
    message_send_per_min: int = 10000
    per_member_per_min: int = 30   # message/send drops (silently!) more than this to one member
    appchat_recipients_per_min: int = 20000
    robot_posts_per_min: int = 20


@dataclass(frozen=True)
class OaSettings:
    app_id: str = ""
    app_secret: str = ""
    token: str = ""
    encoding_aes_key: str = ""
    api_base: str = "https://api.weixin.qq.com"
    custom_send_per_min: int = 10000
    # service-notice template (one field {{content.DATA}}) used for warnings to residents:
    # customer-service messages only reach people who wrote in the last 48 h
    template_id: str = "linli-alert"


@dataclass(frozen=True)
class SendSettings:
    max_attempts: int = 5
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    timeout_s: float = 10.0
    concurrency: int = 32
    # a warning's sends retry until it expires (or this long after they were written, if later)
    retry_budget_s: float = 600.0
    # circuit breaker per channel: open after this many transient failures in a row, probe after a
    # cool-down (doubling up to the max), tell staff at most once per notice gap
    breaker_failures: int = 5
    breaker_cooldown_s: float = 10.0
    breaker_cooldown_max_s: float = 30.0
    breaker_notice_gap_s: float = 600.0


@dataclass(frozen=True)
class RelaySettings:
    # minutes each hop has before it escalates
    grid_deadline_min: int = 3
    compound_deadline_min: int = 3
    building_deadline_min: int = 5
    # the household level below the building (党员中心户 / 红管家, households.steward_id): when on,
    # a steward is asked to pass the warning to their households and gets their silent ones' list
    stewards: bool = False
    steward_deadline_min: int = 10


@dataclass(frozen=True)
class EscalationSettings:
    # minutes after issue; red is faster
    remind_after_min: dict = field(
        default_factory=lambda: {"blue": 60, "yellow": 30, "orange": 15, "red": 10})
    followup_after_min: dict = field(
        default_factory=lambda: {"blue": 120, "yellow": 60, "orange": 30, "red": 20})
    default_expiry_h: int = 12
    # vulnerable first: at these colours every vulnerable resident in scope gets a one-to-one task
    # when the warning goes out, whatever they answer (at others, silence triggers it)
    vulnerable_first_colours: list = field(default_factory=lambda: ["orange", "red"])
    # minutes a task has before it climbs: social worker -> grid lead -> staff
    followup_deadline_min: dict = field(
        default_factory=lambda: {"blue": 480, "yellow": 240, "orange": 120, "red": 60})
    followup_retry_min: int = 30  # 不在家: asked again after this long


@dataclass(frozen=True)
class RequestSettings:
    accept_within_h: int = 4
    accept_within_h_urgent: int = 1
    resolve_within_d: int = 3
    resolve_within_h_urgent: int = 12
    resolve_within_d_by_category: dict = field(default_factory=lambda: {"water": 1, "safety": 1, "elderly": 1})
    rate_after_h: int = 24
    urgent_words: list = field(default_factory=lambda: ["进水", "着火", "起火", "受伤", "被困", "晕倒", "漏电", "救命"])
    categories: dict = field(default_factory=lambda: {
        "water": ["进水", "积水", "漏水", "水管", "下水道", "排水", "堵", "停水"],
        "electricity": ["停电", "灯", "电梯", "漏电", "跳闸", "电线"],
        "safety": ["着火", "起火", "烟", "燃气", "煤气", "被困", "受伤", "危险", "倒塌", "树倒"],
        "elderly": ["老人", "独居", "一个人在家", "行动不便", "生病"],
        "noise": ["噪音", "吵", "扰民", "油烟"],
        "environment": ["垃圾", "卫生", "异味", "脏"],
        "parking": ["停车", "车位", "挪车", "车库"],
        "property": ["物业", "门禁", "维修", "保洁"],
    })


@dataclass(frozen=True)
class DashboardSettings:
    password: str = ""  # staff password; empty disables password login
    session_hours: int = 12


@dataclass(frozen=True)
class CapSettings:
    # a weather feed's CAP <area> (areaDesc or geocode) -> "*" (the whole community), a list of
    # grid/compound/building names (a part), or [] (outside this community); bot/domain/feed.py
    areas: dict = field(default_factory=dict)


@dataclass(frozen=True)
class QuietSettings:
    # a person's low-urgency notices (request reminders, notices to leads) within this many minutes
    # become one digest; 0 = off (each goes on its own)
    digest_interval_min: float = 15
    cap_per_hour: int = 20  # non-reply messages to one person per hour; the rest wait for the digest (0 = no cap)
    digest_max_lines: int = 20


@dataclass(frozen=True)
class UpwardSettings:
    # coverage reported to the street office: minutes after issue, then at the end
    points_min: list = field(default_factory=lambda: [10, 30])
    channel: str = ""  # "robot" (a WeCom group robot key) | "wecom_appchat" (an app chat id) | "" off
    target: str = ""  # the robot key or app chat id
    webhook_url: str = ""  # also POST the figures as JSON here
    cap_url: str = ""  # for warnings that came in as CAP: a CAP 1.2 Ack/Update back to this endpoint
    cap_sender: str = "linli"
    cap_msg_type: str = "Ack"  # or "Update"
    notices: bool = False  # report notices (通知) too
    max_age_h: float = 48  # never report warnings older than this (turning the feature on)


@dataclass(frozen=True)
class RegisterSettings:
    # `linli import` refuses a file that would mark more than this share of the active
    # residents inactive (a truncated export, the wrong sheet) unless --allow-shrink is given
    max_shrink: float = 0.2
    max_rows: int = 500_000  # data rows in one register file


@dataclass(frozen=True)
class ConsultSettings:
    # 议事: a consultation's defaults and reminders to households that have not voted
    default_days: int = 7
    remind_before_h: list = field(default_factory=lambda: [24])


@dataclass(frozen=True)
class ClaimsSettings:
    # 三单制 / 微心愿: who may claim a request opened for claiming (register roles)
    roles: list = field(default_factory=lambda: ["volunteer", "party_member"])
    max_hours: float = 24.0  # the most one completed claim may count (a typo is not a week)


@dataclass(frozen=True)
class ScoresSettings:
    # 流动小红旗: how a building's month is scored (weights of the parts, summed to 100 points)
    weights: dict = field(default_factory=lambda: {
        "ack_share": 20, "ack_speed": 10, "requests": 10, "resolved": 10, "rating": 10,
        "turnout": 10, "claims": 10, "peer": 20})
    top_n: int = 3
    # ack speed: a median first answer after 0 minutes scores full, after this many (or later) nothing
    speed_cap_min: float = 120.0
    # a volunteer claim without recorded hours counts as this many hours
    claim_default_h: float = 1.0


@dataclass(frozen=True)
class WorldSettings:
    # the register file the world plays (it reads the file, never Linli's database)
    register: str = ""
    groups: str = ""  # its groups file; empty: the world has no groups but the register's
    host: str = "127.0.0.1"
    port: int = 8081
    seed: int = 7
    lead_forward_probability: float = 0.9
    lead_delay_s: list = field(default_factory=lambda: [20, 240])
    resident_reply_probability: float = 0.8
    resident_delay_s: list = field(default_factory=lambda: [10, 600])
    request_probability: float = 0.03


@dataclass(frozen=True)
class Settings:
    store: StoreSettings = StoreSettings()
    server: ServerSettings = ServerSettings()
    wecom: WecomSettings = WecomSettings()
    oa: OaSettings = OaSettings()
    send: SendSettings = SendSettings()
    relay: RelaySettings = RelaySettings()
    escalation: EscalationSettings = EscalationSettings()
    requests: RequestSettings = RequestSettings()
    dashboard: DashboardSettings = DashboardSettings()
    register: RegisterSettings = RegisterSettings()
    cap: CapSettings = CapSettings()
    upward: UpwardSettings = UpwardSettings()
    quiet: QuietSettings = QuietSettings()
    consult: ConsultSettings = ConsultSettings()
    claims: ClaimsSettings = ClaimsSettings()
    scores: ScoresSettings = ScoresSettings()
    world: WorldSettings = WorldSettings()
    # words the bot reads, added to bot/core/vocabulary.toml's lists: { "replies.ack" = ["晓得了"] }
    vocabulary: dict = field(default_factory=dict)
    timezone: str = "Asia/Shanghai"
    source: str = "<defaults>"

    def redacted(self) -> dict:
        """The settings as a dict with secrets masked, for logs."""
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if dataclasses.is_dataclass(v):
                out[f.name] = {k: ("***" if k in SECRET_KEYS and val else val)
                               for k, val in dataclasses.asdict(v).items()}
            else:
                out[f.name] = v
        return out


def _coerce(value, typ, where: str):
    origin = typing.get_origin(typ) or typ
    if typ in ("bool", bool):
        if isinstance(value, bool):
            return value
        if str(value).strip().lower() in ("true", "1", "yes", "on"):
            return True
        if str(value).strip().lower() in ("false", "0", "no", "off", ""):
            return False
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if typ in ("int", int):
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        try:
            return int(value)
        except ValueError:
            raise ConfigError(f"{where}: expected an integer, got {value!r}") from None
    if typ in ("float", float):
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected a number, got {value!r}") from None
    if typ in ("str", str):
        if not isinstance(value, (str, int)):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return str(value)
    if typ in ("list", list) or origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return value
    if typ in ("dict", dict) or origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {value!r}")
        return value
    return value


def _section(cls, raw: dict, env: dict, name: str, source: str):
    hints = {f.name: f.type for f in dataclasses.fields(cls)}
    unknown = set(raw) - set(hints)
    if unknown:
        key = sorted(unknown)[0]
        raise ConfigError(f"{source}: unknown key [{name}] {key} (known: {', '.join(sorted(hints))})")
    kwargs = {}
    for key, typ in hints.items():
        env_name = f"LINLI_{name.upper()}_{key.upper()}"
        if env_name in env:
            val = env[env_name]
            if typ in ("list", "dict"):
                import json
                try:
                    val = json.loads(val)
                except ValueError:
                    raise ConfigError(f"{env_name}: expected JSON for [{name}] {key}") from None
            kwargs[key] = _coerce(val, typ, f"{env_name} ([{name}] {key})")
        elif key in raw:
            kwargs[key] = _coerce(raw[key], typ, f"{source}: [{name}] {key}")
    return cls(**kwargs)


def _check_aes_key(key: str, where: str) -> None:
    if not key:
        return
    try:
        ok = len(key) == 43 and len(base64.b64decode(key + "=")) == 32
    except ValueError:
        ok = False
    if not ok:
        raise ConfigError(f"{where}: encoding_aes_key must be the 43-character EncodingAESKey "
                          "from the platform console")


def load(path: str | Path | None = "config.toml", env: dict | None = None) -> Settings:
    """Read config.toml (if given) and the LINLI_* environment into Settings."""
    env = dict(os.environ if env is None else env)
    source = str(path) if path else "<defaults>"
    raw: dict = {}
    if path is not None:
        p = Path(path)
        if not p.exists():
            raise ConfigError(f"{source}: config file not found")
        try:
            raw = tomllib.loads(p.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{source}: not valid TOML: {e}") from None
    sections = {f.name: f.type for f in dataclasses.fields(Settings)
                if f.name not in ("timezone", "source", "vocabulary")}
    unknown = set(raw) - set(sections) - {"timezone", "vocabulary"}
    if unknown:
        raise ConfigError(f"{source}: unknown section or key {sorted(unknown)[0]!r} "
                          f"(known sections: {', '.join(sorted(sections))})")
    kwargs = {}
    for name in sections:
        cls = type(getattr(Settings, name))
        sect = raw.get(name, {})
        if not isinstance(sect, dict):
            raise ConfigError(f"{source}: {name} must be a [{name}] table")
        kwargs[name] = _section(cls, sect, env, name, source)
    tz = env.get("LINLI_TIMEZONE", raw.get("timezone", "Asia/Shanghai"))
    vocab = raw.get("vocabulary", {})
    if not isinstance(vocab, dict) or not all(isinstance(v, list) for v in vocab.values()):
        raise ConfigError(f"{source}: [vocabulary] maps a list name to a list of words, "
                          f'e.g. "replies.ack" = ["晓得了"]')
    settings = Settings(**kwargs, timezone=_coerce(tz, str, f"{source}: timezone"), source=source,
                        vocabulary=vocab)
    _check_aes_key(settings.wecom.encoding_aes_key, f"{source}: [wecom] encoding_aes_key")
    _check_aes_key(settings.oa.encoding_aes_key, f"{source}: [oa] encoding_aes_key")
    if settings.wecom.corp_id and not settings.wecom.token:
        raise ConfigError(f"{source}: [wecom] token is missing (or set LINLI_WECOM_TOKEN)")
    if settings.oa.app_id and not settings.oa.token:
        raise ConfigError(f"{source}: [oa] token is missing (or set LINLI_OA_TOKEN)")
    if not 0 <= settings.server.timestamp_window_s:
        raise ConfigError(f"{source}: [server] timestamp_window_s must be >= 0")
    if not 0 <= settings.register.max_shrink <= 1:
        raise ConfigError(f"{source}: [register] max_shrink must be between 0 and 1 (a share)")
    if settings.register.max_rows < 1:
        raise ConfigError(f"{source}: [register] max_rows must be at least 1")
    return settings


# -- demo credentials ----------------------------------------------------------------------------
# Values that ship in config.toml (or as defaults) for the embedded local world. Anyone who has
# the repository has them: fine on 127.0.0.1, a hole anywhere residents' phones can reach.
DEMO_VALUES: dict[tuple[str, str], tuple[str, ...]] = {
    ("server", "link_secret"): ("local-demo-link-secret", "change-me-link-secret", ""),
    ("dashboard", "password"): ("linli-demo",),
    ("wecom", "secret"): ("local-world-wecom-secret",),
    ("wecom", "token"): ("LinliDemoToken",),
    ("wecom", "encoding_aes_key"): ("DoGSgGYHvHZ1kpKiLeN/CkVCF2nfZMlKuaRTqkebPek",),
    ("oa", "app_secret"): ("local-world-oa-secret",),
    ("oa", "token"): ("LinliDemoOaToken",),
    ("oa", "encoding_aes_key"): ("IAwXHcDruPbdm2v2HhxYwWPtMLgYWsckWfoHVwFg8KA",),
}
LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", "0.0.0.0"}


def is_local_url(url: str) -> bool:
    """True when a URL names this machine or the local network's mDNS names (*.local)."""
    try:
        host = (urlsplit(url).hostname or "").lower()
    except ValueError:
        return False
    return host in LOCAL_HOSTS or host.startswith("127.") or host.endswith(".local") or host == ""


def deployment_problems(settings: Settings) -> list[str]:
    """Every demo credential still in use while server.public_url reaches beyond this machine,
    each as one sentence naming the key and how to set it. Empty when the URL is local."""
    if is_local_url(settings.server.public_url):
        return []
    out = []
    for (section, key), demo in DEMO_VALUES.items():
        value = getattr(getattr(settings, section), key)
        if value not in demo:
            continue
        env = f"LINLI_{section.upper()}_{key.upper()}"
        what = "is empty" if value == "" else "is still the demo value from the repository"
        fix = {"link_secret": " (or run `linli init`, which writes a random one into the config file)",
               "encoding_aes_key": " to the 43-character EncodingAESKey from the platform console",
               "token": " to the Token from the platform console",
               "secret": " to the app's Secret from the WeCom console",
               "app_secret": " to the AppSecret from the Official Account console"}.get(key, "")
        out.append(f"[{section}] {key} {what}; set {env}{fix}")
    return out


def generate_secret() -> str:
    return secrets.token_urlsafe(32)


def write_key(path: str | Path, section: str, key: str, value: str) -> None:
    """Set `key = "value"` in [section] of a TOML file in place, keeping every other line and
    comment: the key's line is replaced (its trailing comment kept), else the key is added under
    the section's header, else the section is appended."""
    p = Path(path)
    text = p.read_text(encoding="utf-8")
    quoted = '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    header = re.compile(rf"^\[{re.escape(section)}\][ \t]*(#.*)?$", re.M)
    m = header.search(text)
    if m is None:
        text = text.rstrip("\n") + f"\n\n[{section}]\n{key} = {quoted}\n"
    else:
        nxt = re.compile(r"^\[", re.M).search(text, m.end())
        end = nxt.start() if nxt else len(text)
        body = text[m.end():end]
        line = re.compile(rf'^([ \t]*{re.escape(key)}[ \t]*=[ \t]*)("(?:[^"\\]|\\.)*"|\'[^\']*\'|[^\s#]+)', re.M)
        if line.search(body):
            body = line.sub(lambda k: k.group(1) + quoted, body, count=1)
        else:
            body = f"\n{key} = {quoted}" + body
        text = text[:m.end()] + body + text[end:]
    p.write_text(text, encoding="utf-8")


def default_config_text() -> str:
    """The repository's config.toml (shipped with the package): every section, commented, set up
    for the embedded local world."""
    return resources.shipped("config.toml").read_text(encoding="utf-8")


def write_default(path: str | Path) -> bool:
    """Write the commented default config to `path` (creating its directory) unless a file is
    already there. True when it wrote one; an existing file is never touched. A path that cannot
    be written (a directory, no permission) is a ConfigError naming it."""
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"{path}: is a directory, not a config file")
    if p.exists():
        return False
    text = default_config_text()
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # a file where the directory should be, no permission
        raise ConfigError(f"{path}: cannot create its directory: {e.strerror or e}") from None
    try:
        # "x": never overwrite a file that appeared since the check above
        with p.open("x", encoding="utf-8") as f:
            f.write(text)
    except FileExistsError:
        return False
    except OSError as e:
        raise ConfigError(f"{path}: cannot write the config file: {e.strerror or e}") from None
    return True
