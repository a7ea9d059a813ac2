"""Coverage reported upward: summaries at the set points and at the end, each once across a
restart, only the newest after an outage; a CAP 1.2 Ack back for a warning that came in as CAP,
valid against the OASIS schema; the JSON webhook and CAP channels; the office's XLSX report."""
from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from lxml import etree
from openpyxl import load_workbook
from sim_rig import T0, close_sim, make_sim, run_until, staff

from bot.app import App
from bot.core.clock import FakeClock
from bot.domain import alerts, escalation, feed, upward
from bot.domain.alerts import AlertError, Draft
from bot.domain.feed import CapArea, CapMessage
from bot.domain.timers import JOB, Timers
from bot.domain.upward import UpwardSettings
from bot.transports.outbound import cap_out

XSD = Path(__file__).parent / "data" / "CAP-v1.2.xsd"
OFFICE = ("dalong.street@gz.gov", "GZ-DL-20240601-001", "2024-06-01T08:00:00+08:00")


def with_upward(settings, **kw):
    """Settings carrying an [upward] section (what bot/core/config.py is asked to add)."""
    if "upward" in {f.name for f in dataclasses.fields(settings)}:  # config.py has the section
        return dataclasses.replace(settings, upward=type(settings.upward)(**kw))
    cls = dataclasses.make_dataclass("SettingsWithUpward", [("upward", UpwardSettings, dataclasses.field(
        default_factory=UpwardSettings))], bases=(type(settings),), frozen=True)
    return cls(**{f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)},
               upward=UpwardSettings(**kw))


def configure(app, **kw) -> None:
    app.settings = with_upward(app.settings, **kw)
    app.timers = Timers(app, app.scheduler, [escalation, feed, upward])


@pytest.fixture
async def sim(tmp_path):
    rig = await make_sim(tmp_path, households=30)
    robot = rig.store.q1("SELECT chat_id FROM chat_groups WHERE kind='robot' AND chat_id != '' LIMIT 1")
    rig.robot_key = robot["chat_id"] if robot else "office-robot-key"
    configure(rig.app, channel="robot", target=rig.robot_key, webhook_url="http://127.0.0.1:9/hook",
              cap_url="http://127.0.0.1:9/cap", cap_sender="linli.dalong", points_min=[10, 30])
    yield rig
    await close_sim(rig)


def cap_alert(identifier=OFFICE[1], msg_type="alert", refs=()) -> CapMessage:
    return CapMessage(identifier=identifier, sender=OFFICE[0], sent=OFFICE[2], sent_at=T0, status="actual",
                      msg_type=msg_type, refs=list(refs), type="暴雨", colour="yellow", event="暴雨",
                      expires=T0 + 6 * 3600, text="预计未来6小时有强降水。", areas=[CapArea(desc="第一网格")])


def upward_sends(store, purpose=None) -> list[dict]:
    rows = store.q("SELECT * FROM sends WHERE purpose IN ('upward','upward_cap') ORDER BY id")
    return [r for r in rows if purpose is None or r["purpose"] == purpose]


def points_done(store, alert_id) -> dict[str, str]:
    return {r["point"]: r["outcome"] for r in store.q("SELECT * FROM upward_reports WHERE alert_id=?", (alert_id,))}


async def test_points_then_end_each_once_across_a_restart(sim):
    out = feed.receive(sim.app, cap_alert())
    assert out.outcome == "relayed"
    a = out.alert_id
    assert upward.next_due_at(sim.app) == T0 + 600
    sim.clock.t = T0 + 600
    assert (await upward.run_due(sim.app))["upward_sent"] == 1
    assert {(r["channel"], r["target"]) for r in upward_sends(sim.store)} == {
        ("robot", sim.robot_key), ("webhook", "http://127.0.0.1:9/hook"), ("cap", "http://127.0.0.1:9/cap")}
    assert (await upward.run_due(sim.app))["upward_sent"] == 0
    assert upward.next_due_at(sim.app) == T0 + 1800
    # restart after the 30-minute point: the new process reports it once
    app2 = App(sim.settings, clock=FakeClock(T0 + 1800 + 5))
    configure(app2, **dataclasses.asdict(sim.app.settings.upward))
    await app2.start()
    try:
        assert app2.scheduler.armed[JOB] <= T0 + 1800
        assert (await upward.run_due(app2))["upward_sent"] == 1
        assert (await upward.run_due(app2))["upward_sent"] == 0
    finally:
        await app2.close()
    assert points_done(sim.store, a) == {"m10": "sent", "m30": "sent"}
    # the office lifts it: the end report follows at the lift, and nothing is due after it
    sim.clock.t = T0 + 3600
    lift = feed.receive(sim.app, cap_alert("GZ-DL-20240601-002", "cancel", [OFFICE]))
    assert lift.outcome == "lifted"
    assert upward.next_due_at(sim.app) == T0 + 3600
    assert (await upward.run_due(sim.app))["upward_sent"] == 1
    assert points_done(sim.store, a) == {"m10": "sent", "m30": "sent", "end": "sent"}
    assert upward.next_due_at(sim.app) is None  # a lift is not itself reported
    assert len(upward_sends(sim.store)) == 9  # 3 points × (chat, webhook, CAP)
    end_text = json.loads(upward_sends(sim.store, "upward")[-2]["payload"])["text"]
    assert "（最终）" in end_text and "暴雨黄色预警" in end_text


