"""The register (roster): import from the community office's CSV/XLSX, and tree counts.

One row per resident. Headers may be Chinese or English. A file with any bad row imports
nothing (one transaction) unless skip_bad is set. Re-import updates in place; people missing
from the new file are marked inactive, never deleted, so their history stays.
"""
from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

from bot.data.store import Store

# canonical column -> accepted headers (lower-cased, spaces stripped)
COLUMNS: dict[str, tuple[str, ...]] = {
    "community": ("社区", "community"),
    "grid": ("网格", "grid"),
    "compound": ("小区", "compound"),
    "building": ("楼栋", "楼", "building"),
    "unit": ("单元", "unit"),
    "room": ("房号", "门牌", "room"),
    "name": ("姓名", "name"),
    "phone": ("电话", "手机", "phone"),
    "roles": ("角色", "身份", "role", "roles"),
    "vulnerable": ("困难类别", "重点人群", "vulnerable"),
    "social_worker": ("联系社工", "社工", "social_worker", "socialworker"),
    "wecom_userid": ("企业微信id", "企业微信", "wecom_userid", "wecomid", "platform_id"),
    "oa_openid": ("公众号openid", "openid", "oa_openid"),
}
GROUP_COLUMNS: dict[str, tuple[str, ...]] = {
    "community": ("社区", "community"),
    "grid": ("网格", "grid"),
    "compound": ("小区", "compound"),
    "building": ("楼栋", "楼", "building"),
    "name": ("群名", "群名称", "name", "group"),
    "kind": ("类型", "群类型", "kind", "type"),
    "chat_id": ("群id", "chatid", "chat_id", "webhook", "key"),
    "owner": ("群主", "负责人", "owner", "lead"),
}

ROLE_WORDS = {
    "staff": ("社区工作人员", "工作人员", "社区干部", "两委", "staff"),
    "grid_lead": ("网格长", "网格员", "grid_lead", "gridlead"),
    "building_lead": ("楼长", "building_lead", "buildinglead"),
    "social_worker": ("社工", "social_worker", "socialworker"),
    "volunteer": ("志愿者", "volunteer"),
    "party_member": ("党员", "party_member"),
    "resident": ("居民", "resident"),
}
ROLE_OF = {w.lower(): role for role, words in ROLE_WORDS.items() for w in words}
VULNERABLE = ("低保户", "困难户", "独居老人", "孤寡老人", "空巢老人", "残疾人", "重病患者",
              "留守儿童", "优抚对象", "高龄老人")
GROUP_KINDS = {
    "app_chat": ("应用群", "企业微信群", "app_chat", "appchat"),
    "robot": ("机器人", "群机器人", "robot", "webhook"),
    "personal": ("个人微信群", "微信群", "personal"),
    "customer": ("客户群", "customer"),
}
KIND_OF = {w.lower(): k for k, words in GROUP_KINDS.items() for w in words}
LEAD_ROLES_BY_LEVEL = {"grid": "grid_lead", "building": "building_lead"}
PHONE_RE = re.compile(r"^(1\d{10}|0\d{2,3}-?\d{7,8})$")
SPLIT_RE = re.compile(r"[、,，/;；\s]+")
DEFAULT_COMMUNITY = "社区"


@dataclass
class BadRow:
    row: int
    column: str
    reason: str

    def __str__(self) -> str:
        return f"row {self.row}, column {self.column}: {self.reason}"


@dataclass
class ImportReport:
    residents: int = 0
    households: int = 0
    groups: int = 0
    inactivated: int = 0
    bad: list[BadRow] = field(default_factory=list)
    committed: bool = False


class ImportError_(Exception):
    def __init__(self, report: ImportReport):
        self.report = report
        super().__init__(f"{len(report.bad)} bad row(s); nothing imported")


