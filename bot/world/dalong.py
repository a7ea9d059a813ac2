"""Deterministic generator of a register shaped like Dalong community (Panyu, 2024).

1 community, 4 grids, 7 compounds, 113 buildings, ~3,300 households, ~2.4 residents per household,
one building lead per building (mostly party members, some with a backup), grid leads, ~10 social
workers, a few percent of residents on the vulnerable register. Same seed, same file.

The community's own loops (issue #14) added three columns at the end: 产权人 (most households have
one owner, some are rented and have none), 建筑面积 (55-140 m²) and 党员中心户 (a steward household
for about every ten households of each building, named by its room; the steward's row says 党员 and
党员中心户), and a few residents are 志愿者. Those are drawn from their own random stream, after the
original one, so every value the original columns had stays as it was.
"""
from __future__ import annotations

import csv
import random
from pathlib import Path

SURNAMES = ("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程"
            "苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严")
GIVEN = ("伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华玉兰萍红建国建华志强海燕春梅桂芳淑珍"
         "德明国平永红小红晓东文华家豪嘉欣子轩梓涵浩然雨桐思远俊杰欣怡佳琪宇航婷婷志明美玲金凤瑞华"
         "秋菊冬梅世杰振华少华锦荣炳坤伟雄惠珍丽珠妙玲")
GRIDS = ("第一网格", "第二网格", "第三网格", "第四网格")
# compound -> grid index; Dalong: 4 grids, 7 compounds
COMPOUNDS = (("大龙一区", 0), ("大龙二区", 0), ("金湖花园", 1), ("龙景苑", 1),
             ("富丽华庭", 2), ("大龙新村", 2), ("碧水湾", 3))
VULNERABLE = (("独居老人", 30), ("低保户", 25), ("孤寡老人", 10), ("困难户", 15), ("残疾人", 15),
              ("高龄老人", 5))
HEADERS = ("社区", "网格", "小区", "楼栋", "单元", "房号", "姓名", "电话", "角色", "困难类别", "联系社工",
           "企业微信ID", "公众号OpenID", "产权人", "建筑面积", "党员中心户")
GROUP_HEADERS = ("社区", "网格", "小区", "楼栋", "群名", "类型", "群ID", "群主")
COMMUNITY = "大龙社区"
DALONG_HOUSEHOLDS = 3300
DALONG_BUILDINGS = 113


def _name(rng: random.Random) -> str:
    given = rng.choice(GIVEN) + (rng.choice(GIVEN) if rng.random() < 0.6 else "")
    return rng.choice(SURNAMES) + given[:2]


def _phone(rng: random.Random) -> str:
    return f"1{rng.choice('3578')}{rng.randrange(10**9):09d}"


def _openid(rng: random.Random) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    return "o" + "".join(rng.choice(alphabet) for _ in range(27))


