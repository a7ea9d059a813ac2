"""Settings: config.toml read once into frozen dataclasses, with LINLI_* environment overrides.

Every key can be overridden by an environment variable named LINLI_<SECTION>_<KEY>
(e.g. LINLI_WECOM_SECRET, LINLI_DASHBOARD_PASSWORD); that is how secrets stay out of the file.
A wrong or missing key fails at start-up with a ConfigError naming the key and the file.
"""
from __future__ import annotations

import base64
import dataclasses
import os
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path

SECRET_KEYS = {"secret", "token", "encoding_aes_key", "app_secret", "password", "link_secret", "feed_token"}


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


@dataclass(frozen=True)
class WecomSettings:
    corp_id: str = ""
    agent_id: int = 0
    secret: str = ""
    token: str = ""
    encoding_aes_key: str = ""
    api_base: str = "https://qyapi.weixin.qq.com"
    # documented send limits (PLATFORM.md); the token bucket uses them
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


@dataclass(frozen=True)
class RelaySettings:
    # minutes each hop has before it escalates
    grid_deadline_min: int = 3
    compound_deadline_min: int = 3
    building_deadline_min: int = 5


@dataclass(frozen=True)
class EscalationSettings:
    # minutes after issue; red is faster
    remind_after_min: dict = field(
        default_factory=lambda: {"blue": 60, "yellow": 30, "orange": 15, "red": 10})
    followup_after_min: dict = field(
        default_factory=lambda: {"blue": 120, "yellow": 60, "orange": 30, "red": 20})
    default_expiry_h: int = 12


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
        "elderly": ["老人", "独居", "一个人在家", "看看", "行动不便", "生病"],
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
class WorldSettings:
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
    world: WorldSettings = WorldSettings()
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
                if f.name not in ("timezone", "source")}
    unknown = set(raw) - set(sections) - {"timezone"}
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
    settings = Settings(**kwargs, timezone=_coerce(tz, str, f"{source}: timezone"), source=source)
    _check_aes_key(settings.wecom.encoding_aes_key, f"{source}: [wecom] encoding_aes_key")
    _check_aes_key(settings.oa.encoding_aes_key, f"{source}: [oa] encoding_aes_key")
    if settings.wecom.corp_id and not settings.wecom.token:
        raise ConfigError(f"{source}: [wecom] token is missing (or set LINLI_WECOM_TOKEN)")
    if settings.oa.app_id and not settings.oa.token:
        raise ConfigError(f"{source}: [oa] token is missing (or set LINLI_OA_TOKEN)")
    if not 0 <= settings.server.timestamp_window_s:
        raise ConfigError(f"{source}: [server] timestamp_window_s must be >= 0")
    return settings
