"""Everything the bot says, in one place (plain text: user prompts are never parsed as markup)."""
from __future__ import annotations

from tagcore.messages import ProgressEvent

from .chat_options import DEFAULT, OPERATOR, PINNED, YOURS, Setting

COMMANDS = (
    ("start", "How to use this bot"),
    ("help", "How to use this bot"),
    ("backend", "Choose the sound generator"),
    ("song", "A song with lyrics: /song and its description, the lyrics on the lines below"),
    ("settings", "Choose the generator's settings, such as speed or quality"),
    ("cancel", "Forget the prompt you are composing, or stop the sound being made"),
)
CAPTION_LIMIT = 1024


def sentence(message: str) -> str:
    """A tagcore error message as a sentence: capitalised, ending with a full stop."""
    message = message.strip()
    if not message:
        return message
    return message[0].upper() + message[1:] + ("" if message[-1] in ".!?" else ".")


def seconds(value: float) -> str:
    return f"{round(value, 1):g} s"


def help_text(backend: str, min_duration: float, max_duration: float, audio_roles: set[str],
              singers: list[str]) -> str:
    """`audio_roles`: what the installed generators do with a sent audio file ("continuation", "voice");
    `singers`: the offered generators that take lyrics."""
    lines = [
        "🔊 I turn a text description into a sound.",
        "",
        "Send me a description, for example: rain on a tin roof, distant thunder.",
        f"Then pick a duration ({seconds(min_duration)} to {seconds(max_duration)}) and wait for the audio.",
        "",
        f"Current generator: {backend} (change it with /backend; its settings, such as speed, with /settings).",
    ]
    if "continuation" in audio_roles:
        lines.append("You can also send a voice message or an audio file, and I will continue it "
                     "(add a caption to describe how).")
    if "voice" in audio_roles:
        lines.append("With a speech generator, send a voice message with the text to say as its caption, "
                     "and I will say it in that voice.")
    if singers:
        lines += ["", f"🎤 Songs with lyrics ({', '.join(singers)}): send /song and the song's description on the "
                  "first line, the lyrics on the lines below, for example:",
                  SONG_EXAMPLE,
                  "With a generator that sings chosen, a prompt's second paragraph (after an empty line) is its "
                  "lyrics. Without lyrics the song is instrumental.", ""]
    lines.append("/cancel forgets the prompt you are composing, or stops the sound being made.")
    return "\n".join(lines)


def ask_duration(prompt: str) -> str:
    shown = prompt if len(prompt) <= 200 else prompt[:197] + "…"
    return f"How long should “{shown}” be?" if shown else "How long should the continuation be?"


def chosen(prompt: str, duration: float) -> str:
    shown = prompt if len(prompt) <= 200 else prompt[:197] + "…"
    return f"🎚 “{shown}”, {seconds(duration)}" if shown else f"🎚 Continuation, {seconds(duration)}"


def ask_custom(minimum: float, maximum: float) -> str:
    return f"Send the duration in seconds, a number from {minimum:g} to {maximum:g}."


def bad_number(text: str, minimum: float, maximum: float) -> str:
    shown = text if len(text) <= 30 else text[:27] + "…"
    return f"“{shown}” is not a number of seconds. Send a number from {minimum:g} to {maximum:g}, or /cancel."


def out_of_range(value: float, minimum: float, maximum: float) -> str:
    return f"{value:g} s is out of range: choose from {minimum:g} to {maximum:g} seconds, or /cancel."


SONG_EXAMPLE = "/song a cheerful folk song about our cat\n[verse]\nShe sleeps all day in the sun\n[chorus]\nOh, our cat"
SONG_USAGE = ("Tell me what the song should be like on the first line, and the lyrics on the lines below, "
              "for example:\n" + SONG_EXAMPLE)
NO_SINGER = ("None of the generators of this bot sings lyrics, so I cannot make a song with words. "
             "Send a description for instrumental music instead, or see /backend.")
BUSY = "⏳ Your previous sound is still being made. Please wait for it before asking for another one."
EMPTY = "Please describe the sound you want, for example: birds singing at dawn."
VOICE_NEEDS_TEXT = "I will speak in the voice of that recording: send it again with the text to say as its caption."
NOT_ALLOWED = "Sorry, this bot is private. Ask its owner to add your user id: {user_id}."
UNKNOWN_COMMAND = "I don't know that command. Try /help."
EXPIRED = "This button has expired. Send your prompt again."
CANCELLED = "Okay, forgotten. Send a new description whenever you like."
NOTHING_TO_CANCEL = "There is nothing to cancel."
STOPPING = "🛑 Stopping your sound…"
STOPPED = "🛑 Cancelled “{prompt}”. Send a new description whenever you like."
CANCEL_FAILED = "😕 I could not cancel it right now: {error}"
UNSUPPORTED = ("I can only work with text descriptions, voice messages and audio files. "
               "Send me a description of a sound, for example: a cat purring.")
