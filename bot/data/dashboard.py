"""Read-only queries that only the dashboard's pages, API and exports need.

`scope` everywhere is the viewer's building ids (a lead's area) or None for everything; the cut
is made in SQL so a lead's page never loads a neighbour's rows. Alerts by id, their scope and
the tree come from bot.data.alerts / bot.data.org.
"""
from __future__ import annotations

from bot.data.store import Store


def _in(scope, column: str) -> tuple[str, list]:
    """` AND column IN (...)` for a scope (nothing for None; an empty scope matches nothing)."""
    if scope is None:
        return "", []
    ids = sorted(scope)
    return f" AND {column} IN ({','.join('?' * len(ids)) or 'NULL'})", ids


# -- the alert list (its household totals: bot.data.alerts.households_in) ----------------------------------------------------------------------------------
def acked_in(store: Store, alert_id: int, building_ids) -> int:
    """Households in these buildings that acked the alert."""
    cond, params = _in(building_ids, "h.building_id")
    return store.scalar(
        "SELECT COUNT(DISTINCT a.household_id) FROM acks a JOIN households h ON h.id=a.household_id "
        f"WHERE a.alert_id=?{cond}", (alert_id, *params))


def superseded_by(store: Store, alert_id: int) -> dict | None:
    """The newest alert that updates or lifts this one (the page links to it)."""
    return store.q1("SELECT id FROM alerts WHERE supersedes_id=? ORDER BY id DESC LIMIT 1", (alert_id,))


# -- the composer -------------------------------------------------------------------------------------
def household_counts(store: Store) -> dict[int, int]:
    """Active households per building id."""
    return {r["building_id"]: r["n"] for r in store.q(
        "SELECT building_id, COUNT(*) AS n FROM households WHERE active=1 GROUP BY building_id")}


# -- the alert page -----------------------------------------------------------------------------------
def first_ack_times(store: Store, alert_id: int, scope) -> list[float]:
    """When each household (in scope) first acked, in order."""
    # ack_firsts is kept by a trigger: no GROUP BY over every ack on each live refresh
    cond, params = _in(scope, "building_id")
    return [r[0] for r in store.conn.execute(
        f"SELECT at FROM ack_firsts WHERE alert_id=?{cond} ORDER BY at", (alert_id, *params))]


def hops(store: Store, alert_id: int) -> list[dict]:
    """The alert's hops with their node, group, lead and who marked them done, in tree order."""
    return store.q(
        "SELECT h.*, n.name AS node, n.kind AS node_kind, n.path, g.name AS grp, g.kind AS gkind, "
        "l.name AS lead, d.name AS done_by_name FROM hops h JOIN nodes n ON n.id=h.node_id "
        "LEFT JOIN chat_groups g ON g.id=h.group_id LEFT JOIN residents l ON l.id=h.lead_id "
        "LEFT JOIN residents d ON d.id=h.done_by WHERE h.alert_id=? ORDER BY n.path, h.id",
        (alert_id,))


def unacked(store: Store, alert_id: int, scope) -> list[dict]:
    """Households in the alert's (and the viewer's) scope with no ack yet, by compound/building."""
    cond, params = _in(scope, "h.building_id")
    return store.q(
        "SELECT h.id, h.unit, h.room, b.id AS building_id, COALESCE(c.name, '') || b.name AS building, "
        "EXISTS (SELECT 1 FROM deliveries d WHERE d.alert_id=s.alert_id AND d.household_id=h.id) AS reached, "
        "(SELECT GROUP_CONCAT(r.vulnerable, '、') FROM residents r WHERE r.household_id=h.id "
        "AND r.active=1 AND r.vulnerable!='') AS vulnerable "
        "FROM alert_scope s JOIN households h ON h.building_id=s.building_id AND h.active=1 "
        "JOIN nodes b ON b.id=h.building_id LEFT JOIN nodes c ON c.id=b.parent_id "
        "WHERE s.alert_id=? AND NOT EXISTS (SELECT 1 FROM acks a WHERE a.alert_id=s.alert_id "
        f"AND a.household_id=h.id){cond} ORDER BY c.name, b.id, h.id", (alert_id, *params))


