"""流动小红旗: each building's month in points, from what Linli already records, plus the
cross-evaluation scores compound branches enter; staff publish the top ones as a notice.

The parts (keys of config [scores] weights, which sum to 100 points), each normalised to 0..1:

  ack_share  share of the households the month's real warnings targeted that answered
             (coverage_counts; drills, notices and lifts do not count)
  ack_speed  median minutes from such a warning to each household's first answer:
             1 - median / speed_cap_min, never below 0 (0 min: full points; speed_cap_min or later: none);
             a building the warnings targeted where no household answered at all scores 0 (it was
             reached: its silence is not a gap to fill with the median)
  requests   residents' requests (not wishes) filed in the month, per active household,
             divided by the highest building's figure (reporting is taking part)
  resolved   share of the month's requests resolved (so far)
  rating     the month's requests' average rating: (avg - 1) / 4
  turnout    households that voted / households that could, over consultations closed (or due to
             close) in the month; cancelled ones are not counted
  claims     volunteer hours (a claim without recorded hours counts claim_default_h) of requests
             and wishes claimed by the building's residents and resolved in the month, per active
             household, divided by the highest building's figure
  peer       the compound branches' cross-evaluation (安全 / 卫生 / 文明, 0..10): per category the
             average over evaluators (each evaluator's newest entry), then the average of the
             categories, / 10

Missing data, decided:
- a part with no data for any building that month (no real warning, no consultation, nobody
  evaluated …) is left out and its weight is shared among the others in proportion to their
  weights; the page says which parts were left out;
- a building with no data for a rate part (ack_share, ack_speed, resolved, rating, turnout, peer)
  while others have some gets that part's community median (of the buildings that have data): no
  warning reached it, nobody evaluated it — that is not its fault, and neither a zero nor full
  marks would be fair. The row marks the part as imputed ("中位数"). With very few buildings
  evaluated the median is theirs (one building scored 9: every unscored one gets 9 too), so the
  evaluation only separates buildings once the branches score most of them. The count parts (requests,
  claims) have no such case: no request filed, no hours given is a zero, not a gap.

The ranking is community-wide (every building with active households); `within` only hides rows a
viewer may not see, the ranks stay the community's. Equal totals (to 1e-6 points) are ordered by
natural building order (grid, compound, building: 2栋 before 10栋) and still get distinct ranks.

Publishing freezes the month: score_months keeps the whole ranking as it was, with the notice's
alert id; month_scores reads a published month from there, so later data (a late rating, a peer
score) never changes it, and publishing a month twice is refused.
"""
from __future__ import annotations

import re
import statistics
from dataclasses import dataclass

from bot.core import texts, vocabulary
from bot.core.clock import local
from bot.core.config import Settings
from bot.core.errors import CodedError
from bot.core.filters import roles_of
from bot.core.tables import natural_key
from bot.data import org
from bot.data import scores as scores_db
from bot.domain import alerts, areas
from bot.domain.reports import month_bounds

PARTS = ("ack_share", "ack_speed", "requests", "resolved", "rating", "turnout", "claims", "peer")
RATE_PARTS = ("ack_share", "ack_speed", "resolved", "rating", "turnout", "peer")
COUNT_PARTS = ("requests", "claims")
# the schema's categories and their own names (more words: vocabulary [scores.categories])
CATEGORIES = {"safety": "安全", "hygiene": "卫生", "civility": "文明"}
_EPS = 1e-6


class ScoreError(CodedError):
    """Something a person can fix; `code` picks the sentence in templates/messages/scores/error.j2."""
    template = "messages/scores/error.j2"


@dataclass
class Board:
    """A month's ranking: `rows` in rank order (cut to the viewer's area), each a dict with rank,
    building, compound, grid, total (points), parts {key: {raw, norm, points, imputed}} and peer."""
    month: str
    rows: list[dict]
    weights: dict[str, float]          # the weights used (after sharing out the left-out parts)
    left_out: list[str]                # parts with no data for anyone this month
    published: dict | None = None      # {at, by, alert_id} once published (the rows are then frozen)
    total_buildings: int = 0           # in the whole ranking, not only the viewer's rows

    @property
    def empty(self) -> bool:
        return not self.weights


# -- months ------------------------------------------------------------------------------------------
def _store_settings(deps) -> tuple:
    store = getattr(deps, "store", deps)
    settings = getattr(deps, "settings", None) or Settings()
    return store, settings


def current_month(now: float, tz: str = "Asia/Shanghai") -> str:
    return local(now, tz).strftime("%Y-%m")


