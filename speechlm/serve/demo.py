"""The Gradio demo: record or upload speech, see what the recogniser and the LLM make of it.

Shows the 1-best with each word coloured by its confidence (its WCN bin posterior), the
N-best list, the word confusion network drawn with posteriors, the N-best re-ranked by the
LLM, the intent (where an SLU model is loaded) and the runtime's figures. It shares the
server's :class:`ServeState`, so every model is loaded once for the API and the demo.
"""
from __future__ import annotations

import html
import io
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from speechlm.api import AudioRejected, Transcript, rescore_nbest
from speechlm.core.paths import data_dir
from speechlm.serve.state import ServeState

# (file under ../shared/data, what it is): preloaded as examples where present
EXAMPLES = (
    ("english_speech_samples/pocketsphinx_cards/001.wav", "cards: ten of clubs"),
    ("english_speech_samples/pocketsphinx_cards/003.wav", "cards"),
    ("english_speech_samples/pocketsphinx_librivox/"
     "sense_and_sensibility_01_austen_64kb-0870.wav", "LibriVox: Sense and Sensibility"),
    ("english_speech_samples/whisper_jfk/jfk.flac", "JFK, 44.1 kHz stereo FLAC"),
    ("fsdd/recordings/7_george_3.wav", "FSDD digit, 8 kHz"),
    ("fsdd/recordings/3_jackson_0.wav", "FSDD digit, 8 kHz"),
)


def example_files() -> list[str]:
    """Paths of the example recordings found in ../shared/data."""
    out = []
    for rel, _ in EXAMPLES:
        path = data_dir(rel)
        if path is not None and path.is_file():
            out.append(str(path))
    return out


def allowed_audio_path(path: str) -> bool:
    """Whether the demo may read ``path``: a file in Gradio's upload dir (the server sets
    ``GRADIO_TEMP_DIR`` to a temp dir of its own) or one of the example recordings. Gradio
    checks this itself; the demo checks again rather than trust a path from a request."""
    real = Path(path).resolve()
    root = Path(os.environ.get("GRADIO_TEMP_DIR") or tempfile.gettempdir()).resolve()
    return real.is_file() and (real.is_relative_to(root)
                               or str(real) in {str(Path(p).resolve()) for p in example_files()})


def confidence_html(t: Transcript) -> str:
    """The 1-best as HTML, each word's background from red (low posterior) to green."""
    if not t.text:
        return "<p class='transcript'><i>(nothing recognised)</i></p>"
    spans = []
    for word, p in t.word_confidences():
        if p is None:
            spans.append(f"<span class='word'>{html.escape(word)}</span>")
            continue
        hue = int(120 * max(0.0, min(1.0, p)))  # 0 red .. 120 green
        spans.append(f"<span class='word' title='posterior {p:.3f}' data-posterior='{p:.4f}' "
                     f"style='background:hsl({hue},70%,80%);padding:2px 4px;margin:1px;"
                     f"border-radius:4px'>{html.escape(word)}</span>")
    return "<p class='transcript' style='font-size:1.4em;line-height:2'>" + " ".join(spans) \
        + "</p>"


def wcn_image(t: Transcript):
    """The confusion network drawn by ``plot_confusion_network``, as a PIL image (the PNG
    lives in a temporary dir only while it is read)."""
    if t.wcn is None or not t.wcn.bins:
        return None
    from PIL import Image

    from speechlm.lattice import plot_confusion_network

    with tempfile.TemporaryDirectory(prefix="speechlm-wcn-") as tmp:
        png = plot_confusion_network(t.wcn, Path(tmp) / "wcn.png",
                                     title=f"WCN: {' '.join(t.wcn.mbr_words())}")
        image = Image.open(io.BytesIO(png.read_bytes()))
        image.load()
    return image


OUTPUTS = ("transcript", "wcn", "nbest", "rescored_text", "rescored", "intent", "figures")