async def test_after_an_outage_only_the_newest_point_is_sent(sim):
    a = feed.receive(sim.app, cap_alert()).alert_id
    sim.clock.t = T0 + 45 * 60
    done = await upward.run_due(sim.app)
    assert done == {"upward_sent": 1, "upward_skipped": 1}
    assert points_done(sim.store, a) == {"m10": "skipped", "m30": "sent"}
    assert {json.loads(r["payload"]).get("json", {}).get("point") for r in upward_sends(sim.store)} >= {"m30"}


async def test_the_cap_report_is_valid_cap_1_2_and_references_the_office(sim):
    a = feed.receive(sim.app, cap_alert()).alert_id
    # a resident acknowledges, so the figures are not all zero
    h = sim.store.q1("SELECT s.building_id FROM alert_scope s WHERE s.alert_id=? LIMIT 1", (a,))
    hh = sim.store.q1("SELECT id FROM households WHERE building_id=? LIMIT 1", (h["building_id"],))
    sim.store.conn.execute("INSERT INTO acks (alert_id, household_id, channel, at) VALUES (?,?,?,?)",
                           (a, hh["id"], "oa", T0 + 120))
    sim.clock.t = T0 + 600
    await upward.run_due(sim.app)
    (row,) = [r for r in upward_sends(sim.store) if r["channel"] == "cap"]
    xml = cap_out.write(json.loads(row["payload"])["cap"])
    schema = etree.XMLSchema(etree.parse(str(XSD)))
    doc = etree.fromstring(xml)
    assert schema.validate(doc), schema.error_log
    ns = {"c": cap_out.NS}
    assert doc.findtext("c:msgType", namespaces=ns) == "Ack"
    assert doc.findtext("c:references", namespaces=ns) == ",".join(OFFICE)
    assert doc.findtext("c:addresses", namespaces=ns) == OFFICE[0]
    assert doc.findtext("c:identifier", namespaces=ns) == f"linli.dalong.coverage.{a}.m10"
    params = {p.findtext("c:valueName", namespaces=ns): p.findtext("c:value", namespaces=ns)
              for p in doc.iterfind("c:info/c:parameter", ns)}
    assert params["HouseholdsAcknowledged"] == "1" and params["LinliReportPoint"] == "m10"
    assert int(params["HouseholdsInScope"]) > 1 and any(k.startswith("Grid:") for k in params)


async def test_an_update_references_the_original_and_the_update(sim):
    first = feed.receive(sim.app, cap_alert())
    upd = cap_alert("GZ-DL-20240601-002", "update", [OFFICE])
    upd = dataclasses.replace(upd, colour="orange", sent="2024-06-01T08:05:00+08:00")
    sim.clock.t = T0 + 300
    second = feed.receive(sim.app, upd)
    assert second.outcome == "updated"
    refs = upward.cap_references(sim.app, alerts.get(sim.store, second.alert_id))
    assert refs == [OFFICE, (OFFICE[0], "GZ-DL-20240601-002", "2024-06-01T08:05:00+08:00")]
    # the superseded warning's end report is due at the update
    sim.clock.t = T0 + 301
    await upward.run_due(sim.app)
    assert points_done(sim.store, first.alert_id) == {"end": "sent"}