def shift(month: str, by: int) -> str:
    y, m = (int(x) for x in month.split("-"))
    n = y * 12 + (m - 1) + by
    return f"{n // 12:04d}-{n % 12 + 1:02d}"


def check_month(month: str) -> str:
    """'YYYY-MM' as given, or ScoreError('bad_month')."""
    m = re.fullmatch(r"(\d{4})-(\d{1,2})", (month or "").strip())
    if m is None or not 1 <= int(m.group(2)) <= 12 or not 2000 <= int(m.group(1)) <= 2100:
        raise ScoreError("bad_month", value=month)
    return f"{int(m.group(1)):04d}-{int(m.group(2)):02d}"


_MONTH_WORD = re.compile(r"^(?:(?P<y>\d{4})\s*[-年/.]\s*)?(?P<m>\d{1,2})\s*月?(?:份)?$")


def parse_month(word: str | None, now: float, tz: str = "Asia/Shanghai") -> str:
    """A month as people write it: '' (this month), 本月 / 上月, '11月' (the latest November that is
    not in the future), '2026年11月', '2026-11'."""
    word = (word or "").strip()
    this = current_month(now, tz)
    if not word or word in vocabulary.words("scores.this_month"):
        return this
    if word in vocabulary.words("scores.last_month"):
        return shift(this, -1)
    m = _MONTH_WORD.match(word)
    if m is None or not (m.group("y") or "月" in word or "-" in word):
        raise ScoreError("bad_month", value=word)
    month = int(m.group("m"))
    if not 1 <= month <= 12:
        raise ScoreError("bad_month", value=word)
    year = int(m.group("y")) if m.group("y") else int(this[:4]) - (1 if f"{this[:4]}-{month:02d}" > this else 0)
    return check_month(f"{year}-{month}")


def month_zh(month: str) -> str:
    y, m = month.split("-")
    return f"{y}年{int(m)}月"


def _not_future(month: str, now: float, tz: str) -> None:
    if month > current_month(now, tz):
        raise ScoreError("future_month", month=month_zh(month))


# -- the computation -----------------------------------------------------------------------------------
def _building_order(b: dict) -> tuple:
    return (natural_key(b["grid"] or ""), natural_key(b["compound"] or ""), natural_key(b["name"]), b["id"])