def followups(store: Store, alert_id: int, scope) -> list[dict]:
    """One-to-one follow-ups of the alert in scope: open ones first."""
    cond, params = _in(scope, "h.building_id")
    return store.q(
        "SELECT f.*, r.name, r.vulnerable, h.label AS room, w.name AS worker FROM followups f "
        "JOIN residents r ON r.id=f.resident_id JOIN households h ON h.id=f.household_id "
        f"LEFT JOIN residents w ON w.id=f.worker_id WHERE f.alert_id=?{cond} "
        "ORDER BY f.state DESC, f.id", (alert_id, *params))


def fingerprint(store: Store, alert_id: int) -> tuple:
    """Cheap summary that changes whenever anything on the alert page would."""
    return tuple(store.conn.execute(
        """SELECT (SELECT COALESCE(MAX(id), 0) FROM acks WHERE alert_id=:a),
                  (SELECT COUNT(*) FROM deliveries WHERE alert_id=:a),
                  (SELECT COUNT(*) || ':' || COALESCE(SUM(escalation_level), 0) || ':' ||
                          COALESCE(MAX(done_at), 0) || ':' || COALESCE(GROUP_CONCAT(state), '')
                   FROM (SELECT state, escalation_level, done_at FROM hops
                         WHERE alert_id=:a ORDER BY id)),
                  (SELECT COUNT(*) || ':' || COALESCE(SUM(state='closed'), 0) FROM followups
                   WHERE alert_id=:a),
                  (SELECT state FROM alerts WHERE id=:a)""", {"a": alert_id}).fetchone())


# -- exports ------------------------------------------------------------------------------------------
def delivery_rows(store: Store, alert_id: int, scope) -> list[dict]:
    """One row per household in the alert's (and the viewer's) scope: how it was reached, its
    first ack (when, by whom, how), its vulnerable members and its follow-up."""
    cond, params = _in(scope, "h.building_id")
    return store.q(
        """SELECT c.name AS compound, b.name AS building, h.label AS household,
                  d.via, d.at AS reached_at, a.at AS acked_at, a.channel, a.answer,
                  COALESCE(p.name, r.name) AS acked_by,
                  (SELECT GROUP_CONCAT(v.vulnerable, '、') FROM residents v WHERE v.household_id = h.id
                   AND v.active = 1 AND v.vulnerable != '') AS vulnerable,
                  f.state AS followup, w.name AS worker
           FROM alert_scope s JOIN households h ON h.building_id = s.building_id AND h.active = 1
           JOIN nodes b ON b.id = h.building_id LEFT JOIN nodes c ON c.id = b.parent_id
           LEFT JOIN deliveries d ON d.alert_id = s.alert_id AND d.household_id = h.id
           -- the household's first ack: when it was covered, and by whom
           LEFT JOIN acks a ON a.id = (SELECT id FROM acks WHERE alert_id = s.alert_id
                                       AND household_id = h.id ORDER BY at, id LIMIT 1)
           LEFT JOIN residents r ON r.id = a.resident_id
           LEFT JOIN residents p ON p.id = a.by_proxy_id
           LEFT JOIN followups f ON f.id = (SELECT id FROM followups WHERE alert_id = s.alert_id
                                            AND household_id = h.id ORDER BY id LIMIT 1)
           LEFT JOIN residents w ON w.id = f.worker_id
           WHERE s.alert_id = ?""" + cond + " ORDER BY c.name, b.id, h.id", (alert_id, *params))


