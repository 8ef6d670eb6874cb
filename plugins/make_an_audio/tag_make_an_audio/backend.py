"""The `make_an_audio` backend: Make-An-Audio v1 (Huang et al., ICML 2023) served through tagcore.

Seeds follow the official script: `torch.manual_seed(seed)` then `torch.randn(n, 4, 10, W)` on the CPU, so a
clip made here with the official weights equals the official code's clip for the same seed. In a batch, each
item's noise is drawn right after seeding with that item's seed, so batching never changes a result.
"""
from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from tagcore import Audio, Backend, Capabilities, GenerationItem, GenerationResult, Option, WeightsStatus
from tagcore.backend import ProgressCallback
from tagcore.devices import free_memory, quiet_model_loading, resolve_device, resolve_dtype
from tagcore.errors import InvalidRequest
from tagcore.options import device_option, dtype_option, weights_option

from . import checkpoint as ckpt
from .compiled import SCOPES

if TYPE_CHECKING:
    from .graphs import GraphSampler
    from .model import MakeAnAudio
    from .stages import Stages

log = logging.getLogger(__name__)

DIFFUSION_SHARE = 0.9  # fraction of the progress bar given to the sampling steps
PRESETS = {"quality": ("ddim", 100), "fast": ("dpmpp", 25)}  # (sampler, steps): the official default, and speed


def sampling(options: Mapping[str, Any]) -> tuple[str, int]:
    """(sampler, steps) of a request: each from the request when given, else from its preset."""
    sampler, steps = PRESETS[options["preset"]]
    return (sampler if options["sampler"] == "auto" else options["sampler"],
            steps if options["steps"] is None else options["steps"])


def parse_warmup(text: str) -> list[tuple[float, int]]:
    """The `warmup` option: "SECONDS:BATCH, ..." -> [(seconds, batch)]; a bare SECONDS means batch 1."""
    shapes = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        seconds, _, batch = part.partition(":")
        try:
            shapes.append((float(seconds), int(batch or 1)))
        except ValueError:
            raise InvalidRequest(f"option warmup: {part!r} is not SECONDS or SECONDS:BATCH") from None
        if not (MakeAnAudioBackend.min_duration <= shapes[-1][0] <= MakeAnAudioBackend.max_duration
                and shapes[-1][1] >= 1):
            raise InvalidRequest(f"option warmup: {part!r} is out of range")
    return shapes


