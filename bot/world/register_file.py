"""The world's own reading of the register file: who is on the platform and in which groups.

The local world plays the real platform, and the real platform never sees Linli's database. What
it has instead is the same spreadsheet the community office imports (the register CSV/XLSX and
its groups file or second sheet): people with their WeCom user id or Official Account openid,
the households they live in, and the chat groups of each place with their kind and owner.

This is deliberately a small, lenient reader, not Linli's importer (bot/domain/register.py):
the world does not validate a register, it only needs to know who exists. So a row the world
cannot use is skipped with a reason in `RegisterFile.skipped` rather than refusing the file;
only a file without the columns the world needs is refused (RegisterFileError). Header and role
words come from bot.core.vocabulary, shared with the importer.
"""
from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

from bot.core import vocabulary

# the register's words (headers, role names, group kinds) come from Linli's shared vocabulary in
# bot.core, the layer the world may read: the same spreadsheet reads the same way on both sides
COLUMNS = vocabulary.table("register.columns")
GROUP_COLUMNS = vocabulary.table("register.group_columns")
# only the roles the world acts on; any other word (居民, 志愿者, …) leaves a plain resident
ACTS_ON = ("staff", "grid_lead", "building_lead", "social_worker", "party_member", "steward")
ROLE_WORDS = {role: words for role, words in vocabulary.table("register.roles").items() if role in ACTS_ON}
GROUP_KIND_WORDS = vocabulary.table("register.group_kinds")
ROLE_OF = {w.lower(): role for role, words in ROLE_WORDS.items() for w in words}
KIND_OF = {w.lower(): kind for kind, words in GROUP_KIND_WORDS.items() for w in words}
SPLIT_RE = re.compile(r"[、,，/;；\s]+")
OWNER_YES = {w.lower() for w in vocabulary.words("register.owner.yes")} | {"1", "是", "yes"}
STEWARD_ROOM_RE = re.compile(r"^(?:(?P<unit>\d+)\s*单元)?\s*(?P<room>\d{2,5})\s*(?:室|号|房)?\s*(?P<name>\S*)$")
DEFAULT_COMMUNITY = "社区"  # what the office's importer calls a community left blank
LEVELS = ("community", "grid", "compound", "building")


class RegisterFileError(ValueError):
    """The file cannot describe anyone: it lacks a column the world needs, or has no sheet."""


@dataclass
class Person:
    """One row of the register as the world sees it."""
    row: int
    name: str
    place: tuple[str, ...]          # (community, grid, compound, building), as deep as given
    unit: str = ""
    room: str = ""
    phone: str = ""
    roles: tuple[str, ...] = ("resident",)
    vulnerable: str = ""
    social_worker: str = ""
    wecom_userid: str = ""
    oa_openid: str = ""
    # the community's own loops: 产权人, the household's 建筑面积, and its steward (党员中心户 /
    # 红管家) as the file names them (a phone, a room of the building, a name); optional columns
    owner: bool = False
    area: float | None = None
    steward: str = ""

    @property
    def uid(self) -> str | None:
        """The account the platform knows them by: WeCom first, then the Official Account."""
        return self.wecom_userid or self.oa_openid or None

    @property
    def household(self) -> str | None:
        """The household's label as the office writes addresses: 小区 + 楼栋 + 单元 + 房号."""
        if not self.room:
            return None
        compound, building = (self.place + ("", "", "", ""))[2:4]
        return f"{compound}{building}{self.unit}{self.room}"

    @property
    def building(self) -> tuple[str, ...] | None:
        return self.place[:4] if self.room and len(self.place) >= 4 else None

    def as_row(self) -> dict:
        """The dict the chat window and tests read (roles comma-separated, like Linli's roles)."""
        return {"uid": self.uid, "name": self.name, "roles": ",".join(self.roles), "phone": self.phone,
                "vulnerable": self.vulnerable, "social_worker": self.social_worker,
                "wecom_userid": self.wecom_userid or None, "oa_openid": self.oa_openid or None,
                "label": self.household or "", "household": self.household, "unit": self.unit,
                "room": self.room, "place": self.place, "building": self.building, "owner": self.owner,
                "area": self.area, "steward": self.steward}


@dataclass
class GroupRow:
    row: int
    name: str
    kind: str                       # app_chat, robot, personal, customer
    place: tuple[str, ...]
    chat_id: str = ""
    owner: str = ""                 # the owner's name, as the office writes it