# -- reading files -------------------------------------------------------------------------
def read_table(path: Path, sheet: int = 0) -> list[dict[str, str]] | None:
    """Rows of a CSV file or one sheet of an XLSX file as dicts keyed by raw header.
    Returns None when an XLSX file has no such sheet."""
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        import openpyxl

        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
        if sheet >= len(wb.worksheets):
            return None
        rows = list(wb.worksheets[sheet].iter_rows(values_only=True))
        wb.close()
        if not rows:
            return []
        headers = [str(h or "").strip() for h in rows[0]]
        return [{h: _cell(v) for h, v in zip(headers, r)} for r in rows[1:]
                if any(v not in (None, "") for v in r)]
    text = path.read_bytes().decode("utf-8-sig")
    return [{(k or "").strip(): (v or "").strip() for k, v in row.items()}
            for row in csv.DictReader(io.StringIO(text)) if any((v or "").strip() for v in row.values())]


def _cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    return str(v).strip()


def _canonical(rows: list[dict], columns: dict, required: tuple[str, ...]) -> tuple[list[dict], str | None]:
    if not rows:
        return [], None
    lookup = {alias.lower().replace(" ", ""): canon for canon, al in columns.items() for alias in al}
    mapping = {}
    for header in rows[0]:
        canon = lookup.get(header.lower().replace(" ", ""))
        if canon:
            mapping[header] = canon
    missing = [c for c in required if c not in mapping.values()]
    if missing:
        return [], f"missing column(s): {', '.join(missing)} (headers seen: {', '.join(rows[0])})"
    return [{canon: row.get(h, "") for h, canon in mapping.items()} for row in rows], None


# -- validation ----------------------------------------------------------------------------
def _parse_roles(text: str) -> tuple[list[str], str | None]:
    roles = []
    for word in SPLIT_RE.split(text.strip()):
        if not word:
            continue
        role = ROLE_OF.get(word.lower())
        if role is None:
            return [], f"unknown role {word!r} (known: {', '.join(ROLE_WORDS)})"
        if role not in roles:
            roles.append(role)
    return roles or ["resident"], None


def _validate(i: int, r: dict) -> tuple[dict | None, list[BadRow]]:
    bad = []
    row = {k: (v or "").strip() for k, v in r.items()}
    if not row.get("name"):
        bad.append(BadRow(i, "姓名/name", "empty"))
    roles, err = _parse_roles(row.get("roles", ""))
    if err:
        bad.append(BadRow(i, "角色/role", err))
    if row.get("room"):
        for col, zh in (("grid", "网格"), ("compound", "小区"), ("building", "楼栋")):
            if not row.get(col):
                bad.append(BadRow(i, f"{zh}/{col}", "empty but a room is given"))
    elif "resident" in roles and not ({"staff", "social_worker", "grid_lead"} & set(roles)):
        bad.append(BadRow(i, "房号/room", "empty: a resident needs a household"))
    phone = re.sub(r"[\s]", "", row.get("phone", ""))
    if phone and not PHONE_RE.match(phone):
        bad.append(BadRow(i, "电话/phone", f"not a phone number: {phone!r}"))
    cats = [c for c in SPLIT_RE.split(row.get("vulnerable", "")) if c and c != "无"]
    for c in cats:
        if c not in VULNERABLE:
            bad.append(BadRow(i, "困难类别/vulnerable", f"unknown category {c!r} (known: {'、'.join(VULNERABLE)})"))
    if bad:
        return None, bad
    row.update(phone=phone, roles=roles, vulnerable="、".join(cats),
               community=row.get("community") or DEFAULT_COMMUNITY)
    return row, []


def _person_key(r: dict) -> str:
    if r.get("room"):
        return "|".join([r["community"], r["grid"], r["compound"], r["building"],
                         r.get("unit", ""), r["room"], r["name"]])
    return "|".join([r["community"], "staff", r["name"], r.get("phone", "")])


# -- writing -------------------------------------------------------------------------------
class _Tree:
    """Find-or-create nodes by path, cached for the import."""

    def __init__(self, store: Store):
        self.store = store
        self.ids = {row["path"]: row["id"] for row in store.q("SELECT id, path FROM nodes")}

    def node(self, parts: list[tuple[str, str]]) -> int:
        parent, path = None, ""
        for kind, name in parts:
            path = f"{path}/{name}" if path else name
            nid = self.ids.get(path)
            if nid is None:
                nid = self.store.conn.execute(
                    "INSERT INTO nodes (kind, name, parent_id, path) VALUES (?,?,?,?)",
                    (kind, name, parent, path)).lastrowid
                self.ids[path] = nid
            parent = nid
        return parent