class MakeAnAudioBackend(Backend):
    name = "make_an_audio"
    aliases = ("maa", "make-an-audio")
    description = "Make-An-Audio v1: latent diffusion on mel spectrograms + BigVGAN, 16 kHz (ICML 2023)."
    sample_rate = 16000
    native_max_duration = 10.0
    max_duration = 30.0
    min_duration = 1.0
    capabilities = Capabilities(seed=True, batch=True, candidates=True)
    options = (
        Option("preset", "choice", "quality", "quality: DDIM 100 steps (the official default); fast: DPM++ 25 "
               "steps (about 4x faster); steps / sampler given explicitly override it",
               choices=tuple(PRESETS)),
        Option("steps", "int", None, "sampling steps (default: the preset's)", minimum=1, maximum=1000),
        Option("guidance", "float", 3.0, "classifier-free guidance scale (1 = off)", minimum=0.0, maximum=30.0),
        Option("sampler", "choice", "auto", "ddim (official) or dpmpp (DPM-Solver++ 2M, fewer steps); auto: the "
               "preset's", choices=("auto", "ddim", "dpmpp")),
        weights_option("folder in the official useful_ckpts layout: maa1_full.ckpt, bigvgan/, "
                       "bert-base-uncased/vocab.txt (or env TAG_MAKE_AN_AUDIO_WEIGHTS)"),
        device_option(),
        dtype_option(),
        Option("compile", "bool", False, "torch.compile the UNet (slow first request, faster after)",
               scope="worker"),
        Option("compile_scope", "choice", "unet", "with compile: unet (one graph) or blocks (each ResNet and "
               "transformer block: a shorter warm-up, and new clip lengths mostly reuse the kernels)",
               choices=SCOPES, scope="worker"),
        Option("cuda_graphs", "bool", True, "on CUDA, replay the sampling loop as CUDA graphs (captured once per "
               "batch size, length, sampler and steps)", scope="worker"),
        Option("warmup", "str", "", "capture the CUDA graphs of both presets at start for these clips: "
               "SECONDS:BATCH list, e.g. 10:1,10:8", scope="worker"),
    )

    def __init__(self, settings: Mapping[str, Any] | None = None) -> None:
        super().__init__(settings)
        self.model: MakeAnAudio | None = None
        self.graphs: GraphSampler | None = None
        """The CUDA graphs (CUDA with cuda_graphs on), else None."""
        self.stages: Stages | None = None
        """How requests run the pipeline: the graphs, or the model's eager stages; chosen at load."""
        self.checkpoint_name = ckpt.LDM_FILE
        self.warmup_shapes = parse_warmup(self.settings["warmup"])

    @classmethod
    def weights_status(cls, settings: Mapping[str, Any]) -> WeightsStatus:
        folder = ckpt.weights_folder(settings, os.environ)
        if folder is None:
            return WeightsStatus(False, "not configured", "set -O weights=DIR or TAG_MAKE_AN_AUDIO_WEIGHTS")
        missing = ckpt.Layout(folder).missing()
        return WeightsStatus(not missing, str(folder), f"missing: {', '.join(missing)}" if missing else "")

    @property
    def model_id(self) -> str:
        return f"{self.name}:{self.checkpoint_name.rsplit('.', 1)[0]}"

    def load(self) -> None:
        from . import model as maa

        folder = ckpt.weights_folder(self.settings, os.environ)
        if folder is None:
            raise ckpt.no_folder_error()
        device = resolve_device(self.settings["device"])
        dtype = resolve_dtype(self.settings["dtype"], device)
        with quiet_model_loading():  # diffusers imports xformers
            model = self.model = maa.load(folder, device, dtype)
        log.info("make_an_audio: loaded on %s in %s; BigVGAN activations: %s", device, str(dtype).replace("torch.", ""),
                 model.vocoder_activations)
        if self.settings["compile"]:
            from .compiled import compile_unet

            model.unet = compile_unet(model.unet, self.settings["compile_scope"])
        if device.type == "cuda" and self.settings["cuda_graphs"]:
            from .graphs import GraphSampler

            self.graphs = GraphSampler(model)
            self.stages = self.graphs
            self.warm_up(self.warmup_shapes)
        else:
            from .stages import EagerStages

            self.stages = EagerStages(model)

    def warm_up(self, shapes: Sequence[tuple[float, int]]) -> float:
        """Capture the CUDA graphs of these (seconds, batch) shapes for both presets (guided) and of the stages
        around the loop; returns the seconds spent (none without graphs: on the CPU, or with cuda_graphs off)."""
        from .model import latent_width

        if self.graphs is None:
            return 0.0
        spent = 0.0
        for seconds, batch in shapes:
            for sampler, steps in PRESETS.values():
                spent += self.graphs.capture(self.graphs.key(batch, latent_width(seconds), sampler, steps, 3.0))
            spent += self.graphs.capture_stages(batch, latent_width(seconds))
        if shapes:
            log.info("make_an_audio: CUDA graphs for %s captured in %.1f s",
                     ", ".join(f"{seconds:g} s x {batch}" for seconds, batch in shapes), spent)
        return spent

    def unload(self) -> None:
        self.model = self.graphs = self.stages = None
        free_memory()
        super().unload()

    def generate_batch(
        self,
        items: Sequence[GenerationItem],
        duration: float,
        *,
        options: Mapping[str, Any],
        progress: ProgressCallback | None = None,
    ) -> list[GenerationResult]:
        import torch

        from .model import latent_width

        self.ensure_loaded()
        model, stages = self._loaded()
        report = progress or (lambda fraction, stage: None)
        width = latent_width(duration)
        timings: dict[str, float] = {}

        noise = torch.cat([self._noise(item, width) for item in items])
        clock = _Clock(model.device)
        prompts = [item.prompt for item in items]
        unique = list(dict.fromkeys(prompts))
        encoded = stages.encode_text(unique + [""])
        rows = torch.tensor([unique.index(item.prompt) for item in items for _ in range(item.candidates)],
                            device=model.device)
        c = encoded[rows]
        uc = encoded[-1:].expand_as(c)
        timings["text_s"] = clock.lap()

        def on_step(i: int, n: int, x: torch.Tensor, pred_x0: torch.Tensor | None) -> None:
            report(DIFFUSION_SHARE * (i + 1) / n, "generating")

        sampler, steps = sampling(options)
        z, capture_s = stages.sample(noise, c, uc, steps=steps, guidance=options["guidance"], sampler=sampler,
                                     hook=on_step)
        if capture_s:
            timings["graph_capture_s"] = round(capture_s, 4)
        timings["diffusion_s"] = clock.lap()
        report(DIFFUSION_SHARE, "decoding")
        mel = stages.decode(z)
        timings["vae_s"] = clock.lap()
        report(0.95, "vocoding")
        wav = stages.vocode(mel).cpu().numpy()
        timings["vocoder_s"] = clock.lap()
        report(1.0, "done")

        frames = self.frames_for(duration)
        results, start = [], 0
        for item in items:
            clips = [Audio(wav[start + k, :frames], self.sample_rate) for k in range(item.candidates)]
            start += item.candidates
            results.append(GenerationResult(
                candidates=clips, seed=item.seed, backend=self.name, model_id=self.model_id,
                timings=dict(timings),
                metadata={"preset": options["preset"], "steps": steps, "guidance": options["guidance"],
                          "sampler": sampler, "cuda_graphs": self.graphs is not None,
                          "latent_width": width, "batch_size": int(noise.shape[0]),
                          "dtype": str(model.dtype).replace("torch.", ""), "device": str(model.device),
                          "vocoder_activations": model.vocoder_activations},
            ))
        return results

    def _loaded(self) -> tuple[MakeAnAudio, Stages]:
        if self.model is None or self.stages is None:
            raise RuntimeError("make_an_audio: load() the model first")
        return self.model, self.stages

    def _noise(self, item: GenerationItem, width: int) -> Any:
        """The item's start noise: seed the global generator, then draw on the CPU (the official rule)."""
        import torch

        torch.manual_seed(item.seed)
        return torch.randn(self._loaded()[0].latent_shape(item.candidates, width))


class _Clock:
    """Wall-clock laps that wait for queued GPU work, so stage timings are real."""

    def __init__(self, device: Any) -> None:
        self.device = device
        self.last = time.perf_counter()

    def lap(self) -> float:
        import torch

        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        now = time.perf_counter()
        elapsed, self.last = now - self.last, now
        return round(elapsed, 4)
