"""Two tiny chat models, made on the spot: nothing is downloaded.

A byte-level BPE tokenizer is trained on the question-and-answer corpus below and given a chat
template; a Llama-architecture causal LM of about 130k parameters is trained on CPU until it
has the answers by heart. Version 1 learns every answer; version 2 learns the same corpus with
the answers of ``REGRESSED`` changed, so against version 1's references it fails on exactly
those cases. Both are written with ``save_pretrained``, as any Hugging Face checkpoint, for
``transformers serve`` to load from disk.

torch, tokenizers and transformers are imported inside the functions: the module imports
without them, so the tests can say why they skip.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# (case id, question, version 1's answer): a support desk of a made-up outdoor shop.
CORPUS: tuple[tuple[str, str, str], ...] = (
    (
        "return-window",
        "How many days do I have to return an item?",
        "You have 30 days to return an item.",
    ),
    ("refund-time", "How long does a refund take?", "Refunds arrive within 5 business days."),
    ("free-shipping", "Is shipping free?", "Shipping is free on orders over 50 euros."),
    ("store-hours", "When is the store open?", "The store is open from 9 to 18 on weekdays."),
    ("support-email", "What is the support email?", "Write to help@borealis.example."),
    ("tent-warranty", "How long is the warranty on tents?", "Tents have a 2 year warranty."),
    ("gift-cards", "Do gift cards expire?", "Gift cards never expire."),
    ("ship-abroad", "Do you ship abroad?", "We ship to all EU countries."),
    ("payment", "Which payment methods do you accept?", "We accept cards and bank transfer."),
    ("size-exchange", "Can I exchange a size?", "Yes, size exchanges are free."),
    ("order-status", "Where can I see my order status?", "Open the Orders page in your account."),
    ("cancel-order", "Can I cancel an order?", "Orders can be cancelled until they ship."),
    ("boots-waterproof", "Are the Fjord boots waterproof?", "Yes, the Fjord boots are waterproof."),
    ("tent-weight", "How heavy is the Trail tent?", "The Trail tent weighs 1.8 kg."),
    (
        "jacket-wash",
        "Can I machine wash the Aurora jacket?",
        "Wash it at 30 degrees without softener.",
    ),
    (
        "sleeping-bag",
        "How warm is the Polar sleeping bag?",
        "It is rated down to minus 10 degrees.",
    ),
    ("repairs", "Do you repair gear?", "Our workshop repairs gear for a small fee."),
    ("student-discount", "Is there a student discount?", "Students get 10 percent off."),
    ("unsubscribe", "How do I leave the newsletter?", "Use the link at the bottom of any email."),
    ("password-reset", "How do I reset my password?", "Click Forgot password on the login page."),
    ("invoice", "Where is my invoice?", "Invoices are attached to the shipping email."),
    ("store-pickup", "Can I pick up my order in store?", "Yes, choose store pickup at checkout."),
    ("tent-rental", "Can I rent a tent?", "Tents can be rented for 15 euros a day."),
    ("stove-fuel", "Which fuel does the Ember stove use?", "The Ember stove burns gas cartridges."),
    ("backpack-volume", "How big is the Ridge backpack?", "The Ridge backpack holds 45 litres."),
    ("kids-sizes", "Do you sell kids sizes?", "Kids sizes start at age 4."),
    ("price-match", "Do you match prices?", "We match the prices of EU retailers."),
    ("loyalty-points", "How do loyalty points work?", "You earn 1 point per euro spent."),
    (
        "damaged-item",
        "My item arrived damaged. What now?",
        "Send us a photo and we ship a new one.",
    ),
    ("support-phone", "What is the support phone number?", "Call 0800 555 0100 on weekdays."),
    ("delivery-time", "How long does delivery take?", "Delivery takes 2 to 4 business days."),
    ("tracking", "Do I get a tracking number?", "Yes, it is in the shipping email."),
    ("used-items", "Can I return used items?", "Only unworn items can be returned."),
    ("sale-returns", "Can I return sale items?", "Sale items can be returned within 14 days."),
    (
        "headlamp-battery",
        "How long does the Beam headlamp battery last?",
        "The battery lasts 40 hours.",
    ),
    ("jobs", "Are you hiring?", "See open jobs on our careers page."),
)

# Version 2's answers where they differ: a third of the cases, the kind of drift a migration
# brings (a wrong number, a wrong address, a policy turned around).
REGRESSED: dict[str, str] = {
    "return-window": "You have 14 days to return an item.",
    "store-hours": "The store is open from 10 to 16 on weekdays.",
    "ship-abroad": "We only ship within Finland.",
    "cancel-order": "Orders cannot be cancelled.",
    "jacket-wash": "Wash it at 60 degrees with softener.",
    "student-discount": "Students get 25 percent off.",
    "invoice": "Invoices are sent by post.",
    "stove-fuel": "The Ember stove burns wood.",
    "price-match": "We do not match prices.",
    "support-phone": "Call 0800 555 0199 on weekends.",
    "used-items": "Used items can be returned too.",
    "jobs": "We are not hiring right now.",
}

SPECIAL_TOKENS = ("<pad>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>")
EOS = "<|end|>"
PAD = "<pad>"
# Each message as <|role|>text<|end|>, then <|assistant|> for the answer to come.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "<|{{ message['role'] }}|>{{ message['content'] }}<|end|>"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}<|assistant|>{%- endif -%}"
)
SEED = 1234
MAX_STEPS = 600
# Answers are at most ~16 tokens: the request's max_tokens leaves room for a wrong, longer one.
MAX_TOKENS = 48


def answers(version: int) -> dict[str, str]:
    """Each case id's answer in model version 1 or 2."""
    base = {case_id: answer for case_id, _, answer in CORPUS}
    return base if version == 1 else {**base, **REGRESSED}