def _node_parts(r: dict) -> list[tuple[str, str]]:
    parts = [("community", r["community"])]
    for kind in ("grid", "compound", "building"):
        if r.get(kind):
            parts.append((kind, r[kind]))
        else:
            break
    return parts


def import_register(store: Store, path: str | Path, *, groups_path: str | Path | None = None,
                    skip_bad: bool = False, now: float = 0.0) -> ImportReport:
    """Import a register file (and its groups sheet/file) into the store."""
    path = Path(path)
    report = ImportReport()
    raw, err = _canonical(read_table(path) or [], COLUMNS, ("name", "room", "building"))
    if err:
        report.bad.append(BadRow(1, "header", err))
        raise ImportError_(report)
    good = []
    for i, r in enumerate(raw, start=2):  # row 1 is the header
        row, bad = _validate(i, r)
        report.bad.extend(bad)
        if row:
            row["_row"] = i
            good.append(row)
    seen_keys = {}
    for row in good:
        key = _person_key(row)
        if key in seen_keys:
            report.bad.append(BadRow(row["_row"], "姓名/name",
                                     f"duplicate of row {seen_keys[key]} (same person and room)"))
        seen_keys.setdefault(key, row["_row"])
    workers = {row["name"]: row for row in good if "social_worker" in row["roles"]}
    for row in good:
        sw = row.get("social_worker", "")
        if sw and sw not in workers:
            report.bad.append(BadRow(row["_row"], "联系社工/social_worker",
                                     f"{sw!r} is not a social worker in this register"))
    bad_rows = {b.row for b in report.bad}
    good = [r for r in good if r["_row"] not in bad_rows]
    if report.bad and not skip_bad:
        raise ImportError_(report)

    group_rows = []
    if groups_path is not None:
        group_rows = read_table(Path(groups_path)) or []
    elif path.suffix.lower() in (".xlsx", ".xlsm"):
        group_rows = read_table(path, sheet=1) or []
    groups, gerr = _canonical(group_rows, GROUP_COLUMNS, ("name", "kind"))
    if gerr:
        report.bad.append(BadRow(1, "groups header", gerr))
        raise ImportError_(report)

    with store.transaction():
        _write(store, good, groups, report, now, skip_bad)
        if report.bad and not skip_bad:
            raise ImportError_(report)
    report.committed = True
    return report


