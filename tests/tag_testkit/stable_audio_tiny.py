"""Random-weight Stable Audio pipelines written in the exact hub layout (`save_pretrained`: model_index.json plus
one folder per component), at a tiny size for the tests or at the published size for the speed benchmark.

Nothing is downloaded: the tokenizer is a word-level `tokenizers` model built here and wrapped in the tokenizer
class the real repository uses (GemmaTokenizer for Stable Audio 3, T5Tokenizer for Stable Audio Open; since
transformers 5 their *TokenizerFast names are aliases of these), so `from_pretrained` reads exactly the files it
reads from the hub. Shapes of the full-size configurations follow the released models where diffusers documents
them (SA3 medium: the StableAudio3DiTModel defaults and SAME-L; SAO: the StableAudioDiTModel / AutoencoderOobleck
defaults and T5-base). The published counts are the DiT's: the StableAudio3DiTModel defaults have 1453 M
parameters (medium: "1.4B"); SA3 small's DiT is sized to its published 433 M (width 1024, 16 blocks: 437 M); its
exact layer shapes are not public here.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

WORDS = ("a dog barks rain on the roof piano melody soft loud bird sings of and in with wind thunder "
         "footsteps door engine car water drums guitar bass birds").split()
SPECIALS = ("<pad>", "<eos>", "<bos>", "<unk>")

SA3_SIZES: dict[str, dict[str, Any]] = {
    # max_seconds is the duration embedder's clamp (seconds_total upper bound): what a variant can make.
    "tiny": dict(max_seconds=6.0, text=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                            num_attention_heads=2, num_key_value_heads=1, head_dim=16),
                 vae=dict(patch_size=256, encoder_channels=8, encoder_c_mults=(2,), encoder_strides=(4,),
                          encoder_transformer_depths=(1,), latent_dim=8, dim_heads=8),
                 dit=dict(embed_dim=32, depth=2, num_heads=2, timestep_features_dim=16, num_memory_tokens=4),
                 fourier_dim=16, max_tokens=32),
    "small": dict(max_seconds=120.0, text="t5gemma-b", vae={},
                  dit=dict(embed_dim=1024, depth=16, num_heads=16), fourier_dim=256, max_tokens=256),
    "medium": dict(max_seconds=384.0, text="t5gemma-b",
                   vae=dict(encoder_channels=256, encoder_transformer_depths=(12,)),  # SAME-L
                   dit={}, fourier_dim=256, max_tokens=256),
}
T5GEMMA_B = dict(hidden_size=768, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=12,
                 num_key_value_heads=12, head_dim=64)

SAO_SIZES: dict[str, dict[str, Any]] = {
    "tiny": dict(text=dict(d_model=32, d_ff=64, num_layers=2, num_heads=2, d_kv=16),
                 vae=dict(encoder_hidden_size=4, downsampling_ratios=[8, 8, 8], channel_multiples=[1, 2, 2],
                          decoder_channels=4, decoder_input_channels=8),
                 dit=dict(sample_size=344, in_channels=8, num_layers=2, attention_head_dim=8, num_attention_heads=2,
                          num_key_value_attention_heads=1, out_channels=8, cross_attention_dim=16,
                          time_proj_dim=8, global_states_input_dim=16, cross_attention_input_dim=8),
                 conditioning_dim=8, max_tokens=32),
    "full": dict(text=dict(d_model=768, d_ff=3072, num_layers=12, num_heads=12, d_kv=64, vocab_size=32128),
                 vae={}, dit={}, conditioning_dim=768, max_tokens=128),
}


def _gemma_tokenizer(max_tokens: int) -> Any:
    """A word-level Gemma tokenizer over WORDS (lower-cased; unknown words -> <unk>)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import GemmaTokenizer

    vocab = {word: index for index, word in enumerate(SPECIALS + tuple(WORDS))}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A <eos>",
                                                       special_tokens=[("<bos>", 2), ("<eos>", 1)])
    return GemmaTokenizer(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>",
                          unk_token="<unk>", model_max_length=max_tokens)


def _t5_tokenizer(max_tokens: int) -> Any:
    """A T5 (unigram) tokenizer whose pieces are "▁word" for WORDS; anything else becomes <unk>."""
    from transformers import T5Tokenizer

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)] + [("▁" + w, -1.0) for w in WORDS]
    return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=max_tokens)


def _perturb(*modules: Any) -> None:
    """Add noise to every parameter: diffusers zero-initialises some output layers, which would make a random
    model ignore its input (every seed the same clip) and the tests' equalities vacuous."""
    import torch

    with torch.no_grad():
        for module in modules:
            for parameter in module.parameters():
                parameter.add_(torch.randn_like(parameter) * 0.05)


