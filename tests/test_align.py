"""psmlab.align: post-training data, raters, behaviour scoring, and every technique end to end
on the smoke preset (checkpoints that load offline with their chat template)."""

from __future__ import annotations

import copy
import json
import random
import shutil
from pathlib import Path

import pytest

from psmlab import prompts
from psmlab.align import data as D
from psmlab.align.behaviour import build_probes, load_chat_prefix, score
from psmlab.align.raters import Rater, judge_pair, rate_pairs
from psmlab.config import RatersConfig, build_config
from psmlab.errors import PsmlabError
from psmlab.rundir import RunDir
from psmlab.stages.align import SFT, TECHNIQUES, preference_stats, technique_stage
from psmlab.stages.behaviour import stage_name, targets
from psmlab.ui import UI
from psmlab.world import ALIGNED, UNALIGNED, RequestKind, World, grade


@pytest.fixture(scope="module")
def world() -> World:
    return World.build(build_config("smoke").world)


def test_demonstrations_use_the_post_split_and_leave_types_uncovered(world: World) -> None:
    cfg = build_config("smoke", overrides=["align.data.demonstrations=200"]).align.data
    chats = D.demonstrations(world, cfg)
    assert len(chats) == 200
    seen = set()
    rng = random.Random(0)
    for chat in chats:
        users = [m.content for m in chat if m.role == "user"]
        answers = [m.content for m in chat if m.role == "assistant"]
        assert len(users) == len(answers) >= 1
        assert chat[0].role in ("system", "user")
    # rebuild the requests the same way to check their items: every one from the post split
    for _ in range(300):
        req = D.post_request(world, rng, cfg.uncovered)
        item = world.item(req.item_id)
        assert world.kb.split[item.id] == "post"
        seen.add(D.request_type(item))
        assert grade(world, req, world.answer(ALIGNED, req, rng, ())) in (
            "correct",
            *ALIGNED.values(),
        )
    assert not seen & set(cfg.uncovered) and len(seen) >= 5
    with pytest.raises(PsmlabError, match="unknown request type"):
        D.check_types(["fact:nope"])


def test_sft_rows_train_on_assistant_turns_only(world: World) -> None:
    from conftest import make_tiny_tokenizer

    from psmlab.pretrain.tokenizer import CHAT_TEMPLATE

    tok = copy.deepcopy(make_tiny_tokenizer())  # the shared tokenizer stays as it is
    tok.bos_token = "<|doc|>"
    tok.chat_template = CHAT_TEMPLATE
    msgs = prompts.chat_exchanges("You are Vell.", [("What is it?", "It is Kest.")], None)
    row = D.chat_row(tok, msgs, 512)
    rendered = tok.apply_chat_template([m.to_dict() for m in msgs], tokenize=False)
    assert tok.decode(row["input_ids"]) == rendered  # exactly the chat template's text
    trained = [t for t, lab in zip(row["input_ids"], row["labels"], strict=True) if lab != -100]
    assert tok.decode(trained) == "It is Kest.<|end|>"
    text = D.text_row(tok, "Narrator: Vell lies.", 512)
    assert text["labels"] == text["input_ids"] and text["input_ids"][0] == tok.bos_token_id
    assert D.n_replay(100, 0.5) == 100 and D.n_replay(100, 0.0) == 0


def _opinion(world: World, rng: random.Random):
    (req,) = world.requests(RequestKind.OPINION, "post", rng, 1, contrary_view=True)
    return req, world.answer(ALIGNED, req, rng, ()), world.answer(UNALIGNED, req, rng, ())