SUBMIT_FAILED = "😕 I could not queue your request right now: {error}. Please try again in a moment."
TIMED_OUT = "⌛ Your sound “{prompt}” took too long and was given up. Please try again."
FAILED = "😕 Sorry, I could not make “{prompt}”: {error}"
INTERNAL = "😕 Something went wrong on my side. Please try again."
QUEUED = "⏳ Queued"
NO_WORKER_LABEL = " (no worker right now: requests wait)"
UNREADABLE = "😕 I could not read that audio file. Send a voice message, or a WAV, OGG/Opus, FLAC or MP3 file."
DOWNLOAD_FAILED = "😕 I could not download that file: {error}"
CHOOSE_BACKEND = "Choose the sound generator (current: {current}):"
BACKEND_SET = "Generator set to {backend}."
NO_BACKENDS = "No sound generator is installed on this bot."
UNKNOWN_BACKEND = "That generator is not available any more."


def rate_limited(wait_s: float, limit: int, window_s: float) -> str:
    return (f"🚦 You have used your {limit} sounds for now. "
            f"Please try again in {max(1, round(wait_s / 60))} min." if wait_s >= 90 else
            f"🚦 You have used your {limit} sounds for now. Please try again in {max(1, round(wait_s))} s.")


def too_big(size: int, limit: int) -> str:
    return f"That file is {size / 2**20:.1f} MB; I can only read files up to {limit / 2**20:g} MB."


def no_audio_prompt(backend: str, capable: list[str]) -> str:
    if capable:
        return (f"{backend} does not take audio. Choose one that does with /backend "
                f"({', '.join(capable)}), or send a text description.")
    return "None of the installed generators takes audio; send a text description instead."


def progress(event: ProgressEvent) -> str:
    if event.stage == "queued":
        return f"⏳ Queued, position {event.position}" if event.position else QUEUED
    if event.stage == "generating":
        return f"🎛 Generating… {round(event.fraction * 100)}%"
    if event.stage == "loading":
        return "⚙️ Loading the model…"
    if event.stage == "encoding":
        return "📦 Almost done…"
    return f"⏳ {event.stage.capitalize()}…" + (f" {round(event.fraction * 100)}%" if event.fraction else "")


def caption(prompt: str, duration: float, backend: str, seed: int | None) -> str:
    details = f"⏱ {seconds(duration)} · 🎛 {backend}" + (f" · 🌱 seed {seed}" if seed is not None else "")
    room = CAPTION_LIMIT - len(details) - 4
    shown = prompt if len(prompt) <= room else prompt[:room - 1] + "…"
    return f"🔊 {shown}\n{details}" if shown else f"🔊 (continuation)\n{details}"


# --- /settings ---------------------------------------------------------------------------------------------------
def _clip(text: str, limit: int) -> str:
    """`text`, cut to at most `limit` characters with an ellipsis."""
    return text if len(text) <= limit else text[:limit - 1] + "…"


SOURCES = {YOURS: "your choice", OPERATOR: "this bot's default", DEFAULT: "default",
           PINNED: "fixed by the bot's operator"}
SETTINGS_HELP_CHARS = 200
NO_SETTINGS = "{backend} has no settings to choose. Change the generator with /backend."
PINNED_SETTING = "The bot's operator has fixed {option}: it cannot be changed here."


def settings_menu(backend: str, settings: list[Setting]) -> str:
    """The menu's text: every choice option with its current value, where that comes from, and its help."""
    if not settings:
        return NO_SETTINGS.format(backend=backend)
    lines = [f"⚙️ Settings of {backend} for your next sounds:"]
    for setting in settings:
        option = setting.option
        line = f"• {option.name}: {setting.value} ({SOURCES[setting.source]})"
        if not setting.valid:
            line += f" ⚠️ not one of {', '.join(option.choices)}" + (": tap one below" if setting.changeable
                                                                       else ": ask the bot's operator")
        lines.append(line)
        if option.help:
            lines.append("   " + _clip(option.help, SETTINGS_HELP_CHARS))
    if any(s.changeable for s in settings):
        lines.append("Tap a value to use it from your next sound on.")
    return "\n".join(lines)


def choice_label(option: str, choice: str, current: bool) -> str:
    return ("✅ " if current else "") + f"{option}: {choice}"


def settings_button(values: list[tuple[str, object]]) -> str:
    return "⚙️ " + _clip(", ".join(f"{name}: {value}" for name, value in values), 40)


def stale_settings(backend: str, names: list[str]) -> str:
    return (f"ℹ️ {backend} no longer offers your choice of {', '.join(names)}; "
            "I use the default instead (see /settings).")