def compute(store, settings: Settings, month: str) -> dict:
    """The month's ranking from the live rows (what month_scores shows until the month is published):
    {rows (every building, rank order), weights, left_out}."""
    tz = settings.timezone
    cfg = settings.scores
    year, mon = (int(x) for x in month.split("-"))
    start, end = month_bounds(year, mon, tz)
    blds = sorted(scores_db.buildings(store), key=_building_order)
    cov = scores_db.ack_coverage(store, start, end)
    delays = scores_db.ack_delays(store, start, end)
    reqs = scores_db.request_counts(store, start, end)
    votes = scores_db.turnout(store, start, end)
    claimed = scores_db.claims(store, start, end, float(cfg.claim_default_h))
    peers = scores_db.peer_averages(store, month)
    cap = max(float(cfg.speed_cap_min), 1e-9)

    raw: dict[str, dict[int, dict]] = {p: {} for p in PARTS}
    for b in blds:
        bid, hh = b["id"], b["households"]
        if (c := cov.get(bid)) and c["targeted"]:
            raw["ack_share"][bid] = {"value": c["acked"] / c["targeted"], "acked": c["acked"],
                                     "targeted": c["targeted"]}
        if delays.get(bid):
            minutes = statistics.median(delays[bid]) / 60
            raw["ack_speed"][bid] = {"value": max(0.0, 1 - minutes / cap), "minutes": round(minutes, 1),
                                     "answers": len(delays[bid])}
        elif c and c["targeted"]:  # warned, and nobody answered: as slow as can be, not a gap
            raw["ack_speed"][bid] = {"value": 0.0, "minutes": None, "answers": 0}
        r = reqs.get(bid)
        reported = r["reported"] if r else 0
        raw["requests"][bid] = {"value": reported / hh if hh else 0.0, "reported": reported}
        if reported:
            raw["resolved"][bid] = {"value": r["resolved"] / reported, "resolved": r["resolved"],
                                    "reported": reported}
        if r and r["rated"]:
            raw["rating"][bid] = {"value": (r["rating"] - 1) / 4, "rating": round(r["rating"], 2),
                                  "rated": r["rated"]}
        if (v := votes.get(bid)) and v["voters"]:
            raw["turnout"][bid] = {"value": v["voted"] / v["voters"], "voted": v["voted"], "voters": v["voters"]}
        k = claimed.get(bid)
        hours = float(k["hours"]) if k else 0.0
        raw["claims"][bid] = {"value": hours / hh if hh else 0.0, "claims": k["claims"] if k else 0,
                              "hours": round(hours, 1)}
        if p := peers.get(bid):
            cats = {c: round(p[c]["avg"], 2) for c in CATEGORIES if c in p}
            raw["peer"][bid] = {"value": statistics.fmean(p[c]["avg"] for c in cats) / 10, **cats,
                                "evaluators": max(p[c]["evaluators"] for c in cats)}

    # which parts anyone has data for; the count parts only when someone is above zero
    norms: dict[str, dict[int, float]] = {}
    for part in PARTS:
        values = raw[part]
        if part in COUNT_PARTS:
            top = max((d["value"] for d in values.values()), default=0.0)
            if top > 0:
                norms[part] = {bid: d["value"] / top for bid, d in values.items()}
        elif values:
            norms[part] = {bid: min(1.0, max(0.0, d["value"])) for bid, d in values.items()}
    medians = {part: statistics.median(norms[part].values()) for part in RATE_PARTS if part in norms}

    configured = {p: float(cfg.weights.get(p, 0) or 0) for p in PARTS}
    live = {p: w for p, w in configured.items() if p in norms and w > 0}
    total_w = sum(live.values())
    weights = {p: w * 100 / total_w for p, w in live.items()} if total_w else {}
    left_out = [p for p in PARTS if configured[p] > 0 and p not in norms]

    rows = []
    for b in blds:
        bid, parts, total = b["id"], {}, 0.0
        for part in PARTS:
            if part not in weights:
                parts[part] = {"raw": raw[part].get(bid), "norm": None, "points": None, "imputed": False}
                continue
            imputed = bid not in norms[part]
            norm = medians[part] if imputed else norms[part][bid]
            points = weights[part] * norm
            total += points
            parts[part] = {"raw": raw[part].get(bid), "norm": round(norm, 4), "points": round(points, 2),
                           "imputed": imputed}
        rows.append({"building_id": bid, "building": b["name"], "compound": b["compound"] or "",
                     "compound_id": b["compound_id"], "grid": b["grid"] or "", "path": b["path"],
                     "households": b["households"], "total": round(total, 1), "exact": total, "parts": parts,
                     "peer": raw["peer"].get(bid)})
    order = {b["id"]: i for i, b in enumerate(blds)}
    rows.sort(key=lambda r: (-round(r["exact"], 6), order[r["building_id"]]))
    for i, r in enumerate(rows, 1):
        r["rank"] = i
        del r["exact"]
    return {"rows": rows, "weights": {p: round(w, 4) for p, w in weights.items()}, "left_out": left_out}


def month_scores(deps, month: str, within=None) -> Board:
    """The month's ranking. `deps`: the App (or anything with .store and .settings) or a Store
    (default settings). `within`: building ids the viewer may see (None: all); ranks stay the
    community's. A published month comes frozen from score_months."""
    store, settings = _store_settings(deps)
    month = check_month(month)
    frozen = scores_db.published(store, month)
    if frozen is not None:
        data = frozen["ranking"]
        published = {"at": frozen["published_at"], "by": frozen["published_by"], "alert_id": frozen["alert_id"]}
    else:
        data, published = compute(store, settings, month), None
    rows = data["rows"]
    if within is None:
        shown = rows
    else:
        allowed = set(within)
        shown = [r for r in rows if r["building_id"] in allowed]
    return Board(month=month, rows=shown, weights=data["weights"], left_out=data["left_out"],
                 published=published, total_buildings=len(rows))


# -- cross-evaluation ---------------------------------------------------------------------------------
def category_of(word: str) -> str | None:
    word = word.strip()
    for key, name in CATEGORIES.items():
        if word == name or word in vocabulary.words(f"scores.categories.{key}"):
            return key
    return None


def category_words() -> list[str]:
    """Every word that names a category, longest first (for a parser's alternation)."""
    found = set(CATEGORIES.values())
    for key in CATEGORIES:
        found.update(vocabulary.words(f"scores.categories.{key}"))
    return sorted(found, key=len, reverse=True)


def may_evaluate(store, actor: dict | None) -> bool:
    """Staff (with a register entry), or a lead of a compound."""
    if not actor or actor.get("id") is None:
        return False
    return "staff" in roles_of(actor) or bool(scores_db.compounds_led(store, actor["id"]))