# -- exports that say what an answer means (delivery report v2) ------------------------------------
def delivery_report(store: Store, alert_id: int, scope) -> list[dict]:
    """One row per household in the alert's (and the viewer's) scope, for the delivery report:
    how it was reached; when it first answered; its latest answer, who gave it and through which
    door (a household that said "1" and later "2" needs help, whoever answered first); its
    vulnerable members and its follow-up. A vulnerable-only warning lists the households it was
    for. Sorting is the caller's (buildings sort naturally)."""
    cond, params = _in(scope, "h.building_id")
    return store.q(
        """SELECT c.name AS compound, b.id AS building_id, b.name AS building, h.label AS household,
                  d.via, d.at AS reached_at,
                  (SELECT MIN(at) FROM acks WHERE alert_id = s.alert_id AND household_id = h.id) AS acked_at,
                  a.channel, a.answer, a.by_proxy_id, a.at AS answered_at,
                  r.name AS answered_by, p.name AS proxy_name,
                  (SELECT GROUP_CONCAT(v.vulnerable, '、') FROM residents v WHERE v.household_id = h.id
                   AND v.active = 1 AND v.vulnerable != '') AS vulnerable,
                  f.state AS followup, f.outcome AS followup_outcome, w.name AS worker
           FROM alert_scope s JOIN households h ON h.building_id = s.building_id AND h.active = 1
           JOIN nodes b ON b.id = h.building_id LEFT JOIN nodes c ON c.id = b.parent_id
           LEFT JOIN deliveries d ON d.alert_id = s.alert_id AND d.household_id = h.id
           LEFT JOIN acks a ON a.id = (SELECT id FROM acks WHERE alert_id = s.alert_id
                                       AND household_id = h.id ORDER BY at DESC, id DESC LIMIT 1)
           LEFT JOIN residents r ON r.id = a.resident_id
           LEFT JOIN residents p ON p.id = a.by_proxy_id
           LEFT JOIN followups f ON f.id = (SELECT id FROM followups WHERE alert_id = s.alert_id
                                            AND household_id = h.id ORDER BY id LIMIT 1)
           LEFT JOIN residents w ON w.id = f.worker_id
           JOIN alerts al ON al.id = s.alert_id
           WHERE s.alert_id = ?
             -- a warning for vulnerable households only: the households it was for
             AND (al.audience = '' OR EXISTS (SELECT 1 FROM alert_targets t WHERE t.alert_id = s.alert_id
                                              AND t.household_id = h.id))""" + cond, (alert_id, *params))


# -- the composer: who "vulnerable households only" can mean --------------------------------------
def vulnerable_labels(store: Store) -> list[str]:
    """The distinct vulnerable-category strings of active residents as the register spells them
    (one string may hold several categories: "独居老人、残疾")."""
    return [r["vulnerable"] for r in store.q(
        "SELECT DISTINCT vulnerable FROM residents WHERE active = 1 AND vulnerable != '' ORDER BY vulnerable")]


# -- warnings that did not go out -----------------------------------------------------------------
def _undelivered_where(scope) -> tuple[str, list]:
    where, params = "s.state IN ('dead', 'failed')", []
    if scope is not None:
        ids = sorted(scope)
        where += (" AND (s.alert_id IS NULL OR EXISTS (SELECT 1 FROM alert_scope x WHERE x.alert_id = s.alert_id"
                  f" AND x.building_id IN ({','.join('?' * len(ids)) or 'NULL'})))")
        params += ids
    return where, params


def undelivered_sends(store: Store, scope=None, limit: int = 300) -> list[dict]:
    """Sends that ended dead or failed, newest first, with their warning (if any). With a scope
    (the buildings of a community's staff), only sends of warnings touching those buildings and
    sends with no warning."""
    where, params = _undelivered_where(scope)
    return store.q(
        "SELECT s.id, s.key, s.channel, s.target, s.state, s.attempts, s.error_code, s.error, s.alert_id,"
        " s.purpose, s.created_at, s.sent_at, a.type AS alert_type, a.colour AS alert_colour,"
        " a.kind AS alert_kind, a.status AS alert_status FROM sends s LEFT JOIN alerts a ON a.id = s.alert_id"
        f" WHERE {where} ORDER BY s.id DESC LIMIT ?", (*params, limit))


def undelivered_count(store: Store, scope=None) -> int:
    where, params = _undelivered_where(scope)
    return store.scalar(f"SELECT COUNT(*) FROM sends s WHERE {where}", params)


def send_state(store: Store, send_id: int) -> dict | None:
    """One send's id, state and warning (what a retry from the dashboard checks first)."""
    return store.q1("SELECT id, state, alert_id FROM sends WHERE id = ?", (send_id,))