def _write(store: Store, rows: list[dict], groups: list[dict], report: ImportReport,
           now: float, skip_bad: bool) -> None:
    tree = _Tree(store)
    conn = store.conn
    existing = {r["key"]: r["id"] for r in store.q("SELECT id, key FROM residents")}
    households = {(r["building_id"], r["unit"], r["room"]): r["id"]
                  for r in store.q("SELECT id, building_id, unit, room FROM households")}
    ids_by_name: dict[str, list[int]] = {}
    seen_res, seen_hh = set(), set()
    lead_links = []
    for row in rows:
        node_id = tree.node(_node_parts(row))
        hh_id = None
        if row.get("room"):
            hk = (node_id, row.get("unit", ""), row["room"])
            hh_id = households.get(hk)
            label = f"{row['compound']}{row['building']}" + (f"{row['unit']}" if row.get("unit") else "") + row["room"]
            if hh_id is None:
                hh_id = conn.execute("INSERT INTO households (building_id, unit, room, label) VALUES (?,?,?,?)",
                                     (node_id, hk[1], hk[2], label)).lastrowid
                households[hk] = hh_id
            else:
                conn.execute("UPDATE households SET active=1, label=? WHERE id=?", (label, hh_id))
            seen_hh.add(hh_id)
        key = _person_key(row)
        values = dict(key=key, name=row["name"], phone=row.get("phone", ""), household_id=hh_id,
                      node_id=node_id, roles=",".join(row["roles"]), vulnerable=row["vulnerable"],
                      wecom_userid=row.get("wecom_userid") or None,
                      oa_openid=row.get("oa_openid") or None, active=1, updated_at=now)
        rid = existing.get(key)
        try:
            if rid is None:
                cols = ",".join(values)
                rid = conn.execute(f"INSERT INTO residents ({cols}) VALUES ({','.join('?' * len(values))})",
                                   tuple(values.values())).lastrowid
                existing[key] = rid
            else:
                sets = ",".join(f"{k}=?" for k in values)
                conn.execute(f"UPDATE residents SET {sets} WHERE id=?", (*values.values(), rid))
        except Exception as e:  # e.g. a platform id used twice
            report.bad.append(BadRow(row["_row"], "企业微信ID/公众号OpenID", f"conflict: {e}"))
            continue
        seen_res.add(rid)
        ids_by_name.setdefault(row["name"], []).append(rid)
        for level, role in LEAD_ROLES_BY_LEVEL.items():
            if role in row["roles"]:
                level_node = tree.ids["/".join(n for _, n in _node_parts(row)[:{"grid": 2, "building": 4}[level]])]
                lead_links.append((level_node, rid, row))
    # social workers are referred to by name; resolve among social workers only
    worker_ids = {r["name"]: existing[_person_key(r)] for r in rows
                  if "social_worker" in r["roles"] and _person_key(r) in existing}
    for row in rows:
        if row.get("social_worker"):
            conn.execute("UPDATE residents SET social_worker_id=? WHERE key=?",
                         (worker_ids.get(row["social_worker"]), _person_key(row)))
        else:
            conn.execute("UPDATE residents SET social_worker_id=NULL WHERE key=?", (_person_key(row),))
    conn.execute("DELETE FROM node_leads")
    ranks: dict[int, int] = {}
    for node_id, rid, _ in lead_links:
        rank = ranks.get(node_id, 0)
        conn.execute("INSERT OR IGNORE INTO node_leads (node_id, resident_id, rank) VALUES (?,?,?)",
                     (node_id, rid, rank))
        ranks[node_id] = rank + 1
    # inactivate people and households no longer in the file
    for rid in existing.values():
        if rid not in seen_res:
            cur = conn.execute("UPDATE residents SET active=0, updated_at=? WHERE id=? AND active=1",
                               (now, rid))
            report.inactivated += cur.rowcount
    conn.execute(f"UPDATE households SET active=0 WHERE id NOT IN ({','.join('?' * len(seen_hh)) or 'NULL'})",
                 tuple(seen_hh))
    report.residents, report.households = len(seen_res), len(seen_hh)
    _write_groups(store, tree, groups, ids_by_name, report)
    store.log(now, "register.imported", residents=report.residents, households=report.households,
              groups=report.groups, inactivated=report.inactivated, bad=len(report.bad))


def _write_groups(store, tree: _Tree, groups: list[dict], ids_by_name, report: ImportReport) -> None:
    if not groups:
        return
    seen = set()
    for i, g in enumerate(groups, start=2):
        g = {k: (v or "").strip() for k, v in g.items()}
        kind = KIND_OF.get(g.get("kind", "").lower())
        if kind is None:
            report.bad.append(BadRow(i, "类型/kind (groups)", f"unknown group kind {g.get('kind')!r} "
                                     "(应用群 / 机器人 / 个人微信群 / 客户群)"))
            continue
        if kind in ("app_chat", "robot", "customer") and not g.get("chat_id"):
            report.bad.append(BadRow(i, "群ID/chat_id (groups)", f"a {kind} group needs its chat id or webhook key"))
            continue
        g["community"] = g.get("community") or DEFAULT_COMMUNITY
        path = "/".join(n for _, n in _node_parts(g))
        node_id = tree.ids.get(path)
        if node_id is None:
            report.bad.append(BadRow(i, "网格/小区/楼栋 (groups)", f"no such place in the register: {path}"))
            continue
        owner_id = None
        if g.get("owner"):
            owner_ids = ids_by_name.get(g["owner"], [])
            if not owner_ids:
                report.bad.append(BadRow(i, "群主/owner (groups)", f"{g['owner']!r} is not in the register"))
                continue
            owner_id = _pick_owner(store, owner_ids, node_id, path)
            if owner_id is None:
                report.bad.append(BadRow(i, "群主/owner (groups)", f"{g['owner']!r} names several people; "
                                         "none of them leads or lives in this place"))
                continue
        store.conn.execute(
            "INSERT INTO chat_groups (node_id, name, kind, chat_id, owner_id, active) VALUES (?,?,?,?,?,1) "
            "ON CONFLICT(node_id, name) DO UPDATE SET kind=excluded.kind, chat_id=excluded.chat_id, "
            "owner_id=excluded.owner_id, active=1",
            (node_id, g["name"], kind, g.get("chat_id", ""), owner_id))
        seen.add((node_id, g["name"]))
        report.groups += 1
    for row in store.q("SELECT id, node_id, name FROM chat_groups WHERE active=1"):
        if (row["node_id"], row["name"]) not in seen:
            store.conn.execute("UPDATE chat_groups SET active=0 WHERE id=?", (row["id"],))