def resolve_building(store, word, actor: dict | None = None) -> dict:
    """A building by id or words; several buildings of that name: the one outside the actor's own
    compounds if exactly one is, else ScoreError('ambiguous_building') naming them."""
    if isinstance(word, int) or (isinstance(word, str) and word.strip().isdigit()):
        row = scores_db.building(store, int(word))
        if row is None:
            raise ScoreError("unknown_building", value=str(word))
        return row
    found = scores_db.find_buildings(store, str(word))
    if not found:
        raise ScoreError("unknown_building", value=str(word).strip())
    if len(found) > 1 and actor and actor.get("id") is not None:
        own = set(scores_db.compounds_led(store, actor["id"]))
        others = [b for b in found if b["compound_id"] not in own]
        if len(others) == 1:
            return others[0]
    if len(found) > 1:
        raise ScoreError("ambiguous_building", value=str(word).strip(),
                         options="、".join(f"{b['compound']}/{b['name']}" for b in found[:8]))
    return found[0]


def enter_peer_scores(deps, actor: dict, building, month: str | None, scores: dict[str, float]) -> dict:
    """A compound lead's (or staff's) 互评 of a building of ANOTHER compound: {category: 0..10}.
    Entering again replaces theirs. All or nothing. Returns {building, month, scores}."""
    store, settings, now = deps.store, deps.settings, deps.clock.now()
    tz = settings.timezone
    if not may_evaluate(store, actor):
        raise ScoreError("not_allowed")
    month = check_month(month) if month else current_month(now, tz)
    _not_future(month, now, tz)
    if scores_db.published(store, month) is not None:
        raise ScoreError("month_published", month=month_zh(month))
    b = building if isinstance(building, dict) and "compound_id" in building else resolve_building(store, building, actor)
    if "staff" not in roles_of(actor) and b["compound_id"] in scores_db.compounds_led(store, actor["id"]):
        raise ScoreError("own_compound", building=f"{b['compound']}/{b['name']}")
    if not scores:
        raise ScoreError("no_scores")
    clean = {}
    for category, score in scores.items():
        if category not in CATEGORIES:
            raise ScoreError("unknown_category", value=category)
        try:
            value = float(score)
        except (TypeError, ValueError):
            raise ScoreError("bad_score", category=CATEGORIES[category], value=str(score)) from None
        if not 0 <= value <= 10:
            raise ScoreError("bad_score", category=CATEGORIES[category], value=str(score))
        clean[category] = value
    with store.transaction():
        for category, value in clean.items():
            scores_db.put_peer_score(store, month, b["id"], category, actor["id"], value, now)
        store.log(now, "scores.peer", "node", b["id"], actor["id"], month=month, scores=clean)
    return {"building": b, "month": month, "scores": clean}


def enter_peer_score(deps, actor: dict, building, month: str | None, category: str, score: float) -> dict:
    """One category's score (see enter_peer_scores)."""
    return enter_peer_scores(deps, actor, building, month, {category: score})


def peer_choices(store, actor: dict | None) -> list[dict]:
    """The buildings this person may evaluate (every one for staff, other compounds' for a lead),
    in natural order; [] when they may not evaluate."""
    if not may_evaluate(store, actor):
        return []
    own = set() if "staff" in roles_of(actor) else set(scores_db.compounds_led(store, actor["id"]))
    return [b for b in sorted(scores_db.buildings(store), key=_building_order) if b["compound_id"] not in own]


def ranking_text(deps, month: str, within=None, *, limit: int | None = None, staff: bool = False) -> str:
    """The month's ranking as a message (chat's 红旗榜, a CLI report): the first `limit` rows of
    the viewer's area, whether it is published, the parts left out; staff are told how to publish."""
    store, settings = _store_settings(deps)
    board = month_scores(deps, month, within=within)
    rows = board.rows if limit is None else board.rows[:limit]
    published = local(board.published["at"], settings.timezone).strftime("%m-%d %H:%M") if board.published else ""
    return texts.render("messages/scores/ranking.j2", month=month_zh(board.month), rows=rows if not board.empty else [],
                        more=len(board.rows) > len(rows), total=len(board.rows), left_out=board.left_out,
                        published=published, top_n=settings.scores.top_n, staff=staff)