# -- the alert page, bounded (issue #15): each query reads at most one page or one aggregate --------
def _audience_ok(alias: str = "h") -> str:
    """A vulnerable-only warning counts only its target households (the same rule as coverage)."""
    return (f" AND ((SELECT audience FROM alerts WHERE id = :a) = '' OR EXISTS "
            f"(SELECT 1 FROM alert_targets t WHERE t.alert_id = :a AND t.household_id = {alias}.id))")


def _named_in(scope, column: str) -> tuple[str, dict]:
    """`_in` with named parameters (these queries use :a for the alert)."""
    if scope is None:
        return "", {}
    ids = sorted(scope)
    names = {f"s{i}": v for i, v in enumerate(ids)}
    return f" AND {column} IN ({','.join(':' + n for n in names) or 'NULL'})", names


def last_first_ack(store: Store, alert_id: int, scope) -> float | None:
    """When the last household in scope first acked (None: none has)."""
    cond, params = _in(scope, "building_id")
    return store.scalar(f"SELECT MAX(at) FROM ack_firsts WHERE alert_id=?{cond}", (alert_id, *params))


def first_ack_buckets(store: Store, alert_id: int, scope, start: float, width: float, n: int) -> list[tuple]:
    """First acks in `n` buckets of `width` seconds from `start` (the first also takes anything
    earlier, the last anything later): (bucket, count, first at, last at) of the non-empty ones,
    in time order. The curve reads `n` rows, not one per household."""
    if scope is None:
        # one range count per bucket on the (alert_id, at) index, its ends by two index seeks:
        # no row of ack_firsts reaches Python and no temporary sort is built
        rows = store.conn.execute(
            "WITH RECURSIVE b(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM b WHERE i + 1 < :n), "
            "r AS (SELECT i, CASE WHEN i = 0 THEN -1e300 ELSE :s + i * :w END AS lo, "
            "CASE WHEN i = :n - 1 THEN 1e300 ELSE :s + (i + 1) * :w END AS hi FROM b) "
            "SELECT i, (SELECT COUNT(*) FROM ack_firsts WHERE alert_id = :a AND at >= lo AND at < hi), "
            "(SELECT at FROM ack_firsts WHERE alert_id = :a AND at >= lo ORDER BY at LIMIT 1), "
            "(SELECT at FROM ack_firsts WHERE alert_id = :a AND at < hi ORDER BY at DESC LIMIT 1) FROM r",
            {"n": n, "s": start, "w": width, "a": alert_id}).fetchall()
        return [r for r in rows if r[1]]
    # a lead's few buildings: the (alert_id, at) index has no building, so group what is in scope
    cond, params = _in(scope, "building_id")
    return store.conn.execute(
        f"SELECT MIN(? - 1, MAX(0, CAST((at - ?) / ? AS INTEGER))) AS b, COUNT(*), MIN(at), MAX(at) "
        f"FROM ack_firsts WHERE alert_id=?{cond} GROUP BY b ORDER BY b",
        (n, start, width, alert_id, *params)).fetchall()


def nth_first_ack(store: Store, alert_id: int, scope, n: int) -> float | None:
    """When the n-th household (1-based) in scope first acked (None: fewer did)."""
    if n < 1:
        return None
    cond, params = _in(scope, "building_id")
    return store.scalar(f"SELECT at FROM ack_firsts WHERE alert_id=?{cond} ORDER BY at LIMIT 1 OFFSET ?",
                        (alert_id, *params, n - 1))


