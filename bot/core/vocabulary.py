"""Every word Linli reads from people, from one reviewed file (bot/core/vocabulary.toml), which the
office's config can extend ([vocabulary] "replies.ack" = ["晓得了"]).

Modules ask for a list by its dotted path: `words("replies.ack")`, `table("register.roles")`. Lists
that must never share a word (they would contradict: an ack that is also a cry for help) are named
in CONTRADICTING and checked by tests/test_vocabulary.py; a word may sit in two lists only when
the pair is declared COMPATIBLE (a "收到" is both an ack and a pleasantry, and means no request in both).
"""
from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Mapping

FILE = Path(__file__).with_name("vocabulary.toml")

# pairs of lists that must not share a word: each would read the word its own way
CONTRADICTING = [
    ("replies.ack", "replies.help"),
    ("replies.help", "requests.greetings"),
    ("replies.help", "requests.pleasantries"),
    ("replies.help", "requests.chitchat"),
    ("requests.pleasantries", "requests.problem"),
    ("requests.greetings", "requests.problem"),
    ("requests.chitchat", "requests.problem"),
    ("requests.chitchat", "requests.asks"),
    ("requests.yes", "requests.problem"),
    ("visits.safe", "visits.not_home"),
    ("visits.safe", "visits.moved"),
    ("visits.not_home", "visits.moved"),
]
# pairs that may share words, because both readings agree
COMPATIBLE = {
    ("replies.ack", "requests.pleasantries"),  # "收到": acknowledges, asks for nothing
    ("replies.ack", "requests.lead_ins"),  # "收到，地下车库进水了": the ack leads in
    ("replies.ack", "requests.yes"),  # "好的" after "shall I file this?"
    ("replies.ack", "replies.safe"),  # "1" / "平安" is an ack and the poll's first option
    ("replies.safe", "visits.safe"),
    ("replies.safe", "requests.yes"),
    ("replies.ack", "replies.thanks"),
    ("replies.thanks", "requests.pleasantries"),
    ("requests.pleasantries", "requests.lead_ins"),
    ("requests.pleasantries", "requests.yes"),
    ("requests.pleasantries", "requests.chitchat"),
    ("requests.greetings", "requests.lead_ins"),
    ("requests.greetings", "requests.explicit_prefixes"),
    ("requests.chitchat", "requests.negated"),
    ("requests.pleasantries", "requests.negated"),
    ("requests.problem", "requests.urgent"),
    ("requests.problem", "requests.asks"),
    ("requests.asks", "replies.help"),  # "需要帮助" asks for help in both
    ("requests.problem", "replies.help"),  # "被困", "受伤": a problem and a cry for help
    ("replies.help", "requests.urgent"),
    ("replies.help", "requests.explicit_prefixes"),  # "求助 …": an explicit, urgent request
    ("visits.safe", "requests.chitchat"),
    ("visits.safe", "requests.negated"),
    ("visits.safe", "requests.pleasantries"),
    ("commands.confirm", "commands.issue"),  # "发布" confirms a preview and starts an issue command
    ("requests.yes", "commands.confirm"),
    ("register.columns", "register.group_columns"),
    ("register.columns", "register.roles"),  # "社工" is a column (联系社工) and a role
    ("register.group_columns", "register.group_kinds"),  # "webhook": the chat-id column, or the robot kind
    ("requests.chitchat", "register.group_kinds"),  # "机器人": a resident asking about the bot; a group kind
    # a category keyword is also a problem / urgency / help word: they agree that it is a request
    ("requests.problem", "requests.categories"),
    ("requests.urgent", "requests.categories"),
    ("replies.help", "requests.categories"),
    ("requests.asks", "requests.categories"),
    ("visits.not_home", "requests.categories"),
    ("visits.not_home", "requests.problem"),  # "联系不上": a visit outcome, or (from a resident) a worry
    ("requests.yes", "requests.lead_ins"),
    ("requests.yes", "requests.asks"),  # "登记": yes, file it
    ("requests.greetings", "requests.asks"),  # "帮忙" alone is an opener; "帮忙看看…" asks
    ("replies.thanks", "requests.chitchat"),
    ("replies.ack", "requests.chitchat"),  # "知道了": an ack to a warning, chit-chat otherwise
    ("replies.ack", "visits.safe"),
    ("replies.safe", "requests.pleasantries"),
}

_base: dict | None = None
_extra: dict[str, list[str]] = {}
_version = 0


def _load() -> dict:
    global _base
    if _base is None:
        with FILE.open("rb") as f:
            _base = tomllib.load(f)
    return _base


def _node(path: str):
    node = _load()
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            raise KeyError(f"no word list {path!r} in {FILE.name}")
        node = node[part]
    return node


def words(path: str) -> tuple[str, ...]:
    """A list of words, the file's and then any the config added."""
    node = _node(path)
    if not isinstance(node, list):
        raise KeyError(f"{path!r} is a table of lists, not a list")
    return tuple(dict.fromkeys([*node, *_extra.get(path, [])]))


def table(path: str) -> dict[str, tuple[str, ...]]:
    """A table of lists (register.roles: role -> words), with the config's additions."""
    node = _node(path)
    if not isinstance(node, dict):
        raise KeyError(f"{path!r} is a list, not a table")
    return {k: words(f"{path}.{k}") for k, v in node.items() if isinstance(v, list)}


def lists() -> dict[str, tuple[str, ...]]:
    """Every list by its dotted path."""
    out = {}

    def walk(prefix: str, node: dict) -> None:
        for k, v in node.items():
            path = f"{prefix}.{k}" if prefix else k
            if isinstance(v, dict):
                walk(path, v)
            else:
                out[path] = words(path)
    walk("", _load())
    return out


def extend(extra: Mapping[str, list[str]] | None) -> None:
    """Add the config's words ([vocabulary] in config.toml). Unknown list names are an error."""
    global _version
    for path, more in (extra or {}).items():
        _node(path)  # raises for a list that does not exist
        if not isinstance(more, list) or not all(isinstance(w, str) and w for w in more):
            raise ValueError(f"[vocabulary] {path} must be a list of words")
        _extra[path] = list(dict.fromkeys([*_extra.get(path, []), *more]))
    _version += 1


def reset() -> None:
    """Back to the file's words only (tests)."""
    global _version
    _extra.clear()
    _version += 1


def version() -> int:
    """Changes whenever words are added: modules cache compiled patterns by it."""
    return _version


def conflicts() -> list[tuple[str, str, str]]:
    """(word, list, list) for every word in two lists that contradict each other."""
    all_lists = lists()
    out = []
    for a, b in CONTRADICTING:
        for w in sorted(set(all_lists[a]) & set(all_lists[b])):
            out.append((w, a, b))
    return out


def undeclared_overlaps() -> list[tuple[str, str, str]]:
    """(word, list, list) for a word in two lists whose pair is neither contradicting nor compatible:
    someone must decide which it is."""
    all_lists = lists()
    index: dict[str, list[str]] = {}
    for path, ws in all_lists.items():
        if path.startswith("requests.categories") or path.startswith("register.") and path.count(".") == 2:
            group = path.rsplit(".", 1)[0]  # words within one table (categories, roles …)
        else:
            group = path
        for w in set(ws):
            index.setdefault(w, []).append(group)
    declared = set(CONTRADICTING) | COMPATIBLE
    out = []
    for w, groups in sorted(index.items()):
        for i, a in enumerate(groups):
            for b in groups[i + 1:]:
                if a != b and (a, b) not in declared and (b, a) not in declared:
                    out.append((w, a, b))
    return out