def _loops_columns(rng: random.Random, rows: list[tuple]) -> list[tuple]:
    """A building's rows with 产权人, 建筑面积 and 党员中心户 added (see the module docstring)."""
    homes: dict[tuple[str, str], list[int]] = {}
    for i, r in enumerate(rows):
        homes.setdefault((r[4], r[5]), []).append(i)
    order = list(homes)
    owner, area, steward_of, roles = set(), {}, {}, {}
    for home, members in homes.items():
        area[home] = rng.randint(55, 140)
        if rng.random() >= 0.15:  # rented: nobody in it owns it
            owner.add(members[0])
    # about ten households a steward: the building's households in runs, each looked after by a
    # household of its run that is on WeChat and does not lead the building
    n = max(1, round(len(order) / 10))
    for k in range(n):
        run = order[k * len(order) // n:(k + 1) * len(order) // n]
        choices = [h for h in run if rows[homes[h][0]][12] and "楼长" not in rows[homes[h][0]][8]] or \
            [h for h in run if "楼长" not in rows[homes[h][0]][8]] or run
        home = rng.choice(choices)
        first = homes[home][0]
        words = rows[first][8].split("、")
        roles[first] = "、".join(words + [w for w in ("党员", "党员中心户") if w not in words])
        for h in run:
            steward_of[h] = f"{home[0]}{home[1]}"
    out = []
    for i, r in enumerate(rows):
        role = roles.get(i, r[8])
        if r[8] == "居民" and i not in roles and rng.random() < 0.03:
            role = "居民、志愿者"
        home = (r[4], r[5])
        out.append(r[:8] + (role,) + r[9:] + ("是" if i in owner else "否", str(area[home]), steward_of[home]))
    return out


def generate(out: str | Path, *, households: int = DALONG_HOUSEHOLDS, seed: int = 2024,
             groups_out: str | Path | None = None, building_groups: str = "mixed") -> dict:
    """Write the register CSV (and the groups CSV next to it). Returns counts."""
    rng = random.Random(seed)
    out = Path(out)
    groups_out = Path(groups_out) if groups_out else out.with_name(out.stem + "_groups.csv")
    n_buildings = max(7, round(DALONG_BUILDINGS * households / DALONG_HOUSEHOLDS))
    # buildings per compound: uneven, like real estates
    weights = [rng.uniform(0.6, 1.4) for _ in COMPOUNDS]
    per_compound = [max(1, int(n_buildings * w / sum(weights))) for w in weights]
    per_compound[0] += n_buildings - sum(per_compound)
    buildings = [(ci, f"{b + 1}栋") for ci, n in enumerate(per_compound) for b in range(n)]
    # households per building: uneven around the mean, summing exactly to `households`
    hw = [rng.uniform(0.5, 1.5) for _ in buildings]
    per_building = [max(1, int(households * w / sum(hw))) for w in hw]
    per_building[-1] += households - sum(per_building)

    rng2 = random.Random(f"{seed}:loops")  # the added columns' own stream (see the docstring)
    rows: list[tuple] = []
    groups: list[tuple] = []
    uid = iter(range(1, 10**9))
    staff_names = []
    for _ in range(15):  # community committee (社区两委)
        name = _name(rng)
        roles = "社区工作人员、党员"
        rows.append((COMMUNITY, "", "", "", "", "", name, _phone(rng), roles, "", "",
                     f"staff{next(uid):04d}", "", "", "", ""))
        staff_names.append(name)
    workers = []
    for _ in range(max(2, round(10 * households / DALONG_HOUSEHOLDS))):
        name = _name(rng)
        while name in workers:  # the register refers to a social worker by name
            name = _name(rng)
        workers.append(name)
        rows.append((COMMUNITY, "", "", "", "", "", name, _phone(rng), "社工", "", "",
                     f"sw{next(uid):04d}", "", "", "", ""))
    for gi, grid in enumerate(GRIDS):
        lead = _name(rng)
        rows.append((COMMUNITY, grid, "", "", "", "", lead, _phone(rng), "网格长、党员", "", "",
                     f"grid{next(uid):04d}", "", "", "", ""))
        rows.append((COMMUNITY, grid, "", "", "", "", _name(rng), _phone(rng), "网格员", "", "",
                     f"grid{next(uid):04d}", "", "", "", ""))
        groups.append((COMMUNITY, grid, "", "", f"{grid}党支部群", "应用群", f"gridchat{gi + 1}", lead))
    groups.append((COMMUNITY, "", "", "", f"{COMMUNITY}两委群", "应用群", "communitychat", staff_names[0]))
    for ci, (compound, gi) in enumerate(COMPOUNDS):
        groups.append((COMMUNITY, GRIDS[gi], compound, "", f"{compound}楼长群", "机器人",
                       f"robot-{ci + 1:02d}", ""))

    n_res = 0
    for (ci, bname), n_hh in zip(buildings, per_building, strict=True):
        compound, gi = COMPOUNDS[ci]
        grid = GRIDS[gi]
        units = 1 if n_hh <= 24 else (2 if n_hh <= 60 else 3)
        per_floor = 2 if n_hh <= 36 else 4
        rooms = []
        for h in range(n_hh):
            unit_no = h % units + 1
            k = h // units
            rooms.append((f"{unit_no}单元" if units > 1 else "", f"{k // per_floor + 1}{k % per_floor + 1:02d}"))
        lead_slots = {0, 1} if rng.random() < 0.5 else {0}
        lead_name = None
        building_rows = []
        for h, (unit, room) in enumerate(rooms):
            size = rng.choices((1, 2, 3, 4), weights=(20, 35, 30, 15))[0]
            household_elderly_alone = size == 1 and rng.random() < 0.25
            for m in range(size):
                roles = ["居民"]
                wecom = ""
                if h in lead_slots and m == 0:
                    roles = ["楼长"] + (["党员"] if rng.random() < 0.8 else [])
                    wecom = f"lead{next(uid):05d}"
                vuln, sw = "", ""
                if household_elderly_alone:
                    vuln = rng.choice(("独居老人", "孤寡老人"))
                elif rng.random() < 0.02:
                    vuln = rng.choices([v for v, _ in VULNERABLE], weights=[w for _, w in VULNERABLE])[0]
                if vuln:
                    sw = workers[(ci * 7 + h) % len(workers)]
                has_wechat = rng.random() < (0.35 if vuln in ("独居老人", "孤寡老人", "高龄老人") else 0.85)
                name = _name(rng)
                while any(r[6] == name and r[5] == room and r[4] == unit for r in building_rows[-m:] if m):
                    name = _name(rng)  # no two people of one household share a name
                if wecom:
                    lead_name = lead_name or name
                building_rows.append((COMMUNITY, grid, compound, bname, unit, room, name,
                                      _phone(rng) if rng.random() < 0.9 else "", "、".join(roles), vuln, sw,
                                      wecom, _openid(rng) if has_wechat and not wecom else ""))
        building_rows = _loops_columns(rng2, building_rows)
        rows.extend(building_rows)
        n_res += len(building_rows)
        # Dalong's building groups are personal WeChat groups (a lead must forward), some WeCom
        # customer groups; "app_chat" models a community that moved them into WeCom app chats
        roll = rng.random()
        if building_groups == "app_chat":
            kind, chat_id = "应用群", f"bchat{len(groups):05d}"
        elif building_groups == "robot":
            kind, chat_id = "机器人", f"brobot{len(groups):05d}"
        else:
            kind = "客户群" if roll < 0.15 else "个人微信群"
            chat_id = f"wr{rng.randrange(16**12):012x}" if kind == "客户群" else ""
        groups.append((COMMUNITY, grid, compound, bname, f"{compound}{bname}居民群", kind, chat_id, lead_name))

    out.parent.mkdir(parents=True, exist_ok=True)
    for path, headers, body in ((out, HEADERS, rows), (groups_out, GROUP_HEADERS, groups)):
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(headers)
            w.writerows(body)
    return {"households": households, "buildings": len(buildings), "residents": n_res,
            "rows": len(rows), "groups": len(groups), "register": str(out), "groups_file": str(groups_out)}