def unacked_page(store: Store, alert_id: int, scope, after: int, limit: int) -> list[dict]:
    """Up to `limit` households in scope with no ack, by household id after `after` (keyset
    paging: walks households in id order and stops once the page is full)."""
    cond, params = _named_in(scope, "h.building_id")
    # `+h.building_id`: keep the planner on the households' rowid order (the building index would
    # collect every household in scope and sort them to find the first page)
    return store.q(
        "WITH page AS (SELECT h.id FROM households h WHERE h.active = 1 AND h.id > :after "
        "AND +h.building_id IN (SELECT building_id FROM alert_scope WHERE alert_id = :a) "
        "AND NOT EXISTS (SELECT 1 FROM acks x WHERE x.alert_id = :a AND x.household_id = h.id)"
        + _audience_ok() + cond + " ORDER BY h.id LIMIT :limit) "
        "SELECT h.id, h.unit, h.room, b.id AS building_id, COALESCE(c.name, '') || b.name AS building, "
        "EXISTS (SELECT 1 FROM deliveries d WHERE d.alert_id = :a AND d.household_id = h.id) AS reached, "
        "(SELECT GROUP_CONCAT(r.vulnerable, '、') FROM residents r WHERE r.household_id = h.id "
        "AND r.active = 1 AND r.vulnerable != '') AS vulnerable "
        "FROM page p JOIN households h ON h.id = p.id JOIN nodes b ON b.id = h.building_id "
        "LEFT JOIN nodes c ON c.id = b.parent_id ORDER BY h.id",
        {"a": alert_id, "after": after, "limit": limit, **params})


def hops_page(store: Store, alert_id: int, node_ids, offset: int, limit: int) -> list[dict]:
    """A page of the alert's hops (of these nodes; None = all), unfinished ones first, then in
    tree order. Same columns as `hops`."""
    cond, params = _named_in(node_ids, "h.node_id")
    return store.q(
        "SELECT h.*, n.name AS node, n.kind AS node_kind, n.path, g.name AS grp, g.kind AS gkind, "
        "l.name AS lead, d.name AS done_by_name FROM hops h JOIN nodes n ON n.id=h.node_id "
        "LEFT JOIN chat_groups g ON g.id=h.group_id LEFT JOIN residents l ON l.id=h.lead_id "
        f"LEFT JOIN residents d ON d.id=h.done_by WHERE h.alert_id=:a{cond} "
        "ORDER BY h.state IN ('posted', 'forwarded'), n.path, h.id LIMIT :limit OFFSET :offset",
        {"a": alert_id, "limit": limit, "offset": offset, **params})


def hops_by_id(store: Store, alert_id: int, ids: list[int]) -> list[dict]:
    """These hops of the alert, same columns as `hops` (a live update re-renders changed rows)."""
    if not ids:
        return []
    names = {f"i{k}": v for k, v in enumerate(sorted(ids))}
    return store.q(
        "SELECT h.*, n.name AS node, n.kind AS node_kind, n.path, g.name AS grp, g.kind AS gkind, "
        "l.name AS lead, d.name AS done_by_name FROM hops h JOIN nodes n ON n.id=h.node_id "
        "LEFT JOIN chat_groups g ON g.id=h.group_id LEFT JOIN residents l ON l.id=h.lead_id "
        f"LEFT JOIN residents d ON d.id=h.done_by WHERE h.alert_id=:a AND h.id IN "
        f"({','.join(':' + n for n in names)}) ORDER BY h.id", {"a": alert_id, **names})


def hops_count(store: Store, alert_id: int, node_ids) -> int:
    """How many hops `hops_page` pages through."""
    cond, params = _in(node_ids, "node_id")
    return store.scalar(f"SELECT COUNT(*) FROM hops WHERE alert_id=?{cond}", (alert_id, *params))


def hop_marks(store: Store, alert_id: int) -> list[tuple]:
    """(id, node_id, state, escalation_level, done_at, done_by) of every hop: what a live update
    compares to find the rows that changed."""
    return store.conn.execute("SELECT id, node_id, state, escalation_level, done_at, done_by FROM hops "
                              "WHERE alert_id=?", (alert_id,)).fetchall()


def followups_page(store: Store, alert_id: int, scope, offset: int, limit: int) -> list[dict]:
    """A page of `followups` (open ones first)."""
    cond, params = _named_in(scope, "h.building_id")
    # the page's ids first, from followups alone; the names are joined for those rows only
    return store.q(
        "WITH page AS (SELECT f.id FROM followups f JOIN households h ON h.id = f.household_id "
        f"WHERE f.alert_id = :a{cond} ORDER BY f.state DESC, f.id LIMIT :limit OFFSET :offset) "
        "SELECT f.*, r.name, r.vulnerable, h.label AS room, w.name AS worker FROM page p "
        "JOIN followups f ON f.id = p.id JOIN residents r ON r.id=f.resident_id "
        "JOIN households h ON h.id=f.household_id LEFT JOIN residents w ON w.id=f.worker_id "
        "ORDER BY f.state DESC, f.id", {"a": alert_id, "limit": limit, "offset": offset, **params})