async def test_a_chat_warning_gets_chat_and_webhook_but_no_cap_and_notices_are_not_reported(sim):
    a = alerts.issue(sim.app, Draft(type="暴雨", colour="orange", issuer_id=staff(sim.store)["id"]))
    alerts.issue(sim.app, Draft(type="通知", colour="blue", text="周六停水", issuer_id=staff(sim.store)["id"]))
    sim.clock.t = T0 + 600
    assert (await upward.run_due(sim.app))["upward_sent"] == 1
    assert {r["channel"] for r in upward_sends(sim.store)} == {"robot", "webhook"}
    body = json.loads([r for r in upward_sends(sim.store) if r["channel"] == "webhook"][0]["payload"])["json"]
    assert body["alert_id"] == a and body["point"] == "m10" and body["households"] > 0
    assert set(body["minutes_to"]) == {"50", "90", "95", "100"}


async def test_nothing_is_due_when_nothing_is_configured(sim):
    configure(sim.app)  # defaults: no channel, no webhook, no CAP endpoint
    alerts.issue(sim.app, Draft(type="暴雨", colour="orange", issuer_id=staff(sim.store)["id"]))
    assert upward.next_due_at(sim.app) is None
    sim.clock.t = T0 + 3600
    assert (await upward.run_due(sim.app))["upward_sent"] == 0
    assert upward_sends(sim.store) == []


async def test_the_office_report_is_one_xlsx_with_a_chart(sim):
    a = alerts.issue(sim.app, Draft(type="暴雨", colour="red", issuer_id=staff(sim.store)["id"]))
    await run_until(sim.app, sim.world, T0 + 3 * 3600)  # leads forward, residents answer, timers run
    data = upward.alert_report(sim.app, a)
    wb = load_workbook(io.BytesIO(data))
    assert wb.sheetnames == ["汇总", "未送达住户", "超时未转发环节", "困难群众未及时上门"]
    ws = wb["汇总"]
    assert "暴雨红色预警覆盖情况报告" in ws["A1"].value
    labels = {r[0].value: r[1].value for r in ws.iter_rows(min_row=2, max_col=2) if r[0].value}
    figs = upward.figures(sim.app, alerts.get(sim.store, a))
    assert labels["范围内户数"] == figs["households"] and labels["已确认户数"] == figs["acked"] > 0
    assert labels["达到50%用时（分钟）"] == figs["minutes_to"][50] is not None
    assert "达到95%用时（分钟）" in labels
    assert len(ws._charts) == 1
    grid_rows = [r for r in ws.iter_rows(values_only=True) if r[0] in {g["name"] for g in figs["grids"]}]
    assert len(grid_rows) == len(figs["grids"]) > 0
    assert wb["超时未转发环节"].max_row - 1 == figs["late_hops"] > 0
    assert wb["未送达住户"]["A2"].value == "无" and figs["never_reached"] == 0  # everyone was reached
    # a second warning nobody handles: leads silent, no visits
    sim.clock.t += 60
    b = alerts.issue(sim.app, Draft(type="台风", colour="orange", issuer_id=staff(sim.store)["id"]))
    for _ in range(60):  # the timer every 5 minutes for five hours: hops escalate, follow-ups pass their deadline
        sim.clock.t += 300
        await escalation.run_due(sim.app)
    figs = upward.figures(sim.app, alerts.get(sim.store, b))
    wb = load_workbook(io.BytesIO(upward.alert_report(sim.app, b)))
    assert wb["未送达住户"].max_row - 1 == figs["never_reached"] > 0
    assert wb["超时未转发环节"].max_row - 1 == figs["late_hops"] > 0
    assert wb["困难群众未及时上门"].max_row - 1 == figs["followups_late"] > 0
    late = [r for r in wb["超时未转发环节"].iter_rows(min_row=2, values_only=True)]
    assert all(isinstance(r[-1], (int, float)) and r[-1] > 0 for r in late)  # minutes past the first deadline
    with pytest.raises(AlertError):
        upward.alert_report(sim.app, 9999)


# -- the CAP writer and the HTTP channels --------------------------------------------------------------
def test_the_writer_refuses_a_message_without_its_required_fields():
    with pytest.raises(cap_out.CapWriteError):
        cap_out.write({"identifier": "x", "sender": "y"})