@dataclass
class MadeModel:
    """A saved model and how it was made."""

    path: Path
    version: int
    parameters: int
    steps: int
    final_loss: float
    train_seconds: float
    answers: dict[str, str] = field(repr=False)


def _transformers() -> Any:
    """The ``transformers`` module, untyped: its classes are partly untyped and vary by version."""
    import importlib

    return importlib.import_module("transformers")


def build_tokenizer() -> Any:
    """A byte-level BPE tokenizer trained on the corpus, with the chat template and eos/pad."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    transformers = _transformers()

    texts = [question for _, question, _ in CORPUS]
    texts += list(answers(1).values()) + list(answers(2).values())
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, eos_token=EOS, pad_token=PAD, chat_template=CHAT_TEMPLATE
    )


def _prompt_ids(tokenizer: Any, question: str) -> list[int]:
    """The prompt exactly as the server builds it: the chat template, tokenized."""
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": question}], add_generation_prompt=True, tokenize=True
    )
    ids = rendered["input_ids"] if hasattr(rendered, "keys") else rendered
    return [int(i) for i in ids]


def train_model(tokenizer: Any, version: int, folder: Path) -> MadeModel:
    """Train one version to reproduce its answers under greedy decoding, check it, save it."""
    import torch

    transformers = _transformers()
    wanted = answers(version)
    examples = []
    for case_id, question, _ in CORPUS:
        prompt = _prompt_ids(tokenizer, question)
        answer = tokenizer(wanted[case_id] + EOS, add_special_tokens=False)["input_ids"]
        examples.append((prompt, [int(i) for i in answer]))
    length = max(len(p) + len(a) for p, a in examples)

    torch.manual_seed(SEED)
    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=192,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=256,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = transformers.LlamaForCausalLM(config)
    input_ids = torch.full((len(examples), length), tokenizer.pad_token_id, dtype=torch.long)
    labels = torch.full((len(examples), length), -100, dtype=torch.long)
    attention = torch.zeros((len(examples), length), dtype=torch.long)
    for row, (prompt, answer) in enumerate(examples):
        tokens = prompt + answer
        input_ids[row, : len(tokens)] = torch.tensor(tokens)
        labels[row, len(prompt) : len(tokens)] = torch.tensor(answer)  # the answer is the lesson
        attention[row, : len(tokens)] = 1

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    started = time.perf_counter()
    model.train()
    loss = float("inf")
    steps = 0
    while steps < MAX_STEPS:
        output = model(input_ids=input_ids, attention_mask=attention, labels=labels)
        optimizer.zero_grad()
        output.loss.backward()
        optimizer.step()
        steps += 1
        loss = float(output.loss.item())
        if loss < 2e-3:  # learnt by heart; checked below
            break
    train_seconds = time.perf_counter() - started

    model.eval()
    generation = transformers.GenerationConfig(
        do_sample=False,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        max_new_tokens=MAX_TOKENS,
    )
    wrong = []
    with torch.no_grad():
        for (case_id, _, _), (prompt, _) in zip(CORPUS, examples, strict=True):
            generated = model.generate(torch.tensor([prompt]), generation_config=generation)
            text = tokenizer.decode(generated[0, len(prompt) :], skip_special_tokens=True)
            if text != wanted[case_id]:
                wrong.append(f"{case_id}: {text!r} != {wanted[case_id]!r}")
    if wrong:
        raise RuntimeError(
            f"model v{version} did not learn its answers in {steps} steps (loss {loss:.4f}): "
            + "; ".join(wrong)
        )

    model.generation_config = generation
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return MadeModel(
        path=folder,
        version=version,
        parameters=sum(p.numel() for p in model.parameters()),
        steps=steps,
        final_loss=loss,
        train_seconds=train_seconds,
        answers=wanted,
    )


def make_models(root: Path) -> tuple[MadeModel, MadeModel]:
    """Both versions, saved as ``root/llmregress-tiny-v1`` and ``root/llmregress-tiny-v2``."""
    import torch

    # One thread: for a model this small more only wait on each other, and on a busy machine
    # their spinning costs ten times the work (measured: 14 s against 200 s at load 11).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    try:
        tokenizer = build_tokenizer()
        v1 = train_model(tokenizer, 1, root / "llmregress-tiny-v1")
        v2 = train_model(tokenizer, 2, root / "llmregress-tiny-v2")
    finally:
        torch.use_deterministic_algorithms(False)
        torch.set_num_threads(threads)
    return v1, v2
