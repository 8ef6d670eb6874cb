"""Tiny, randomly initialised speech models saved in the Hugging Face layout (save_pretrained).

The speech backends load these through exactly the code that loads real checkpoints, so tests and the CPU
benchmark exercise tokenisation, batching, vocoding and voice cloning without downloading anything. The audio
they make is noise-like; only shapes, lengths, determinism and error handling are meaningful.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import TypedDict

SENTENCES = [
    "Hello there. How are you today?",
    "The quick brown fox jumps over the lazy dog.",
    "Speech synthesis turns text into audio, one sentence at a time!",
    "Numbers like 1 2 3 and punctuation, such as commas; are fine.",
    "Pack my box with five dozen liquor jugs. Sphinx of black quartz, judge my vow.",
]
SPEAKER_DIM = 512  # SpeechT5's x-vector size, kept so the shipped default voice fits the tiny model too


def build_speecht5(root: Path) -> tuple[Path, Path]:
    """Write a tiny SpeechT5 TTS model (+ char sentencepiece tokenizer) and a tiny HiFi-GAN; return both folders."""
    import sentencepiece as spm
    import torch
    from transformers import (SpeechT5Config, SpeechT5FeatureExtractor, SpeechT5ForTextToSpeech, SpeechT5HifiGan,
                              SpeechT5HifiGanConfig, SpeechT5Processor, SpeechT5Tokenizer)

    model_dir, vocoder_dir = root / "speecht5_tts", root / "speecht5_hifigan"
    model_dir.mkdir(parents=True, exist_ok=True)
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(SENTENCES * 4))
    prefix = root / "spm_char"
    spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(prefix), model_type="char",
                                   character_coverage=1.0, bos_id=0, pad_id=1, eos_id=2, unk_id=3,
                                   minloglevel=2)
    tokenizer = SpeechT5Tokenizer(vocab_file=str(prefix) + ".model")
    processor = SpeechT5Processor(feature_extractor=SpeechT5FeatureExtractor(), tokenizer=tokenizer)
    processor.save_pretrained(model_dir)

    torch.manual_seed(0)
    config = SpeechT5Config(
        vocab_size=len(tokenizer), hidden_size=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, speech_decoder_prenet_units=32,
        speech_decoder_postnet_units=32, speech_decoder_postnet_layers=2, num_mel_bins=80,
        speaker_embedding_dim=SPEAKER_DIM, conv_dim=[8, 8], conv_stride=[5, 2], conv_kernel=[10, 3],
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, max_speech_positions=1000,
    )
    model = SpeechT5ForTextToSpeech(config).eval()
    # A random stop-token head never fires; bias it so decoding stops after a few frames like a trained one.
    with torch.no_grad():
        model.speech_decoder_postnet.prob_out.weight.normal_(0.0, 0.3)
        model.speech_decoder_postnet.prob_out.bias.fill_(-3.0)
    model.save_pretrained(model_dir)

    vocoder = SpeechT5HifiGan(SpeechT5HifiGanConfig(
        upsample_initial_channel=16, upsample_rates=[4, 4, 4, 4], upsample_kernel_sizes=[8, 8, 8, 8],
        resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1]])).eval()
    vocoder.save_pretrained(vocoder_dir)
    return model_dir, vocoder_dir


def build_speaker_encoder(root: Path) -> Path:
    """Write a tiny WavLM x-vector speaker encoder (+ feature extractor) emitting SPEAKER_DIM-d embeddings."""
    import torch
    from transformers import Wav2Vec2FeatureExtractor, WavLMConfig, WavLMForXVector

    folder = root / "wavlm_sv"
    torch.manual_seed(0)
    config = WavLMConfig(
        hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32, conv_dim=[8, 8, 8],
        conv_stride=[5, 8, 8], conv_kernel=[10, 8, 8], num_conv_pos_embeddings=8, num_conv_pos_embedding_groups=2,
        tdnn_dim=[16, 16], tdnn_kernel=[3, 1], tdnn_dilation=[1, 1], xvector_output_dim=SPEAKER_DIM,
        num_buckets=16, max_bucket_distance=32,
    )
    WavLMForXVector(config).eval().save_pretrained(folder)  # 320-sample hop like the real encoders: 30 s = 1500 frames
    Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, do_normalize=True,
                             return_attention_mask=True).save_pretrained(folder)
    return folder


def build_mms(root: Path, name: str = "mms_tts", language: str = "eng", is_uroman: bool = False) -> Path:
    """Write a tiny VITS (MMS-TTS layout: config, weights, vocab.json, tokenizer_config.json).

    Its alphabet is the Latin letters of SENTENCES; with `is_uroman` the tokenizer is flagged like those of MMS models
    for non-Latin scripts (facebook/mms-tts-rus, -ell...), whose input must be romanised first.
    """
    import torch
    from transformers import VitsConfig, VitsModel, VitsTokenizer

    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    chars = sorted(set("".join(SENTENCES).lower()) - {"\n"})
    vocab = {"<pad>": 0, "<unk>": 1}  # add_blank interleaves the pad token, so it must be in the vocabulary
    for char in chars:
        vocab.setdefault(char, len(vocab))
    (root / f"{name}_vocab.json").write_text(json.dumps(vocab))
    tokenizer = VitsTokenizer(vocab_file=str(root / f"{name}_vocab.json"), add_blank=True, normalize=True,
                              language=language, phonemize=False, is_uroman=is_uroman)
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    config = VitsConfig(
        vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2, ffn_dim=32,
        flow_size=8, spectrogram_bins=17, upsample_initial_channel=16, upsample_rates=[8, 8, 2, 2],
        upsample_kernel_sizes=[16, 16, 4, 4], resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1]],
        duration_predictor_filter_channels=16, prior_encoder_num_flows=1, prior_encoder_num_wavenet_layers=1,
        posterior_encoder_num_wavenet_layers=1, duration_predictor_num_flows=1, depth_separable_num_layers=1,
        sampling_rate=16000,
    )
    VitsModel(config).eval().save_pretrained(folder)
    return folder


BARK_PRESETS = ("v2/en_speaker_6", "v2/de_speaker_1")


class GPTShape(TypedDict):
    """The keyword arguments of a Bark sub-model config that size its GPT (typed, so the configs check them)."""

    block_size: int
    num_layers: int
    num_heads: int
    hidden_size: int


BARK_SMALL = GPTShape(block_size=1024, num_layers=12, num_heads=12, hidden_size=768)
"""The GPT shape of suno/bark-small's three models (its codec is EnCodec 24 kHz, EncodecConfig's defaults)."""
BARK_TINY = GPTShape(block_size=1024, num_layers=1, num_heads=2, hidden_size=16)


def build_bark(root: Path, name: str = "bark", full_size: bool = False) -> Path:
    """Write a tiny Bark (semantic, coarse, fine GPTs + a tiny EnCodec) in the suno/bark-small layout.

    The token constants of Bark's generation config (text offset 10048, 10000 semantic tokens, 1024-entry codebooks,
    8 codebooks) are kept, so the tiny model runs exactly the real generation code; only the widths are tiny. The
    tokenizer is a BERT WordPiece tokenizer like bark's, with a vocabulary of this module's words and characters.
    Voice presets (speaker_embeddings_path.json + .npy prompts) are written by BarkProcessor.save_pretrained.

    With `full_size` the models have bark-small's architecture with random weights (speed benchmarks on a GPU):
    nothing is biased, so every sentence runs to its token cap (set by the requested duration).
    """
    import numpy as np
    import torch
    from transformers import (BarkCoarseConfig, BarkConfig, BarkFineConfig, BarkModel, BarkProcessor,
                              BarkSemanticConfig, BertTokenizer, EncodecConfig)

    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    words = sorted({w.strip(".,;!?").lower() for w in " ".join(SENTENCES).split()} - {""})
    chars = sorted(set("".join(SENTENCES).lower()) - {" ", "\n"})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars, *(f"##{c}" for c in chars), *words]
    vocab_file = root / f"{name}_vocab.txt"
    vocab_file.write_text("\n".join(dict.fromkeys(vocab)) + "\n")
    tokenizer = BertTokenizer(vocab_file=str(vocab_file), do_lower_case=True)

    rng = np.random.default_rng(0)
    staging = root / f"{name}_presets"
    # speaker_embeddings_path.json's layout: where the arrays are, then each preset's array files under it.
    presets: dict[str, str | dict[str, str]] = {"repo_or_path": str(staging)}
    for preset in BARK_PRESETS:
        paths = {}
        for key, array in (("semantic_prompt", rng.integers(0, 10_000, 40)),
                           ("coarse_prompt", rng.integers(0, 1024, (2, 60))),
                           ("fine_prompt", rng.integers(0, 1024, (8, 60)))):
            relative = f"{preset}_{key}.npy"
            (staging / relative).parent.mkdir(parents=True, exist_ok=True)
            np.save(staging / relative, array.astype(np.int64))
            paths[key] = relative
        presets[preset] = paths
    BarkProcessor(tokenizer=tokenizer, speaker_embeddings=presets).save_pretrained(str(folder))

    torch.manual_seed(0)
    shape = BARK_SMALL if full_size else BARK_TINY
    config = BarkConfig(
        semantic_config=BarkSemanticConfig(input_vocab_size=129_600, output_vocab_size=10_048, **shape).to_dict(),
        coarse_acoustics_config=BarkCoarseConfig(input_vocab_size=12_096, output_vocab_size=12_096,
                                                 **shape).to_dict(),
        fine_acoustics_config=BarkFineConfig(input_vocab_size=1056, output_vocab_size=1056, n_codes_total=8,
                                             n_codes_given=1, **shape).to_dict(),
        codec_config=(EncodecConfig() if full_size else EncodecConfig(
            hidden_size=16, num_filters=4, num_lstm_layers=1, codebook_size=1024)).to_dict(),
    )
    model = BarkModel(config).eval()
    if not full_size:
        _make_tiny_bark_plausible(model)
    model.generation_config = _bark_generation_config()
    model.save_pretrained(folder)
    return folder


def _make_tiny_bark_plausible(model) -> None:
    import torch

    # A random semantic model almost never ends a sentence. Pin its final hidden state near one direction and point
    # the end token's (10000) output row at it, so that at temperature 0.7 a sentence ends after a few dozen tokens
    # (half a second of "speech") like a trained model's would, keeping tests fast; other tokens still vary.
    with torch.no_grad():
        direction = torch.nn.functional.normalize(torch.randn(16), dim=0)
        model.semantic.layernorm_final.weight.fill_(0.1)
        model.semantic.layernorm_final.bias.copy_(direction)
        model.semantic.lm_head.weight.normal_(0.0, 0.3)
        model.semantic.lm_head.weight[10_000] = 3.5 * direction
        # Near-uniform acoustic predictions would make every voice preset sample the same codes from the same seed;
        # wide output heads make the codes depend on their context, as a trained model's do.
        model.coarse_acoustics.lm_head.weight.normal_(0.0, 1.0)
        for head in model.fine_acoustics.lm_heads:
            head.weight.normal_(0.0, 1.0)
        # EnCodec's codebooks start as zeros (a trained codec learns them): without this every code sounds the same.
        for layer in model.codec_model.quantizer.layers:
            layer.codebook.embed.normal_(0.0, 1.0)


def _bark_generation_config():
    """generation_config.json as on the hub: a plain GenerationConfig holding the three sub-configs as dicts
    (BarkGenerationConfig itself cannot be saved by this transformers version)."""
    from transformers import GenerationConfig
    from transformers.models.bark.generation_configuration_bark import (
        BarkCoarseGenerationConfig, BarkFineGenerationConfig, BarkSemanticGenerationConfig)

    return GenerationConfig(
        semantic_config=BarkSemanticGenerationConfig(do_sample=True, temperature=0.7).to_dict(),
        coarse_acoustics_config=BarkCoarseGenerationConfig(do_sample=True, temperature=0.7).to_dict(),
        fine_acoustics_config=BarkFineGenerationConfig(temperature=0.5).to_dict(),
        sample_rate=24_000, codebook_size=1024)


def build_whisper(root: Path) -> Path:
    """Write a tiny multilingual-style Whisper (processor + model + generation config) whose vocabulary is the
    lower-case letters, with and without a leading space, so that its transcripts are (random) words."""
    import torch
    from transformers import (GenerationConfig, WhisperConfig, WhisperFeatureExtractor,
                              WhisperForConditionalGeneration, WhisperProcessor, WhisperTokenizer)

    folder = root / "whisper"
    folder.mkdir(parents=True, exist_ok=True)
    vocab = {"Ġ": 0}
    for letter in "abcdefghijklmnopqrstuvwxyz":
        vocab[letter], vocab["Ġ" + letter] = len(vocab), len(vocab) + 1
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    end = "<|endoftext|>"
    tokenizer = WhisperTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), unk_token=end,
                                 bos_token=end, eos_token=end, pad_token=end)
    tasks = ["<|startoftranscript|>", "<|en|>", "<|transcribe|>", "<|translate|>", "<|notimestamps|>"]
    tokenizer.add_special_tokens({"additional_special_tokens": tasks})
    ids: dict[str, int] = {}
    for token in [end, *tasks]:
        token_id = tokenizer.convert_tokens_to_ids(token)
        assert isinstance(token_id, int)  # one token in, one id out (a list only for a list of tokens)
        ids[token] = token_id
    WhisperProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=80), tokenizer=tokenizer
                     ).save_pretrained(folder)
    torch.manual_seed(0)
    model = WhisperForConditionalGeneration(WhisperConfig(
        vocab_size=len(tokenizer), num_mel_bins=80, d_model=16, encoder_layers=1, decoder_layers=1,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32, decoder_ffn_dim=32,
        max_source_positions=1500, max_target_positions=64, decoder_start_token_id=ids["<|startoftranscript|>"],
        eos_token_id=ids[end], pad_token_id=ids[end], bos_token_id=ids[end])).eval()
    model.generation_config = GenerationConfig(
        decoder_start_token_id=ids["<|startoftranscript|>"], eos_token_id=ids[end], pad_token_id=ids[end],
        no_timestamps_token_id=ids["<|notimestamps|>"], lang_to_id={"<|en|>": ids["<|en|>"]},
        task_to_id={"transcribe": ids["<|transcribe|>"], "translate": ids["<|translate|>"]}, is_multilingual=True,
        max_length=64, begin_suppress_tokens=[], suppress_tokens=[ids[t] for t in tasks])
    model.save_pretrained(folder)
    return folder