def test_the_writer_keeps_the_schema_order_and_escapes_text():
    msg = {"identifier": "a.1", "sender": "linli", "sent": "2024-06-01T08:10:00+08:00", "status": "Actual",
           "msgType": "Update", "scope": "Public", "references": [list(OFFICE)], "note": "<&>",
           "info": {"category": ["Met"], "event": "e", "urgency": "Unknown", "severity": "Unknown",
                    "certainty": "Observed", "description": "a < b & c", "parameters": [["k", "v"]],
                    "areas": [{"areaDesc": "大龙街道"}]}}
    xml = cap_out.write(msg)
    schema = etree.XMLSchema(etree.parse(str(XSD)))
    assert schema.validate(etree.fromstring(xml)), schema.error_log
    assert b"&lt;&amp;&gt;" in xml


class _App:
    def __init__(self, http):
        self.http = http


async def test_the_cap_and_webhook_channels_post_and_classify_answers():
    import aiohttp

    seen: list = []

    async def handle(request: web.Request) -> web.Response:
        seen.append((request.path, request.content_type, await request.read()))
        return web.Response(status=int(request.query.get("status", "200")))

    wa = web.Application()
    wa.router.add_post("/{tail:.*}", handle)
    server = TestServer(wa)
    await server.start_server()
    base = str(server.make_url("")).rstrip("/")
    msg = {"identifier": "a.1", "sender": "linli", "sent": "2024-06-01T08:10:00+08:00", "status": "Actual",
           "msgType": "Ack", "scope": "Private", "addresses": "office", "references": [list(OFFICE)]}
    try:
        async with aiohttp.ClientSession() as http:
            cap, hook = cap_out.CapPostSender(_App(http)), cap_out.JsonWebhookSender(_App(http))
            assert (await cap.send(f"{base}/cap", {"cap": msg})).ok
            assert (await hook.send(f"{base}/hook", {"json": {"pct": 50.0, "社区": "大龙"}})).ok
            r500 = await cap.send(f"{base}/cap?status=503", {"cap": msg})
            r400 = await hook.send(f"{base}/hook?status=400", {"json": {}})
            assert not r500.ok and r500.retryable and not r400.ok and not r400.retryable
            bad = await cap.send(f"{base}/cap", {"cap": {"identifier": "x"}})
            assert not bad.ok and not bad.retryable and bad.errcode == cap_out.ERR_BAD_PAYLOAD
            down = await cap.send("http://127.0.0.1:9/cap", {"cap": msg})
            assert not down.ok and down.retryable
    finally:
        await server.close()
    assert seen[0][0] == "/cap" and seen[0][1] == "application/xml" and b"<identifier>a.1</identifier>" in seen[0][2]
    assert seen[1][1] == "application/json" and json.loads(seen[1][2]) == {"pct": 50.0, "社区": "大龙"}


async def test_the_reports_reach_the_office_end_to_end(sim):
    """Through the outbox: the robot post reaches the world's group robot; the CAP Ack and the JSON
    arrive at the office's endpoints (a local server here), the CAP one valid against the schema."""
    got: dict[str, list] = {"cap": [], "hook": []}

    async def office(request: web.Request) -> web.Response:
        got[request.match_info["what"]].append(await request.read())
        return web.Response(text="ok")

    wa = web.Application()
    wa.router.add_post("/{what}", office)
    server = TestServer(wa)
    await server.start_server()
    base = str(server.make_url("")).rstrip("/")
    try:
        configure(sim.app, channel="robot", target=sim.robot_key, webhook_url=f"{base}/hook", cap_url=f"{base}/cap")
        # what bot/app.py is asked to add
        sim.app.senders.update(cap=cap_out.CapPostSender(sim.app), webhook=cap_out.JsonWebhookSender(sim.app))
        feed.receive(sim.app, cap_alert())
        sim.clock.t = T0 + 600
        await upward.run_due(sim.app)
        await sim.app.settle()
    finally:
        await server.close()
    states = {r["channel"]: r["state"] for r in upward_sends(sim.store)}
    assert states == {"robot": "sent", "webhook": "sent", "cap": "sent"}
    assert len(got["cap"]) == 1 and len(got["hook"]) == 1
    schema = etree.XMLSchema(etree.parse(str(XSD)))
    assert schema.validate(etree.fromstring(got["cap"][0])), schema.error_log
    assert json.loads(got["hook"][0])["point"] == "m10"