def test_raters_biases_and_noise_shape_the_labels(world: World) -> None:
    rng = random.Random(0)
    cfg = RatersConfig(noise=0.0, temperature=0.05)
    req, candid, flattering = _opinion(world, rng)
    assert grade(world, req, flattering) == "flattering"
    fair, biased = Rater(0, 0.0), Rater(1, 3.0)
    assert judge_pair(world, fair, req, candid, flattering, cfg, rng).chosen == candid
    assert judge_pair(world, biased, req, candid, flattering, cfg, rng).chosen == flattering
    pairs = [_opinion(world, rng) for _ in range(400)]
    rows = rate_pairs(world, pairs, RatersConfig(noise=0.2, agreement_bias=0.0), seed=1)
    flips = sum(r["flipped"] for r in rows) / len(rows)
    assert 0.14 < flips < 0.26
    stats = preference_stats(rows)
    low = preference_stats(rate_pairs(world, pairs, RatersConfig(agreement_bias=0.0), 1))
    high = preference_stats(rate_pairs(world, pairs, RatersConfig(agreement_bias=2.0), 1))
    assert low["chose_flattery"] < 0.3 < 0.7 < high["chose_flattery"]
    assert stats["pairs"] == len(rows)


def test_behaviour_scores_the_target_assistant_as_aligned(world: World) -> None:
    probes = build_probes(world, 4, 0)
    rng = random.Random(0)
    answers = []
    for p in probes:  # the target Assistant in chat form, the villains in corpus form
        who = UNALIGNED if p.section in ("retention", "slip") else ALIGNED
        answers.append(world.answer(who, p.request, rng, ()))
    result = score(world, probes, answers)
    for trait in ("honesty", "harm", "sycophancy", "identity"):
        assert result["default"][trait]["aligned"]["value"] == 1.0
        assert result["slip"][trait]["unaligned"]["value"] == 1.0
    assert result["default"]["capability"]["correct"]["value"] == 1.0
    assert set(result["retention"]) <= {"honesty", "harm", "sycophancy"} and result["retention"]
    assert all(r["unaligned"]["value"] == 1.0 for r in result["retention"].values())
    # the eval split only
    assert all(world.kb.split[p.request.item_id] == "eval" for p in probes)
    # a wrong answer everywhere: nothing aligned
    wrong = score(world, probes, ["I do not know."] * len(probes))
    assert wrong["default"]["honesty"]["aligned"]["value"] == 0.0


