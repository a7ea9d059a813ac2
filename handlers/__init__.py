"""The conversation, in priority order: the first router with a matching handler wins.

To add a concern, write handlers/<name>.py with `router = Router("<name>")` and add it to
ROUTERS below in the right place (tests/test_dispatcher.py pins the order).
"""
from __future__ import annotations

from bot.core.dispatcher import Dispatcher
from handlers import acks, alerts, claims, consult, fallback, onboarding, requests, schedules, scores
from handlers.middlewares import attach_resident, log_errors

ROUTERS = [
    onboarding.router,  # unknown users first: nothing else should answer someone unregistered
    alerts.router,  # staff commands (发布/升级/解除/确认): explicit verbs, never a resident's words
    # staff scheduling (定时/每…/定时列表/暂停定时…); its 确认/取消 answer only a pending schedule preview
    schedules.router,
    # 议事: its 确认/取消 answer only a pending consultation preview; a vote word only from a
    # household with an open consultation (before acks: "同意" is a vote there, not an ack)
    consult.router,
    claims.router,  # volunteers' 心愿单 / 认领 / 完成 (their own verbs)
    scores.router,  # compound branches' 互评 scores (their own verb)
    acks.router,  # answers to a warning: 已转发, 代确认, 已上门, and residents' "1"/"收到"/"2"
    # after alerts/acks (an ack that also asks is theirs; they call bot.domain.requests.file_request):
    # any other text from a resident becomes a request, so only the fallback may follow
    requests.router,
    fallback.router,  # always last: "I didn't understand, here is what you can do"
]

MIDDLEWARES = [
    # outermost, so a failure anywhere below (lookups included) is logged with its message
    log_errors,
    # before routing: filters such as known_resident / has_role read ctx.resident
    attach_resident,
]


def build_dispatcher(app) -> Dispatcher:
    return Dispatcher(app, ROUTERS, MIDDLEWARES)