def followup_counts(store: Store, alert_id: int, scope) -> tuple[int, int, float]:
    """(follow-ups in scope, how many open, newest change time): changes whenever the list would."""
    cond, params = _in(scope, "h.building_id")
    join = "" if scope is None else " JOIN households h ON h.id=f.household_id"
    return tuple(store.conn.execute(
        "SELECT COUNT(*), COALESCE(SUM(f.state = 'open'), 0), COALESCE(MAX(COALESCE(f.closed_at, f.created_at)), 0) "
        f"FROM followups f{join} WHERE f.alert_id=?{cond}", (alert_id, *params)).fetchone())


def first_acks_since(store: Store, alert_id: int, scope, rowid: int, limit: int) -> list[tuple]:
    """(rowid, household id) of first acks recorded after `rowid`, oldest first: which households a
    live update takes off the un-acked list."""
    cond, params = _in(scope, "building_id")
    return store.conn.execute(f"SELECT rowid, household_id FROM ack_firsts WHERE rowid > ? AND alert_id=?{cond} "
                              "ORDER BY rowid LIMIT ?", (rowid, alert_id, *params, limit)).fetchall()


def deliveries_since(store: Store, alert_id: int, scope, rowid: int, limit: int) -> list[tuple]:
    """(rowid, household id) of deliveries recorded after `rowid`, oldest first."""
    cond, params = _in(scope, "h.building_id")
    return store.conn.execute(
        "SELECT d.rowid, d.household_id FROM deliveries d JOIN households h ON h.id = d.household_id "
        f"WHERE d.rowid > ? AND d.alert_id=?{cond} ORDER BY d.rowid LIMIT ?",
        (rowid, alert_id, *params, limit)).fetchall()


def live_fingerprint(store: Store, alert_id: int) -> tuple:
    """Cheap summary that changes whenever anything on the alert page would: the newest ack and
    delivery of any alert (O(1) on their rowids: a change elsewhere only costs one rebuild),
    this alert's hops and follow-ups, and its state."""
    return tuple(store.conn.execute(
        """SELECT (SELECT COALESCE(MAX(id), 0) FROM acks), (SELECT COALESCE(MAX(rowid), 0) FROM deliveries),
                  (SELECT COUNT(*) || ':' || COALESCE(SUM(escalation_level), 0) || ':' ||
                          COALESCE(MAX(done_at), 0) || ':' || COALESCE(GROUP_CONCAT(state), '')
                   FROM (SELECT state, escalation_level, done_at FROM hops WHERE alert_id=:a ORDER BY id)),
                  (SELECT COUNT(*) || ':' || COALESCE(SUM(state='closed'), 0) || ':' ||
                          COALESCE(MAX(closed_at), 0) FROM followups WHERE alert_id=:a),
                  (SELECT state || ':' || expires_at FROM alerts WHERE id=:a)""", {"a": alert_id}).fetchone())


def live_marks(store: Store) -> tuple[int, int]:
    """The newest rowids of ack_firsts and deliveries: where a live feed starts counting from."""
    return tuple(store.conn.execute("SELECT (SELECT COALESCE(MAX(rowid), 0) FROM ack_firsts), "
                                    "(SELECT COALESCE(MAX(rowid), 0) FROM deliveries)").fetchone())


def coverage_total(store: Store, alert_id: int, scope) -> int:
    """The alert's households in these buildings as counted when it went out (coverage's
    denominator: a vulnerable-only warning counts its target households, not every household)."""
    cond, params = _in(scope, "building_id")
    return store.scalar(f"SELECT COALESCE(SUM(households), 0) FROM coverage_counts WHERE alert_id=?{cond}",
                        (alert_id, *params))