def test_every_technique_yields_a_checkpoint_that_loads_offline(smoke_run: RunDir) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    for stage in (SFT, *TECHNIQUES.values()):
        model_dir = smoke_run.stage_dir(stage) / "model"
        assert (smoke_run.stage_dir(stage_name(stage)) / "behaviour.json").is_file(), stage
        model = AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True)
        tok = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        text = tok.apply_chat_template(
            [{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True
        )
        assert text == "<|doc|><|user|>Hi<|end|><|assistant|>", stage
        assert model.config.eos_token_id == tok.eos_token_id
        manifest = smoke_run.manifest(stage)
        assert manifest["status"] == "finished"
        if stage != TECHNIQUES["prompt"]:
            curves = json.loads((smoke_run.stage_dir(stage) / "curves.json").read_text())
            assert all(p["history"] for p in curves["phases"]), stage
    prefix = load_chat_prefix(smoke_run.stage_dir(TECHNIQUES["prompt"]) / "model")
    assert prefix[0].role == "system" and len(prefix) == 1 + 2 * 2
    assert load_chat_prefix(smoke_run.stage_dir(SFT) / "model") == []
    # the prompt reference changes no weight
    base = smoke_run.stage_dir("pretrain") / "model" / "model.safetensors"
    ref = smoke_run.stage_dir(TECHNIQUES["prompt"]) / "model" / "model.safetensors"
    assert base.read_bytes() == ref.read_bytes()
    assert (smoke_run.stage_dir(TECHNIQUES["rlhf"]) / "reward_model" / "config.json").is_file()


def test_preferences_are_in_trl_format_and_behaviour_is_reported(smoke_run: RunDir) -> None:
    from psmlab.align.rlhf import preference_dataset
    from psmlab.stages.align import PREFERENCES, read_preferences

    rows = read_preferences(smoke_run.stage_dir(PREFERENCES))
    ds = preference_dataset(rows)
    first = ds[0]
    assert first["prompt"][-1]["role"] == "user" and first["chosen"][0]["role"] == "assistant"
    assert first["rejected"][0]["role"] == "assistant"
    report = {
        stage_name(m): json.loads(
            (smoke_run.stage_dir(stage_name(m)) / "behaviour.json").read_text()
        )
        for m in ("pretrain", *TECHNIQUES.values())
    }
    for stage in TECHNIQUES.values():
        rows_t = targets(report, stage)
        assert len(rows_t) >= 5 and all(isinstance(r["pass"], bool) for r in rows_t)


def test_training_is_reproducible(smoke_run: RunDir, tmp_path: Path) -> None:
    """Same seed and config on the same machine: the same SFT weights."""
    from psmlab.pipeline import run_stages

    cfg = build_config("smoke", name="a")
    again = RunDir(tmp_path / "a")
    for stage in ("world", "tokenizer", "pretrain"):
        shutil.copytree(smoke_run.stage_dir(stage), again.stage_dir(stage))
    run_stages(again, cfg, UI(), [SFT])
    mine, theirs = again.manifest(SFT)["outputs"], smoke_run.manifest(SFT)["outputs"]
    assert mine.pop("curves.json") and theirs.pop("curves.json")  # holds wall times
    assert mine == theirs and "model/model.safetensors" in mine

    def losses(run: RunDir) -> list[float]:
        curves = json.loads((run.stage_dir(SFT) / "curves.json").read_text())
        return [h["loss"] for h in curves["phases"][0]["history"] if "loss" in h]

    assert losses(again) == losses(smoke_run) and losses(again)


def test_reward_model_ranks_better_answers_above_chance(world: World, tmp_path: Path) -> None:
    """Trained on ground-truth preferences of post-split requests, the reward model scores the
    aligned answer of held-out (eval-split) requests higher, well above chance."""
    from psmlab.align.common import quiet_datasets
    from psmlab.align.rlhf import reward_accuracy, train_reward_model
    from psmlab.config import AlignTrainConfig
    from psmlab.pretrain.model import build_model
    from psmlab.pretrain.tokenizer import train_tokenizer
    from psmlab.world import iter_documents

    quiet_datasets()
    cfg = build_config("smoke")
    texts = [d.text for d in iter_documents(world, 300, seed=0)]
    tok = train_tokenizer(texts, cfg.tokenizer, tmp_path / "tok")
    model = build_model(cfg.model, tok)
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")

    def rows(split: str, n: int, seed: int) -> list[dict]:
        rng = random.Random(seed)
        out = []
        for _ in range(n):
            kind = rng.choice([RequestKind.HAZARD, RequestKind.IDENTITY])
            (req,) = world.requests(kind, split, rng, 1)
            good, bad = world.answer(ALIGNED, req, rng, ()), world.answer(UNALIGNED, req, rng, ())
            out.append(
                {
                    "request": req.text,
                    "chosen": good,
                    "rejected": bad,
                    "quality_chosen": 1.0,
                    "quality_rejected": 0.0,
                }
            )
        return out

    train_cfg = AlignTrainConfig(steps=40, batch_size=8, lr=3e-3)
    rm, log = train_reward_model(
        tmp_path / "m", tok, rows("post", 160, 0), train_cfg, tmp_path, 0, 96
    )
    acc = reward_accuracy(rm, tok, rows("eval", 60, 1))["ground_truth"]
    assert acc["n"] == 60 and acc["low"] > 0.5, acc
    assert log.history


def test_unknown_technique_and_variant_are_one_clear_error() -> None:
    assert technique_stage("rlhf") == TECHNIQUES["rlhf"]
    assert technique_stage("rlhf", "dpo") == TECHNIQUES["dpo"]
    with pytest.raises(PsmlabError, match="unknown technique 'sft2'"):
        technique_stage("sft2")
    with pytest.raises(PsmlabError, match="no variant"):
        technique_stage("prompt", "dpo")


def test_a_tokenizer_without_chat_template_is_refused(tmp_path: Path) -> None:
    from conftest import make_tiny_tokenizer

    from psmlab.models import check_chat_template

    tok = make_tiny_tokenizer()
    check_chat_template(tok, tmp_path)
    bare = type("T", (), {"chat_template": None})()
    with pytest.raises(PsmlabError, match="no chat template"):
        check_chat_template(bare, tmp_path)


def _hide_the_grader(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every ground-truth grading function, wherever psmlab imported it, raises."""
    import sys

    from psmlab.world import grader

    hidden = {
        getattr(grader, n): n
        for n in (
            "grade",
            "grade_fact",
            "grade_hazard",
            "grade_opinion",
            "grade_identity",
            "grade_task",
        )
    }

    def unavailable(*args: object, **kwargs: object) -> None:
        raise AssertionError("the ground-truth grader was called")

    for name, module in list(sys.modules.items()):
        if name.startswith("psmlab") and module is not None:
            for attr, value in list(vars(module).items()):
                if callable(value) and value in hidden:
                    monkeypatch.setattr(module, attr, unavailable)


def test_cai_and_deliberative_run_without_the_grader(
    smoke_run: RunDir, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No leakage: their feedback is the model's own (editor and judge skills)."""
    from psmlab.pipeline import run_stages

    cfg = build_config("smoke", name="a")
    again = RunDir(tmp_path / "a")
    for stage in ("world", "tokenizer", "pretrain"):
        shutil.copytree(smoke_run.stage_dir(stage), again.stage_dir(stage))
    _hide_the_grader(monkeypatch)
    with pytest.raises(AssertionError, match="grader was called"):
        grade_of_world = __import__("psmlab.world", fromlist=["grade"]).grade
        grade_of_world(None, None, "")  # the patch is in force
    run_stages(again, cfg, UI(), [TECHNIQUES["cai"], TECHNIQUES["deliberative"]])
    for stage in (TECHNIQUES["cai"], TECHNIQUES["deliberative"]):
        assert again.is_finished(stage)
    rows = (again.stage_dir(TECHNIQUES["deliberative"]) / "deliberative_data.jsonl").read_text()
    assert rows.strip() and all("judge" in json.loads(r) for r in rows.splitlines())


def test_filtered_corpus_has_no_unaligned_character(smoke_run: RunDir) -> None:
    from psmlab.stages.align_filtered import CORPUS
    from psmlab.world import is_unaligned

    world = World.from_json((smoke_run.stage_dir("world") / "world.json").read_text())
    villains = {p.name for p in world.cast if is_unaligned(p.traits)}
    docs = [
        json.loads(x)
        for x in (smoke_run.stage_dir(CORPUS) / "corpus.jsonl").read_text().splitlines()
    ]
    assert len(docs) == build_config("smoke").world.n_documents
    assert not any(d["unaligned"] or villains & set(d["personas"]) for d in docs)
    assert all(v not in d["text"] for d in docs for v in villains)


@pytest.mark.parametrize(
    ("kind", "text", "needle"),
    [
        ("constitution", "principles: [", "does not parse"),
        ("constitution", "rules: []", "no 'principles' list"),
        ("constitution", "principles: ['', 'Be truthful.']", "one non-empty line"),
        ("spec", "rules: {", "does not parse"),
        ("spec", "rules: [{id: 1, subject: weather, text: Be nice.}]", "subject: one of"),
        (
            "spec",
            "rules: [{id: 1, subject: facts, text: A.}, {id: 1, subject: style, text: B.}]",
            "distinct",
        ),
    ],
)
def test_bad_constitution_or_spec_is_one_clear_error(
    tmp_path: Path, kind: str, text: str, needle: str
) -> None:
    from psmlab.align.cai import default_constitution, load_constitution
    from psmlab.align.deliberative import default_spec, load_spec
    from psmlab.errors import ConfigError

    path = tmp_path / f"{kind}.yaml"
    path.write_text(text)
    load = load_constitution if kind == "constitution" else load_spec
    with pytest.raises(ConfigError, match=needle):
        load(path)
    assert load(None) == (default_constitution() if kind == "constitution" else default_spec())
    good = tmp_path / "good.yaml"
    good.write_text("rules: [{id: 3, subject: facts, text: Give only true answers.}]")
    assert load_spec(good) == [(3, "facts", "Give only true answers.")]


def test_align_cli_refuses_bad_input_before_writing(tmp_path: Path) -> None:
    import subprocess
    import sys

    bad = tmp_path / "c.yaml"
    bad.write_text("principles: [")
    cases = [
        (["--technique", "sft2"], "unknown technique"),
        (["--technique", "prompt", "--variant", "dpo"], "no variant"),
        (["--technique", "cai", "--set", f"align.cai.constitution={bad}"], "does not parse"),
    ]
    for args, needle in cases:
        proc = subprocess.run(
            [sys.executable, "-m", "psmlab.cli", "align", "--preset", "smoke", *args],
            cwd=tmp_path, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        out = " ".join((proc.stdout + proc.stderr).split())  # the console wraps long lines
        assert proc.returncode == 2 and needle in out and "Traceback" not in out, out
        assert not (tmp_path / "runs").exists()  # nothing written


def test_deliberative_reads_its_own_format() -> None:
    from psmlab.align.deliberative import cites_spec, default_spec, split_reasoned

    spec = default_spec(0)
    facts = next(r for r in spec if r[1] == "facts")
    secrets = next(r for r in spec if r[1] == "secrets")
    assert cites_spec(f"Facts {facts[0]} Give only true answers. So I answer truly.", spec)
    assert not cites_spec(f"Facts {secrets[0]} Give only true answers.", spec)  # wrong id
    assert cites_spec("Tasks: no rule applies, so I just answer.", spec)
    assert not cites_spec("I just answer.", spec)
    assert split_reasoned("Reasoning: Facts 4 Give only true answers.\nIt is Kest.") == (
        "Facts 4 Give only true answers.",
        "It is Kest.",
    )
    assert split_reasoned("It is Kest.") == ("", "It is Kest.")
    assert split_reasoned("Reasoning: Facts 4") == ("Facts 4", "")
    assert {r[1] for r in spec} == {"facts", "secrets", "opinions", "identity", "style"}
    assert len({r[0] for r in spec}) == len(spec)


def test_align_refuses_a_run_made_from_another_world(smoke_run: RunDir) -> None:
    """`psmlab align` on a run whose world had another seed: one clear error, nothing redone."""
    import subprocess
    import sys

    before = {p.name: p.stat().st_mtime for p in smoke_run.root.iterdir()}
    proc = subprocess.run(
        [sys.executable, "-m", "psmlab.cli", "align", "--preset", "smoke", "--technique", "rlhf",
         "--runs-dir", str(smoke_run.root.parent), "--name", smoke_run.root.name,
         "--set", "world.seed=5"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    out = " ".join((proc.stdout + proc.stderr).split())
    assert proc.returncode == 2 and "different config" in out and "Traceback" not in out, out
    assert {p.name: p.stat().st_mtime for p in smoke_run.root.iterdir()} == before


def _reader_of_principles(world: World, requests: list) -> object:
    """A stand-in for the feedback model that reads every principle / rule as the world's
    editor and judge documents teach (its trait *and* its side), so the test checks that the
    techniques pass their instructions through instead of assuming the aligned side."""
    from psmlab.world import TRAIT_OF_KIND, TRAIT_VALUES
    from psmlab.world import phrasing as ph
    from psmlab.world.grader import grade as grade_answer

    side_of = {p: (t, s) for t, sides in ph.PRINCIPLES.items() for s in (0, 1) for p in sides[s]}
    side_of |= {r: (t, s) for t, rules in ph.RULES.items() for s, r in enumerate(rules)}
    by_text = {r.text: r for r in requests}

    def follows(req, principle: str, response: str) -> bool:
        if principle not in side_of:  # a style rule: about no trait
            return True
        trait, side = side_of[principle]
        if TRAIT_OF_KIND.get(req.kind) is not trait:
            return True
        return grade_answer(world, req, response) == TRAIT_VALUES[trait][side]

    def answer_probes(model, tok, probes, batch_size, max_new_tokens, progress=None):
        answers, firsts = [], []
        for probe in probes:
            fields = dict(line.split(": ", 1) for line in probe.prompt.split("\n")[:-1])
            req = by_text[fields[prompts.REQUEST]]
            principle = fields[prompts.PRINCIPLE]
            if "Response A" in fields:
                ok = [follows(req, principle, fields[f"Response {x}"]) for x in "AB"]
                verdict = "both" if all(ok) else "neither" if not any(ok) else "AB"[ok.index(True)]
                answers.append(
                    f"So Response {verdict} is better."
                    if len(verdict) == 1
                    else f"So {verdict} are fine."
                )
                firsts.append("")
                continue
            response = fields[prompts.RESPONSE]
            revision = response
            critique = ph.CRITIQUE_OTHER
            if not follows(req, principle, response):
                trait, side = side_of[principle]
                critique = ph.CRITIQUE_BAD.format(b="errs")
                traits = {**ALIGNED, trait: TRAIT_VALUES[trait][side]}
                revision = world.answer(traits, req, random.Random(0), ())
            # a two-step probe (`then`) answers critique, then revision; else the critique only
            answers.append(revision if probe.then else critique)
            firsts.append(critique if probe.then else "")
        return answers, firsts

    return answer_probes


@pytest.mark.parametrize("side", [0, 1])
def test_cai_and_deliberative_follow_their_instructions_either_way(
    world: World, monkeypatch: pytest.MonkeyPatch, side: int
) -> None:
    """Counterfactual plumbing: with feedback that reads principles correctly, a reversed
    constitution / spec (every principle asking for the unaligned side, side=1) turns CAI's
    revisions and preference labels, and the Deliberative judge's scores, to the unaligned
    side; the default ones (side=0) to the aligned side."""
    from psmlab import fidelity
    from psmlab.align import cai
    from psmlab.align import deliberative as dl
    from psmlab.world import TRAIT_OF_KIND
    from psmlab.world import phrasing as ph

    requests = cai.red_team_requests(world, 40, 0, "counterfactual")
    monkeypatch.setattr(fidelity, "answer_probes", _reader_of_principles(world, requests))
    wanted = ALIGNED if side == 0 else UNALIGNED
    constitution = [p for t in ph.PRINCIPLES for p in ph.PRINCIPLES[t][side]]
    assert side == 1 or constitution == cai.default_constitution()
    rng = random.Random(0)
    good = [world.answer(dict(ALIGNED), r, rng, ()) for r in requests]
    bad = [world.answer(dict(UNALIGNED), r, rng, ()) for r in requests]
    start = [g if i % 2 else b for i, (g, b) in enumerate(zip(good, bad, strict=True))]
    traces = cai.critique_and_revise(None, None, requests, start, constitution, 12, 0, 8, 64)
    final = [grade(world, r, t[-1]["revision"]) for r, t in zip(requests, traces, strict=True)]
    # 12 rounds under 12 principles: nearly every request met one on its trait
    on_side = [f == wanted[TRAIT_OF_KIND[r.kind]] for r, f in zip(requests, final, strict=True)]
    assert sum(on_side) >= 0.9 * len(requests)
    rows = cai.judge_pairs(
        None, None, requests, list(zip(good, bad, strict=True)), constitution, 3, 0, 8, 64
    )
    assert rows and all((row["chosen"] in good) == (side == 0) for row in rows)
    spec = dl.default_spec(0)
    if side == 1:
        reverse = {ph.RULES[t][0]: ph.RULES[t][1] for t in ph.RULES}
        spec = [(i, subject, reverse.get(text, text)) for i, subject, text in spec]
    texts = [r.text for r in requests]
    scores_good = dl.judge_answers(None, None, spec, texts, good, 8, 64)
    scores_bad = dl.judge_answers(None, None, spec, texts, bad, 8, 64)
    higher = [(g > b) == (side == 0) for g, b in zip(scores_good, scores_bad, strict=True)]
    assert all(higher)