def _pick_owner(store, candidates: list[int], node_id: int, path: str) -> int | None:
    """Names repeat in a community: prefer the person who leads this node, then one who lives
    here; a single candidate is taken as is."""
    if len(candidates) == 1:
        return candidates[0]
    marks = ",".join("?" * len(candidates))
    lead = store.q1(f"SELECT resident_id FROM node_leads WHERE node_id=? AND resident_id IN ({marks}) "
                    "ORDER BY rank", (node_id, *candidates))
    if lead:
        return lead["resident_id"]
    for pattern in (path, path + "/%"):  # attached to this very node first, then anywhere below
        local = store.q(f"SELECT r.id FROM residents r JOIN nodes n ON n.id=r.node_id WHERE r.id IN ({marks}) "
                        "AND n.path LIKE ?", (*candidates, pattern))
        if len(local) == 1:
            return local[0]["id"]
    return None


# -- the tree with counts -------------------------------------------------------------------
def tree_counts(store: Store) -> list[dict]:
    """Every node with households, residents, vulnerable residents and leads below it."""
    nodes = store.q("SELECT id, kind, name, parent_id FROM nodes ORDER BY id")
    per_building = {r["building_id"]: r for r in store.q(
        """SELECT h.building_id, COUNT(DISTINCT h.id) AS households, COUNT(r.id) AS residents,
                  SUM(r.vulnerable != '') AS vulnerable
           FROM households h LEFT JOIN residents r ON r.household_id = h.id AND r.active = 1
           WHERE h.active = 1 GROUP BY h.building_id""")}
    leads = {r["node_id"]: r["n"] for r in store.q(
        "SELECT l.node_id, COUNT(*) AS n FROM node_leads l JOIN residents r ON r.id=l.resident_id "
        "WHERE r.active=1 GROUP BY l.node_id")}
    by_id = {n["id"]: dict(n, households=0, residents=0, vulnerable=0, leads=leads.get(n["id"], 0),
                           children=[]) for n in nodes}
    for n in nodes:
        if n["parent_id"] in by_id:
            by_id[n["parent_id"]]["children"].append(by_id[n["id"]])
    for bid, c in per_building.items():
        node = by_id.get(bid)
        while node is not None:
            for k in ("households", "residents", "vulnerable"):
                node[k] += c[k] or 0
            node = by_id.get(node["parent_id"])
    for n in nodes:  # building leads roll up too
        if n["kind"] == "building":
            p = by_id.get(n["parent_id"])
            while p is not None:
                p["leads"] += leads.get(n["id"], 0)
                p = by_id.get(p["parent_id"])
    return [by_id[n["id"]] for n in nodes if n["parent_id"] is None]


def format_tree(roots: list[dict]) -> str:
    kinds_zh = {"community": "社区", "grid": "网格", "compound": "小区", "building": "楼栋"}
    lines = []

    def walk(n, depth, max_depth):
        lines.append(f"{'  ' * depth}{n['name']} [{kinds_zh[n['kind']]}]  households={n['households']} "
                     f"residents={n['residents']} vulnerable={n['vulnerable']} leads={n['leads']}"
                     + (f" buildings={_count(n, 'building')}" if n["kind"] != "building" else ""))
        if depth < max_depth:
            for c in n["children"]:
                walk(c, depth + 1, max_depth)
    for root in roots:
        walk(root, 0, 2)
    return "\n".join(lines)


def _count(n: dict, kind: str) -> int:
    return sum((1 if c["kind"] == kind else 0) + _count(c, kind) for c in n["children"])