def transcribe(state: ServeState, audio_path: str | None, model: str, nbest: int,
               prefix: str) -> dict[str, Any]:
    """One demo run: the value of each output (``OUTPUTS``) by name."""
    out: dict[str, Any] = {"transcript": "", "wcn": None, "nbest": [], "rescored_text": "",
                           "rescored": [], "intent": "", "figures": {}}
    if not audio_path:
        return {**out, "transcript": "<p><b>Record or upload some audio first.</b></p>"}
    if not allowed_audio_path(audio_path):
        return {**out, "transcript": "<p class='error'><b>Cannot read this file.</b></p>"}
    start = time.perf_counter()
    if model not in state.model_names:
        return {**out, "transcript": f"<p class='error'><b>Unknown model</b> "
                f"{html.escape(str(model))}</p>"}
    try:
        asr = state.asr(model)
        # Gradio wrote the upload or recording into its own temp dir; the demo reads it
        # once and Gradio's cache cleaner removes it.
        t = asr(audio_path, limits=state.config.limits(mix_channels=True))
    except AudioRejected as e:
        return {**out, "transcript": "<p class='error'><b>Cannot transcribe this audio:</b> "
                f"{html.escape(str(e))}</p>"}
    state.metrics.decoded(t.duration, t.decode_s)
    nbest_rows = [[i + 1, h.text, round(h.score, 3)] for i, h in enumerate(t.nbest[:nbest])]
    rescored_rows: list[list[Any]] = []
    rescored_text = ""
    if state.llm is not None and t.nbest:
        hyps = [h for h in t.nbest[:nbest] if h.text.strip()]
        ranked = rescore_nbest(state.llm, hyps, prefix=prefix.strip() or None,
                               llm_scale=state.config.llm_scale)
        rescored_rows = [[i + 1, r.text, round(r.score_of("first_pass"), 3),
                          round(r.score_of("llm"), 3), round(r.score, 3)]
                         for i, r in enumerate(ranked)]
        rescored_text = ranked[0].text if ranked else ""
    elif state.llm is None:
        rescored_text = "(no LLM loaded: start with --llm NAME|DIR)"
    intent = "(no SLU model loaded: start with --slu DIR)"
    if state.slu is not None:
        intent = str(state.slu(t))
    figures = {"asr_model": t.model, "audio_s": round(t.duration, 3),
               "input": f"{t.sample_rate} Hz, {t.channels} channel(s)",
               "asr_latency_s": round(t.decode_s, 3),
               "real_time_factor": round(t.decode_s / max(t.duration, 1e-9), 3),
               **state.llm_figures(),
               "total_latency_s": round(time.perf_counter() - start, 3)}
    return {"transcript": confidence_html(t), "wcn": wcn_image(t), "nbest": nbest_rows,
            "rescored_text": rescored_text, "rescored": rescored_rows, "intent": intent,
            "figures": figures}


def build_demo(state: ServeState):
    """The Gradio Blocks over ``state`` (mount it with ``create_app(state, demo=...)``)."""
    import gradio as gr

    names = state.model_names
    with gr.Blocks(title="speechlm demo", delete_cache=(600, 600)) as demo:
        gr.Markdown("# speechlm\nSpeech → N-best, lattice and word confusion network → "
                    "LLM rescoring. Record, upload, or pick an example below.")
        with gr.Row():
            with gr.Column(scale=1):
                audio = gr.Audio(sources=["upload", "microphone"], type="filepath",
                                 label="Speech", elem_id="audio-in")
                model = gr.Dropdown(names, value=names[0], label="ASR model",
                                    elem_id="model")
                nbest = gr.Slider(1, state.config.max_nbest, value=5, step=1, label="N-best")
                prefix = gr.Textbox(label="LLM prefix (optional context for rescoring)",
                                    elem_id="prefix")
                button = gr.Button("Transcribe", variant="primary", elem_id="transcribe")
                examples = example_files()
                if examples:
                    gr.Examples([[p] for p in examples], inputs=[audio],
                                label="Examples from ../shared/data")
            with gr.Column(scale=2):
                transcript = gr.HTML(label="1-best (colour: word confidence)",
                                     elem_id="transcript")
                wcn = gr.Image(label="Word confusion network (posteriors)", type="pil",
                               elem_id="wcn", interactive=False)
                nbest_table = gr.Dataframe(headers=["rank", "text", "score"], label="N-best",
                                           elem_id="nbest", interactive=False)
                rescored_text = gr.Textbox(label="LLM-rescored transcript",
                                           elem_id="rescored", interactive=False)
                rescored = gr.Dataframe(headers=["rank", "text", "asr score", "llm score",
                                                 "total"], label="N-best after LLM rescoring",
                                        elem_id="rescored-nbest", interactive=False)
                intent = gr.Textbox(label="Intent (SLU)", elem_id="intent", interactive=False)
                figures = gr.JSON(label="Runtime figures", elem_id="figures")

        def run(audio_path, model_name, n, prefix_text):
            out = transcribe(state, audio_path, model_name, int(n), prefix_text or "")
            return tuple(out[k] for k in OUTPUTS)

        button.click(run, [audio, model, nbest, prefix],
                     [transcript, wcn, nbest_table, rescored_text, rescored, intent, figures],
                     concurrency_limit=state.config.max_concurrency)
    # A bounded queue, as for the API: beyond it Gradio tells the user to retry.
    demo.queue(max_size=state.config.max_waiting,
               default_concurrency_limit=state.config.max_concurrency)
    return demo
