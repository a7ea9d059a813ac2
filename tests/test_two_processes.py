"""`linli world` and `linli serve` as two processes on localhost: a warning goes out through the
world's platform APIs, a resident answers through the signed, encrypted callback protocol, and
Linli's thank-you reply comes back through the world."""
import json
import os
import subprocess
import sys
import time

from test_crash_resume import ROOT, free_port, wait_for

from bot.data.store import Store
from bot.domain.register import import_register
from bot.world.dalong import generate


def linli(args, env, **kw):
    return subprocess.run([sys.executable, "-m", "bot", *args, "--config", "config.toml"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60, **kw)


async def test_world_and_serve_exchange_messages(tmp_path):
    reg = tmp_path / "reg.csv"
    info = generate(reg, households=30, seed=8)
    db = tmp_path / "linli.db"
    import_register(Store(db), reg, groups_path=info["groups_file"], now=time.time())
    world_port, linli_port = free_port(), free_port()
    env = dict(os.environ, LINLI_STORE_PATH=str(db), LINLI_SERVER_PORT=str(linli_port),
               LINLI_WORLD_PORT=str(world_port), LINLI_WECOM_API_BASE=f"http://127.0.0.1:{world_port}",
               LINLI_OA_API_BASE=f"http://127.0.0.1:{world_port}", LINLI_WORLD_RESIDENT_REPLY_PROBABILITY="1",
               LINLI_WORLD_RESIDENT_DELAY_S="[0, 1]", LINLI_WORLD_LEAD_DELAY_S="[0, 1]",
               LINLI_WORLD_REQUEST_PROBABILITY="0",
               # the world plays the same register file Linli imported (never Linli's database)
               LINLI_WORLD_REGISTER=str(reg), LINLI_WORLD_GROUPS=str(info["groups_file"]))
    serve = subprocess.Popen([sys.executable, "-m", "bot", "serve", "--config", "config.toml"], cwd=ROOT, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    world = subprocess.Popen([sys.executable, "-m", "bot", "world", "--config", "config.toml"], cwd=ROOT, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    store = Store(db)
    try:
        assert "world: platform APIs" in world.stdout.readline()  # the world is up
        out = linli(["alert", "send", "--type", "暴雨", "--colour", "黄色", "--scope", "第一网格"], env)
        assert out.returncode == 0, out.stderr
        ok = await wait_for(lambda: store.scalar("SELECT COUNT(*) FROM acks WHERE channel='oa'") > 0 and
                            store.scalar("SELECT COUNT(*) FROM sends WHERE purpose='reply' AND state='sent'") > 0,
                            timeout=45)
        assert ok, "no resident answered through the world"
    finally:
        for p in (serve, world):
            p.terminate()
            p.wait(timeout=10)
    ack = store.q1("SELECT a.*, i.raw FROM acks a JOIN inbound i ON i.user_id=(SELECT oa_openid FROM residents "
                   "WHERE id=a.resident_id) WHERE a.channel='oa' LIMIT 1")
    assert "<Encrypt>" not in ack["raw"] and "<MsgType><![CDATA[text]]></MsgType>" in ack["raw"]
    reply = store.q1("SELECT * FROM sends WHERE purpose='reply' AND state='sent' LIMIT 1")
    assert "谢谢" in json.loads(reply["payload"])["text"]
    status = linli(["alert", "status", "1"], env)
    assert status.returncode == 0 and "households acknowledged" in status.stdout