# -- the ranking as a table (the dashboard's export, a CLI report) ------------------------------------------
def table_rows(board: Board, settings: Settings | None = None) -> list[list]:
    """Header + one row per building in rank order: rank, grid, compound, building, households,
    total, each configured part's points (blank: left out this month), the three peer averages and
    the parts imputed with the median. Words from templates/messages/scores/_labels.j2."""
    settings = settings or Settings()
    L = texts.env().get_template("messages/scores/_labels.j2").module
    parts = [p for p in PARTS if settings.scores.weights.get(p)]
    head = [L.COLUMNS[c] for c in ("rank", "grid", "compound", "building", "households", "total")]
    head += [L.PART[p] for p in parts]
    head += [L.COLUMNS[c] for c in ("peer_safety", "peer_hygiene", "peer_civility", "imputed")]
    out = [head]
    for r in board.rows:
        cells = [r["rank"], r["grid"], r["compound"], r["building"], r["households"], r["total"]]
        for p in parts:
            pts = r["parts"][p]["points"]
            cells.append("" if pts is None else round(pts, 1))
        peer = r["peer"] or {}
        cells += [peer.get(c, "") for c in CATEGORIES]
        cells.append("、".join(L.PART[p] for p in parts if r["parts"][p]["imputed"]))
        out.append(cells)
    return out


# -- publishing ----------------------------------------------------------------------------------------
def notice_text(board: Board, top_n: int, community: str = "") -> str:
    return texts.render("messages/scores/notice.j2", month=month_zh(board.month), top=board.rows[:top_n],
                        community=community)


def _prepare(deps, actor: dict, month: str | None) -> dict:
    """What publishing `month` would send now (inside the caller's transaction when publishing):
    {month, data, board, top, text, scope}, or the ScoreError that refuses it."""
    store, settings, now = deps.store, deps.settings, deps.clock.now()
    tz = settings.timezone
    if "staff" not in roles_of(actor):
        raise ScoreError("staff_only")
    month = check_month(month) if month else current_month(now, tz)
    _not_future(month, now, tz)
    done = scores_db.published(store, month)
    if done is not None:
        raise ScoreError("already_published", month=month_zh(month),
                         at=local(done["published_at"], tz).strftime("%m-%d %H:%M"))
    data = compute(store, settings, month)
    if not data["weights"] or not data["rows"]:
        raise ScoreError("no_data", month=month_zh(month))
    board = Board(month=month, rows=data["rows"], weights=data["weights"], left_out=data["left_out"])
    top_n = max(1, int(settings.scores.top_n))
    scope = _community_scope(store, actor)
    text = notice_text(board, top_n, org.community_name(store, scope[0] if scope else None))
    return {"month": month, "data": data, "board": board, "top": board.rows[:top_n], "text": text, "scope": scope}


def preview(deps, actor: dict, month: str | None = None) -> dict:
    """What `publish` would send, without sending it (chat's 发布红旗榜 shows this and waits for
    确认): {month, text (the notice exactly as it would go out), top, left_out}. Refused as publish
    would be (staff only, a future month, already published, no data)."""
    p = _prepare(deps, actor, month)
    return {"month": p["month"], "text": p["text"], "top": p["top"], "left_out": p["data"]["left_out"]}


def publish(deps, actor: dict, month: str | None = None, *, expected_text: str | None = None) -> dict:
    """Staff publish a month: the top N (config top_n) go down the chain as a 通知 to the whole
    community, and the ranking is frozen with the notice's id. Twice: ScoreError('already_published').
    `expected_text`: the notice a preview showed; when today's figures would send another text
    (a rating or a peer score came in meanwhile), ScoreError('changed') and nothing is sent.
    Returns {month, alert_id, top}."""
    store, now = deps.store, deps.clock.now()
    with store.transaction():
        p = _prepare(deps, actor, month)
        if expected_text is not None and p["text"] != expected_text:
            raise ScoreError("changed", month=month_zh(p["month"]))
        month, top = p["month"], p["top"]
        alert_id = alerts.issue(deps, alerts.Draft(type=alerts.NOTICE, colour="blue", text=p["text"], scope=p["scope"],
                                                   issuer_id=actor.get("id")))
        scores_db.publish(store, month, p["data"], now, actor.get("id"), alert_id)
        store.log(now, "scores.publish", "alert", alert_id, actor.get("id"), month=month,
                  top=[r["building_id"] for r in top])
    return {"month": month, "alert_id": alert_id, "top": top}


def _community_scope(store, actor: dict) -> list[int]:
    """[] (the whole register) — or, for staff of one community in a register of several, theirs."""
    if areas.buildings_of(store, actor) is None or not actor.get("node_id"):
        return []
    return [actor["node_id"]]