@dataclass
class RegisterFile:
    people: list[Person] = field(default_factory=list)
    groups: list[GroupRow] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # "row N: reason", for rows the world ignored
    _ix: dict | None = field(default=None, repr=False, compare=False)

    @classmethod
    def load(cls, path: str | Path, groups: str | Path | None = None) -> "RegisterFile":
        """Read a register (CSV or XLSX) and its groups (a file, or an XLSX's second sheet)."""
        path = Path(path)
        rf = cls()
        rows = _canonical(_read_table(path), COLUMNS, ("name",), str(path))
        rf._people(rows)
        if groups is not None:
            group_rows = _read_table(Path(groups))
        elif path.suffix.lower() in (".xlsx", ".xlsm"):
            group_rows = _read_table(path, sheet=1, optional=True)
        else:
            group_rows = []
        rf._groups(_canonical(group_rows, GROUP_COLUMNS, ("name", "kind"), str(groups or path)))
        return rf

    # -- reading rows ---------------------------------------------------------------------------
    def _people(self, rows: list[dict]) -> None:
        accounts: dict[str, int] = {}
        for i, r in enumerate(rows, start=2):  # row 1 is the header
            if not r.get("name"):
                self.skipped.append(f"row {i}: no name")
                continue
            roles = tuple(dict.fromkeys(ROLE_OF[w.lower()] for w in SPLIT_RE.split(r.get("roles", ""))
                                        if w.lower() in ROLE_OF)) or ("resident",)
            p = Person(row=i, name=r["name"], place=_place(r), unit=r.get("unit", ""), room=r.get("room", ""),
                       phone=r.get("phone", ""), roles=roles,
                       vulnerable="、".join(c for c in SPLIT_RE.split(r.get("vulnerable", "")) if c and c != "无"),
                       social_worker=r.get("social_worker", ""), wecom_userid=r.get("wecom_userid", ""),
                       oa_openid=r.get("oa_openid", ""), owner=r.get("owner", "").lower() in OWNER_YES,
                       area=_number(r.get("area", "")), steward=r.get("steward", "").strip())
            taken = [a for a in (p.wecom_userid, p.oa_openid) if a and a in accounts]
            if taken:
                # one account is one person on the platform; the first row keeps it
                self.skipped.append(f"row {i}: account {taken[0]} already belongs to row {accounts[taken[0]]}")
                continue
            for a in (p.wecom_userid, p.oa_openid):
                if a:
                    accounts[a] = i
            self.people.append(p)

    def _groups(self, rows: list[dict]) -> None:
        for i, g in enumerate(rows, start=2):
            kind = KIND_OF.get(g.get("kind", "").lower())
            if not g.get("name"):
                self.skipped.append(f"groups row {i}: no group name")
            elif kind is None:
                self.skipped.append(f"groups row {i}: unknown group kind {g.get('kind')!r}")
            elif kind in ("app_chat", "robot", "customer") and not g.get("chat_id"):
                self.skipped.append(f"groups row {i}: no chat id for this {kind} group")
            else:
                self.groups.append(GroupRow(i, g["name"], kind, _place(g), g.get("chat_id", ""),
                                            g.get("owner", "")))

    # -- what the world derives from it -----------------------------------------------------------
    def leads_of(self, place: tuple[str, ...]) -> list[Person]:
        """The leads of a place, in file order: grid leads of a grid, building leads of a building."""
        return self._index()["leads"].get(tuple(place), [])

    def members_of(self, g: GroupRow) -> set[str]:
        """Who sits in a group, by the accounts the platform knows: a building's group holds the
        building's residents on WeChat and its leads; a compound's group the building leads
        below it; a grid's group its grid leads; the community's group the staff."""
        ix = self._index()
        place = tuple(g.place)
        if len(place) == 4:
            return ix["residents"].get(place, set()) | _wecom(ix["leads"].get(place, []))
        if len(place) == 3:
            return set().union(*(_wecom(ix["leads"].get(b, [])) for b in ix["buildings"].get(place, ())))
        if len(place) == 2:
            return _wecom(ix["leads"].get(place, []))
        return _wecom(p for p in ix["staff"] if p.place[:1] == place)

    def owner_of(self, g: GroupRow) -> str | None:
        """The owner's WeCom account. Names repeat in a community, so among people of that name
        the place's lead comes first, then someone attached to the place, then the first listed."""
        named = [p for p in self._index()["by_name"].get(g.owner, []) if p.wecom_userid] if g.owner else []
        if not named:
            return None
        leads = {p.row for p in self.leads_of(g.place)}
        ranked = sorted(named, key=lambda p: (p.row not in leads, p.place[:len(g.place)] != tuple(g.place), p.row))
        return ranked[0].wecom_userid

    def stewards(self) -> dict[str, list[str]]:
        """Each steward's account -> the labels of the households they look after (a lenient
        reading of the 党员中心户 column: a steward the world cannot find is nobody)."""
        out: dict[str, list[str]] = {}
        seen = set()
        for p in self.people:
            if not p.steward or not p.household or p.household in seen:
                continue
            steward = self.steward_of(p)
            if steward is not None and steward.uid:
                seen.add(p.household)
                out.setdefault(steward.uid, []).append(p.household)
        return out

    def steward_of(self, p: Person) -> Person | None:
        """The person a household's steward reference names: a phone, a room of the same building
        ("2单元301", "301 王芳": the household's steward, party member, or first listed), a name."""
        ref = p.steward
        if not ref:
            return None
        same = self._index()["by_building"].get(p.building, [])
        m = STEWARD_ROOM_RE.match(ref)
        if re.fullmatch(r"1\d{10}|0\d{2,3}-?\d{7,8}", ref.replace(" ", "")):
            found = self._index()["by_phone"].get(ref.replace(" ", ""), [])
        elif m:
            found = [q for q in same if q.room == m.group("room")
                     and (not m.group("unit") or q.unit.replace("单元", "") == m.group("unit"))
                     and (not m.group("name") or q.name == m.group("name"))]
            found.sort(key=lambda q: ("steward" not in q.roles, "party_member" not in q.roles, q.row))
            found = found[:1]
        else:
            found = [q for q in same if q.name == ref] or self._index()["by_name"].get(ref, [])
        return found[0] if len(found) == 1 else None

    def _index(self) -> dict:
        # built once: a 100,000-resident register has thousands of groups to fill
        if self._ix is None:
            ix = {"leads": {}, "residents": {}, "buildings": {}, "staff": [], "by_name": {}, "by_building": {},
                  "by_phone": {}}
            for p in self.people:
                ix["by_name"].setdefault(p.name, []).append(p)
                if p.building:
                    ix["by_building"].setdefault(p.building, []).append(p)
                if p.phone:
                    ix["by_phone"].setdefault(p.phone.replace(" ", ""), []).append(p)
                if "staff" in p.roles:
                    ix["staff"].append(p)
                if "grid_lead" in p.roles and len(p.place) >= 2:
                    ix["leads"].setdefault(p.place[:2], []).append(p)
                if "building_lead" in p.roles and len(p.place) >= 4:
                    ix["leads"].setdefault(p.place[:4], []).append(p)
                if p.building and p.uid:
                    ix["residents"].setdefault(p.building, set()).add(p.uid)
                if len(p.place) >= 4:
                    ix["buildings"].setdefault(p.place[:3], {})[p.place[:4]] = True
            self._ix = ix
        return self._ix


