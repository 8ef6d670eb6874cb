"""A tiny, randomly initialised LAION CLAP built offline, in the official on-disk formats.

`build_hub_cache(hf_home)` writes a Hugging Face hub cache (`HF_HOME=<hf_home>`) holding stand-ins for the three
repositories laion_clap loads at import and construction time (roberta-base, bert-base-uncased,
facebook/bart-base): tokenizers trained with the `tokenizers` library and a one-layer RoBERTa with hidden size 768
(laion_clap hard-codes Linear(768, ...)). `build_checkpoint(path)` then constructs `laion_clap.CLAP_Module`
(HTSAT-tiny) in that cache and saves its weights the way LAION checkpoints are saved ({"state_dict": ...} with
`text_branch.embeddings.position_ids`, which laion_clap's loader deletes unconditionally).

`build_checkpoint` imports laion_clap, so it must run in a process whose HF_HOME and HF_HUB_OFFLINE=1 were set
before huggingface_hub was imported (`python -m tag_testkit.tiny_clap HF_HOME CHECKPOINT` does exactly that).
"""
from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path

SNAPSHOT = "0" * 40
CORPUS = [
    "rain on a tin roof", "a dog barks in the distance", "birds chirping in the morning forest",
    "a car engine starts and accelerates", "people talking in a busy cafe", "a piano plays a soft melody",
    "thunder rumbles during a heavy storm", "a cat meows and purrs", "waves crash on a rocky beach",
    "a train passes over the railway", "water drips into a metal sink", "a man speaks into a microphone",
] * 4
BPE_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
WORDPIECE_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def _snapshot(hf_home: Path, repo: str) -> Path:
    folder = hf_home / "hub" / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / "main").write_text(SNAPSHOT)
    snapshot = folder / "snapshots" / SNAPSHOT
    snapshot.mkdir(parents=True, exist_ok=True)
    return snapshot


def _write_bpe(folder: Path) -> int:
    """Byte-level BPE vocab.json + merges.txt (the RoBERTa/BART format); returns the vocabulary size."""
    from tokenizers import ByteLevelBPETokenizer

    tokenizer = ByteLevelBPETokenizer()
    tokenizer.train_from_iterator(CORPUS, vocab_size=400, min_frequency=1, special_tokens=BPE_SPECIALS)
    tokenizer.save_model(str(folder))
    return tokenizer.get_vocab_size()


def _write_wordpiece(folder: Path) -> None:
    from tokenizers import BertWordPieceTokenizer

    tokenizer = BertWordPieceTokenizer(lowercase=True)
    tokenizer.train_from_iterator(CORPUS, vocab_size=200, min_frequency=1, special_tokens=WORDPIECE_SPECIALS)
    tokenizer.save_model(str(folder))


def build_hub_cache(hf_home: Path) -> Path:
    """Write the fake hub cache under `hf_home` (idempotent); returns `hf_home`."""
    from transformers import RobertaConfig, RobertaModel
    import torch

    hf_home = Path(hf_home)
    roberta = _snapshot(hf_home, "roberta-base")
    vocab_size = _write_bpe(roberta)
    (roberta / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 512}))
    config = RobertaConfig(vocab_size=vocab_size, hidden_size=768, num_hidden_layers=1, num_attention_heads=12,
                           intermediate_size=256, max_position_embeddings=514, type_vocab_size=1,
                           pad_token_id=1, bos_token_id=0, eos_token_id=2)
    torch.manual_seed(0)
    RobertaModel(config).save_pretrained(str(roberta))
    _write_bpe(_snapshot(hf_home, "facebook/bart-base"))
    _write_wordpiece(_snapshot(hf_home, "bert-base-uncased"))
    return hf_home


def official_layout(state: dict) -> dict:
    """What LAION CLAP's training loop saves: DataParallel-prefixed weights, epoch, run name and the optimizer,
    whose learning rate its cosine schedule computes as a numpy float64 (the one non-tensor class inside)."""
    import numpy as np

    lr = 0.5 * (1 + np.cos(np.pi * 0.25)) * 1e-4
    optimizer = {"state": {}, "param_groups": [{"lr": lr, "betas": (0.9, 0.99), "eps": 1e-9, "weight_decay": 0.0,
                                                "amsgrad": False, "params": list(range(len(state)))}]}
    return {"epoch": 45, "name": "tiny-clap", "state_dict": {f"module.{k}": v for k, v in state.items()},
            "optimizer": optimizer}


def build_checkpoint(path: Path, *, amodel: str = "HTSAT-tiny", enable_fusion: bool = False) -> Path:
    """Construct a random CLAP through laion_clap's public API and save it as a LAION-style checkpoint."""
    import torch

    import laion_clap

    torch.manual_seed(0)
    module = laion_clap.CLAP_Module(enable_fusion=enable_fusion, amodel=amodel, device="cpu")
    state = {k: v for k, v in module.model.state_dict().items()}
    state.setdefault("text_branch.embeddings.position_ids", torch.arange(514)[None])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    torch.save(official_layout(state), partial)
    partial.replace(path)
    return path


def ensure_tiny_clap(folder: Path) -> tuple[Path, Path]:
    """(HF_HOME, checkpoint) of a tiny CLAP under `folder`, built once per folder (safe across test modules).

    Pass pytest's `tmp_path_factory.getbasetemp()` so every test module of a session shares one build.
    """
    folder = Path(folder) / "tiny_clap"
    folder.mkdir(parents=True, exist_ok=True)
    hf_home, checkpoint = folder / "hf", folder / "tiny-clap.pt"
    with (folder / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not checkpoint.is_file():
            env = dict(os.environ, HF_HOME=str(hf_home), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
                       PYTHONPATH=os.pathsep.join(filter(None, [str(Path(__file__).parent.parent),
                                                                os.environ.get("PYTHONPATH")])))
            done = subprocess.run([sys.executable, "-m", "tag_testkit.tiny_clap", str(hf_home), str(checkpoint)],
                                  env=env, capture_output=True, text=True, timeout=600)
            if done.returncode != 0:
                raise RuntimeError(f"building the tiny CLAP failed:\n{done.stderr[-4000:]}")
    return hf_home, checkpoint


def main(argv: list[str]) -> None:
    hf_home, checkpoint = Path(argv[0]), Path(argv[1])
    if os.environ.get("HF_HOME") != str(hf_home) or os.environ.get("HF_HUB_OFFLINE") != "1":
        raise SystemExit("run with HF_HOME=<hf_home> HF_HUB_OFFLINE=1 in the environment")
    build_hub_cache(hf_home)
    build_checkpoint(checkpoint)


if __name__ == "__main__":
    main(sys.argv[1:])
