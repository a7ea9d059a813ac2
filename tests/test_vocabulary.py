"""One vocabulary: every word the bot reads sits in bot/core/vocabulary.toml; no word sits in two
lists that contradict; config can add words and the readers pick them up."""
from __future__ import annotations

import pytest

from bot.core import vocabulary
from bot.domain.acks import parse_reply
from bot.domain.requests.rules import classify


@pytest.fixture(autouse=True)
def _fresh_vocabulary():
    vocabulary.reset()
    yield
    vocabulary.reset()


def test_no_word_sits_in_two_lists_that_contradict():
    assert vocabulary.conflicts() == []


def test_every_shared_word_is_a_decided_pair():
    # a word in two lists whose pair nobody declared (contradicting or compatible) must be decided
    assert vocabulary.undeclared_overlaps() == []


def test_a_contradiction_is_caught():
    vocabulary.extend({"requests.greetings": ["救命"]})  # "救命" is a cry for help
    assert ("救命", "replies.help", "requests.greetings") in vocabulary.conflicts()


def test_the_help_word_qiuzhu_is_not_a_greeting():
    """Regression: "求助" was a help word in acks and a greeting (nothing to file) in the requests rules."""
    assert "求助" in vocabulary.words("replies.help")
    assert "求助" not in vocabulary.words("requests.greetings")


def test_config_extends_a_list_and_the_readers_follow():
    assert parse_reply("晓得了") is None
    vocabulary.extend({"replies.ack": ["晓得了"], "requests.categories.water": ["水漫金山"]})
    assert parse_reply("晓得了") == ("ok", "")
    assert classify("楼下水漫金山", object.__new__(type("S", (), {"categories": {}, "urgent_words": []})))[0] == "water"


def test_an_unknown_list_in_config_is_an_error():
    with pytest.raises(KeyError):
        vocabulary.extend({"replies.nonsense": ["x"]})
    with pytest.raises(ValueError):
        vocabulary.extend({"replies.ack": "not-a-list"})


def test_the_lists_the_bot_reads_are_there():
    for path in ("replies.ack", "replies.help", "replies.safe", "commands.forwarded", "commands.visited",
                 "visits.not_home", "requests.urgent", "requests.greetings", "register.vulnerable"):
        assert vocabulary.words(path), path
    assert set(vocabulary.table("register.roles")) >= {"staff", "grid_lead", "building_lead", "social_worker"}
    assert set(vocabulary.words("replies.safe")) <= set(vocabulary.words("replies.ack"))