def write_sa3(folder: Path, size: str = "tiny", *, seed: int = 0, distilled: bool = True,
              max_seconds: float | None = None) -> Path:
    """A StableAudio3Pipeline folder; `distilled` picks the shipped ping-pong scheduler (8 steps) or Euler (100)."""
    import torch
    # From the defining modules: type checkers resolve diffusers' lazy exports to its dummy placeholder classes.
    from diffusers.models.autoencoders.autoencoder_same import AutoencoderSAME
    from diffusers.models.transformers.transformer_stable_audio3 import StableAudio3DiTModel
    from diffusers.pipelines.stable_audio_3.modeling_stable_audio_3 import StableAudio3DurationEmbedder
    from diffusers.pipelines.stable_audio_3.pipeline_stable_audio_3 import StableAudio3Pipeline
    from diffusers.schedulers.scheduling_flow_match_euler_discrete import FlowMatchEulerDiscreteScheduler
    from transformers import T5GemmaConfig, T5GemmaEncoderModel
    from transformers.models.t5gemma.configuration_t5gemma import T5GemmaModuleConfig

    spec = SA3_SIZES[size]
    torch.manual_seed(seed)
    tokenizer = _gemma_tokenizer(spec["max_tokens"])
    text = T5GEMMA_B if spec["text"] == "t5gemma-b" else spec["text"]
    vocab = len(tokenizer) if size == "tiny" else 256000
    module = T5GemmaModuleConfig(vocab_size=vocab, query_pre_attn_scalar=text["head_dim"], sliding_window=4096,
                                 **text).to_dict()
    text_encoder = T5GemmaEncoderModel(T5GemmaConfig(encoder=module, decoder=module, vocab_size=vocab,
                                                     is_encoder_decoder=False)).eval()
    width = text["hidden_size"]
    vae = AutoencoderSAME(audio_channels=2, sampling_rate=44100, **spec["vae"])
    dit = StableAudio3DiTModel(io_channels=vae.config.latent_dim, cond_token_dim=width, global_cond_dim=width,
                               local_add_cond_dim=vae.config.latent_dim + 1, **spec["dit"])
    embedder = StableAudio3DurationEmbedder(output_dim=width, fourier_dim=spec["fourier_dim"],
                                            max_val=max_seconds or spec["max_seconds"])
    if size == "tiny":
        _perturb(vae, dit, embedder)
    scheduler = FlowMatchEulerDiscreteScheduler(stochastic_sampling=distilled)
    pipe = StableAudio3Pipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, duration_embedder=embedder,
                                transformer=dit, scheduler=scheduler)
    pipe.save_pretrained(str(folder))
    return Path(folder)


def write_sao(folder: Path, size: str = "tiny", *, seed: int = 0) -> Path:
    """A StableAudioPipeline folder (Stable Audio Open 1.0 layout, shipped CosineDPMSolverMultistepScheduler)."""
    import torch
    # From the defining modules, as in write_sa3.
    from diffusers.models.autoencoders.autoencoder_oobleck import AutoencoderOobleck
    from diffusers.models.transformers.stable_audio_transformer import StableAudioDiTModel
    from diffusers.pipelines.stable_audio.modeling_stable_audio import StableAudioProjectionModel
    from diffusers.pipelines.stable_audio.pipeline_stable_audio import StableAudioPipeline
    from diffusers.schedulers.scheduling_cosine_dpmsolver_multistep import CosineDPMSolverMultistepScheduler
    from transformers import T5Config, T5EncoderModel

    spec = SAO_SIZES[size]
    torch.manual_seed(seed)
    tokenizer = _t5_tokenizer(spec["max_tokens"])
    text = dict(spec["text"])
    text.setdefault("vocab_size", len(tokenizer))
    # decoder_start_token_id, as T5's released config.json has it, is no field: PreTrainedConfig's **kwargs takes it.
    config = T5Config(**text, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)  # type: ignore[call-arg]
    text_encoder = T5EncoderModel(config).eval()
    vae = AutoencoderOobleck(audio_channels=2, sampling_rate=44100, **spec["vae"])
    dit = StableAudioDiTModel(**spec["dit"])
    projection = StableAudioProjectionModel(text_encoder_dim=text["d_model"], conditioning_dim=spec["conditioning_dim"],
                                            min_value=0, max_value=512)
    if size == "tiny":
        _perturb(vae, dit, projection)
    scheduler = CosineDPMSolverMultistepScheduler(sigma_min=0.3, sigma_max=500, solver_order=2,
                                                  prediction_type="v_prediction", sigma_data=1.0,
                                                  sigma_schedule="exponential")
    pipe = StableAudioPipeline(vae=vae, text_encoder=text_encoder, projection_model=projection, tokenizer=tokenizer,
                               transformer=dit, scheduler=scheduler)
    pipe.save_pretrained(str(folder))
    return Path(folder)