def _wecom(people) -> set[str]:
    return {p.wecom_userid for p in people if p.wecom_userid}


def _place(r: dict) -> tuple[str, ...]:
    parts = [r.get("community") or DEFAULT_COMMUNITY]
    for level in LEVELS[1:]:
        if not r.get(level):
            break
        parts.append(r[level])
    return tuple(parts)


def _read_table(path: Path, sheet: int = 0, optional: bool = False) -> list[list[str]]:
    """A CSV file or one XLSX sheet as rows of stripped strings, header first, blank rows dropped."""
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        import openpyxl

        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
        try:
            if sheet >= len(wb.worksheets):
                if optional:
                    return []
                raise RegisterFileError(f"{path}: no sheet {sheet + 1}")
            rows = [[_cell(v) for v in r] for r in wb.worksheets[sheet].iter_rows(values_only=True)]
        finally:
            wb.close()
    else:
        rows = [[v.strip() for v in r] for r in csv.reader(io.StringIO(path.read_bytes().decode("utf-8-sig")))]
    return [r for r in rows if any(r)]


def _number(text: str) -> float | None:
    m = re.match(r"^\s*(\d+(?:\.\d+)?)", text or "")
    return float(m.group(1)) if m else None


def _cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float) and v.is_integer():
        v = int(v)  # a spreadsheet stores room 502 as 502.0
    return str(v).strip()


def _canonical(table: list[list[str]], columns: dict, required: tuple[str, ...], where: str) -> list[dict]:
    """Data rows as dicts keyed by canonical column; a missing required column refuses the file."""
    if not table:
        return []
    lookup = {alias.lower().replace(" ", ""): canon for canon, aliases in columns.items() for alias in aliases}
    header = table[0]
    at = {}
    for i, h in enumerate(header):
        canon = lookup.get(h.lower().replace(" ", ""))
        if canon and canon not in at:  # the first of two columns with the same meaning wins
            at[canon] = i
    missing = [c for c in required if c not in at]
    if missing:
        raise RegisterFileError(f"{where}: missing column(s) {', '.join(missing)} (headers: {', '.join(header)})")
    return [{canon: (row[i] if i < len(row) else "") for canon, i in at.items()} for row in table[1:]]
