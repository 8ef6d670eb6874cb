"""Runs in a subprocess with HF_HOME pointing at the tiny CLAP's hub cache (see test_clap_model.py).

laion_clap and huggingface_hub read HF_HOME and HF_HUB_OFFLINE when first imported, so the checks that load a
CLAP cannot run inside the pytest process. Prints one JSON object with what the tests assert on.
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np

from tagcore.audio_types import Audio
from tagcore.config import load_config
from tagcore.errors import WeightsMissing
from tagcore.scoring import rank


def tone(freq: float, seconds: float, rate: int = 16000, phase: float = 0.0) -> Audio:
    t = np.arange(int(seconds * rate)) / rate
    return Audio(0.4 * np.sin(2 * np.pi * freq * t + phase) + 0.1 * np.sin(2 * np.pi * 3.1 * freq * t), rate)


def refusal(model) -> str:
    try:
        model.load()
    except WeightsMissing as error:
        return error.message
    return "loaded"


def main(hf_home: Path, checkpoint: Path, scratch: Path) -> None:
    import tag_clap.hubfiles as hubfiles
    from huggingface_hub import constants
    from tag_clap.model import ClapModel, center_window, prepare
    from tag_clap.scorer import ClapScorer
    from tag_clap.settings import ClapSettings

    out: dict = {}
    config = load_config(environ={"TAG_CLAP_CHECKPOINT": str(checkpoint), "TAG_CLAP_DEVICE": "cpu",
                                  "TAG_CLAP_BATCH_SIZE": "8"})
    scorer = ClapScorer(config)
    prompts = ["rain on a tin roof", "a dog barks", "a piano plays a soft melody", "a train passes"]
    clips = [tone(220, 3), tone(440, 12), tone(880, 7, rate=22050), tone(300, 10, rate=48000)]

    audio = scorer.model.embed_audio(clips)
    text = scorer.model.embed_text(prompts)
    out["audio_norms"] = np.linalg.norm(audio, axis=1).tolist()
    out["text_norms"] = np.linalg.norm(text, axis=1).tolist()
    out["text_distinct"] = float(np.abs(text[0] - text[1]).max())

    first = scorer.score(prompts, clips)
    out["scores"] = first
    out["scores_again"] = scorer.score(prompts, clips)
    out["scores_one_by_one"] = [scorer.score([p], [c])[0] for p, c in zip(prompts, clips)]
    small = ClapScorer(config, ClapSettings.from_config(config, batch_size=3))
    small.model.module = scorer.model.module  # the same weights, embedded in chunks of 3
    out["scores_batch3"] = small.score(prompts, clips)

    # The same cosines straight from laion_clap's public API, on the same deterministic window.
    module = scorer.model.module
    public_audio = module.get_audio_embedding_from_data([prepare(c) for c in clips])
    public_text = module.get_text_embedding(prompts)
    out["public_scores"] = np.sum(public_audio * public_text, axis=1).tolist()

    # A 12 s clip scores as its centre 10 s; laion_clap alone would crop at random.
    long = tone(440, 12, rate=48000)
    centre = Audio(center_window(long.samples[0], 10 * long.sample_rate), long.sample_rate)
    out["long_vs_centre"] = [scorer.score([prompts[1]], [long])[0], scorer.score([prompts[1]], [centre])[0]]

    candidates = [tone(f, 4, phase=0.3) for f in (200, 500, 1000, 2000)]
    order, scores = rank(scorer, "a dog barks", candidates)
    out["rank_order"], out["rank_scores"] = order, scores

    # A hub cache with roberta-base's model but no tokenizer files.
    broken = scratch / "broken-hub"
    source = hf_home / "hub" / "models--roberta-base"
    shutil.copytree(source, broken / "models--roberta-base", ignore=shutil.ignore_patterns("vocab.json", "merges.txt"))
    constants.HF_HUB_CACHE = str(broken)
    other = ClapSettings.from_config(config, batch_size=5)
    out["missing_tokenizer"] = refusal(ClapModel(other))
    hubfiles_check = hubfiles.missing_text_files
    import tag_clap.model as model_module

    model_module.missing_text_files = lambda: []  # skip the file check: laion_clap now builds an empty tokenizer
    out["empty_tokenizer"] = refusal(ClapModel(other))
    model_module.missing_text_files = hubfiles_check
    print("PROBE-JSON " + json.dumps(out))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))
