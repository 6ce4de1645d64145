"""Serve the HTTP API and the Gradio demo (one process, loopback by default).

    speechlm serve [all|api|demo] [--port 7860] [--model-dir exp/asr/model --graph exp/asr/graph]
                   [--llm auto|none|NAME|DIR] [--max-seconds 30] [--max-upload-mb 10]

``all`` (the default) serves the API (``/v1/transcribe``, ``/v1/rescore``, ``/healthz``,
``/metrics``, OpenAPI at ``/openapi.json`` and ``/docs``) and the demo (``/demo/``); ``api``
or ``demo`` serves one of them. ASR models: PocketSphinx English always (unless
``--no-pocketsphinx``), plus a recipe model dir with ``--model-dir`` (with ``--graph`` it
decodes through lattices and gives WCNs). Decoding runs in ``--max-concurrency`` worker
processes, each loading the models once, before the port opens; the server process stays
free for health checks, metrics and 429s. ``--port 0`` picks a free port; the URL is
printed on stdout either way. On SIGTERM the server stops accepting, cancels queued
decodes, gives running ones ``--drain-seconds``, then kills the workers and exits.

Security: by default there is no authentication and the server listens on 127.0.0.1 only,
answering only requests whose ``Host`` is a loopback name or the bound address (so a web
page cannot reach it through DNS rebinding). ``--api-key`` (or ``SPEECHLM_API_KEY``) makes
``/v1/*`` require the key; the demo, ``/healthz``, ``/metrics`` and ``/docs`` stay open,
so put a proxy with its own authentication in front before binding anything but loopback
(the server warns when it is asked to). Request bodies must arrive within
``--body-timeout`` seconds; demo uploads in flight are limited to ``--max-uploads``.
"""
from __future__ import annotations

import argparse
import atexit
import os
import shutil
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path

from speechlm.bin import command_main


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("what", nargs="?", choices=("all", "api", "demo"), default="all",
                        help="what to serve (default: the API and the demo)")
    parser.add_argument("--host", default="127.0.0.1", help="interface (default loopback)")
    parser.add_argument("--port", type=int, default=7860, help="TCP port; 0 picks a free one")
    parser.add_argument("--model-dir", default=None,
                        help="a recipe model dir (exp/<tag>/model) offered beside PocketSphinx")
    parser.add_argument("--graph", default=None,
                        help="its decoding graph dir (exp/<tag>/graph): lattices and WCNs")
    parser.add_argument("--model-name", default=None,
                        help="name of --model-dir in requests (default: the exp tag)")
    parser.add_argument("--no-pocketsphinx", action="store_true",
                        help="do not offer PocketSphinx English")
    parser.add_argument("--llm", default="auto",
                        help="LLM for rescoring: a checkpoint dir (e.g. from speechlm lm "
                             "train), a catalogue name, 'none', or 'auto' (default: "
                             "smollm2-135m-instruct when its package is installed, else none)")
    parser.add_argument("--llm-url", default=None,
                        help="instead of --llm: an OpenAI-compatible server (vLLM...) base "
                             "URL, e.g. http://gpu:8000/v1; every LLM call goes there")
    parser.add_argument("--llm-model", default=None, help="the model name on --llm-url")
    parser.add_argument("--asr", action="append", default=[], metavar="NAME|DIR",
                        help="a pretrained ASR model offered too: a catalogue name "
                             "(whisper-tiny.en, whisper-base, moonshine-tiny-en) or a "
                             "CTranslate2 Whisper dir; repeatable")
    parser.add_argument("--slu", default=None, help="SLU model dir (speechlm.slu), optional")
    parser.add_argument("--max-upload-mb", type=float, default=10.0,
                        help="largest upload (413 above)")
    parser.add_argument("--max-seconds", type=float, default=30.0,
                        help="longest audio (422 above)")
    parser.add_argument("--max-concurrency", type=int, default=1,
                        help="requests decoding at once (decode worker processes)")
    parser.add_argument("--max-waiting", type=int, default=8,
                        help="requests queued beyond those (429 above)")
    parser.add_argument("--max-batch", type=int, default=1,
                        help="queued requests a decode worker takes at once, decoded as one "
                             "padded batch where the backend batches (Whisper; for GPUs)")
    parser.add_argument("--max-nbest", type=int, default=10, help="largest N-best asked for")
    parser.add_argument("--llm-scale", type=float, default=0.5,
                        help="default LLM weight in rescoring")
    parser.add_argument("--scorer", action="append", default=[], metavar="DIR",
                        help="a trained scorer dir (speechlm rescore train --method mwer|pll) "
                             "/v1/rescore may use as model (repeatable)")
    parser.add_argument("--drain-seconds", type=float, default=10.0,
                        help="on SIGTERM, how long running decodes may finish before their "
                             "workers are killed")
    parser.add_argument("--allowed-hosts", default=None,
                        help="comma-separated Host names answered (default: localhost, "
                             "127.0.0.1, ::1 and --host); '*' answers any")
    parser.add_argument("--api-key", default=os.environ.get("SPEECHLM_API_KEY"),
                        help="require this key for /v1/* (Authorization: Bearer KEY or "
                             "X-API-Key); default $SPEECHLM_API_KEY, else none")
    parser.add_argument("--body-timeout", type=float, default=30.0,
                        help="seconds a request body may take to arrive (408 after)")
    parser.add_argument("--max-uploads", type=int, default=4,
                        help="demo uploads in flight at once (429 above)")
    parser.add_argument("--decode-in-threads", action="store_true",
                        help="decode on threads of the server process (no worker processes: "
                             "less memory, but a decode stalls health checks)")


LOOPBACK = ("localhost", "127.0.0.1", "::1")


def allowed_hosts(args: argparse.Namespace) -> tuple[str, ...] | None:
    """The Host names the server answers: loopback names and the bound address."""
    if args.allowed_hosts is not None:
        names = tuple(h.strip().lower() for h in args.allowed_hosts.split(",") if h.strip())
        return None if "*" in names else names
    return tuple(dict.fromkeys((*LOOPBACK, args.host.lower())))


def resolve_llm(args: argparse.Namespace) -> str | None:
    """The LLM to load from ``--llm``: ``auto`` is the catalogue's default LLM when its
    package is installed (a line on stderr says which, or how to get it), else none."""
    if args.llm not in ("auto", "none", None) and args.llm_url:
        raise ValueError("give --llm or --llm-url, not both")
    if args.llm in ("none", None) or (args.llm == "auto" and args.llm_url):
        return None
    if args.llm != "auto":
        return args.llm
    from speechlm.api import DEFAULT_LLM
    from speechlm.core.catalogue import MODELS, installed

    if installed(DEFAULT_LLM):
        print(f"speechlm serve: LLM {DEFAULT_LLM} (the default; --llm none for no LLM)",
              file=sys.stderr, flush=True)
        return DEFAULT_LLM
    print(f"speechlm serve: no LLM (the default {DEFAULT_LLM} is not installed: "
          f"{MODELS[DEFAULT_LLM].pip_command})", file=sys.stderr, flush=True)
    return None


def build_state(args: argparse.Namespace):
    from speechlm.api import POCKETSPHINX
    from speechlm.serve.state import GuardConfig, ModelSpec, ServeConfig, ServeState

    models = [] if args.no_pocketsphinx else [ModelSpec(POCKETSPHINX)]  # the default first
    if args.model_dir:
        model_dir = Path(args.model_dir)
        name = args.model_name or (model_dir.resolve().parent.name if model_dir.name == "model"
                                   else model_dir.name)
        models.append(ModelSpec(name, str(model_dir), args.graph))
    elif args.graph:
        raise ValueError("--graph goes with --model-dir")
    for asr in args.asr:
        models.append(ModelSpec(Path(asr).name if os.sep in asr else asr, asr))
    if not models:
        raise ValueError("no ASR model: give --model-dir or leave PocketSphinx on")
    config = ServeConfig(models=tuple(models), max_upload_bytes=int(args.max_upload_mb * 2**20),
                         max_seconds=args.max_seconds, max_concurrency=args.max_concurrency,
                         max_waiting=args.max_waiting, max_batch=args.max_batch,
                         max_nbest=args.max_nbest,
                         llm_scale=args.llm_scale, scorers=tuple(args.scorer),
                         drain_seconds=args.drain_seconds,
                         decode_processes=not args.decode_in_threads,
                         guard=GuardConfig(allowed_hosts=allowed_hosts(args),
                                           api_key=args.api_key or None,
                                           body_timeout_s=args.body_timeout,
                                           max_uploads=args.max_uploads))
    llm = llm_name = slu = None
    llm_arg = resolve_llm(args)
    if llm_arg:
        from speechlm.api import load_llm

        t0 = time.perf_counter()
        llm, llm_name = load_llm(llm_arg), Path(llm_arg).name
        print(f"speechlm serve: LLM {llm_name} loaded in {time.perf_counter() - t0:.1f} s",
              file=sys.stderr, flush=True)
    elif args.llm_url:
        from speechlm.api import load_llm

        llm, llm_name = load_llm(args.llm_url, model=args.llm_model), args.llm_model or "remote"
    if args.slu:
        from speechlm.api import slu as load_slu

        slu = load_slu(args.slu)
    return ServeState(config, llm=llm, llm_name=llm_name, slu=slu)


def build_app(state, what: str = "all"):
    """The ASGI app for ``what`` (``all``, ``api`` or ``demo``) over ``state``."""
    from speechlm.serve.app import create_app

    demo = None
    if what in ("all", "demo"):
        from speechlm.serve.demo import build_demo

        demo = build_demo(state)
    app = create_app(state, demo=demo, api=what != "demo")
    return app


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)  # connections wait in the backlog until uvicorn accepts them
    return sock


def _remove_tree(path: str) -> None:
    """Remove the temp dir; retried because a Gradio worker thread finishing an upload can
    still be writing into it while the server stops (rmtree then meets a changing tree)."""
    for _ in range(5):
        shutil.rmtree(path, ignore_errors=True)
        if not os.path.exists(path):
            return
        time.sleep(0.2)
    print(f"speechlm serve: warning: could not remove {path}", file=sys.stderr)


def _exit_on_signal(signum, frame):
    raise SystemExit(128 + signum)


def _server(app, state):
    """A uvicorn server that, as it starts shutting down, stops the decode queue: queued
    decodes are cancelled at once, running ones get ``drain_seconds``; so a SIGTERM ends
    the process in about ``drain_seconds`` however long the decodes would have run."""
    import uvicorn

    class Server(uvicorn.Server):
        async def shutdown(self, sockets=None):
            state.begin_close()  # returns at once; runs in the event loop, not a handler
            await super().shutdown(sockets)

    grace = state.config.drain_seconds + 2.0  # the answers of cancelled requests go out
    return Server(uvicorn.Config(app, log_level="warning", access_log=False,
                                 timeout_graceful_shutdown=grace))


def run(args: argparse.Namespace) -> int:
    if args.port != 0 and not 1 <= args.port <= 65535:
        raise ValueError(f"--port must be 0..65535, got {args.port}")
    if args.host.lower() not in LOOPBACK:
        print(f"speechlm serve: warning: listening on {args.host}, beyond this machine; "
              + ("only /v1/* needs the API key; " if args.api_key else "there is no "
                 "authentication; ") + "put a proxy with authentication in front",
              file=sys.stderr)
    # Gradio keeps uploads and recordings in its own temp dir: make it ours, remove it on exit.
    tmp = tempfile.mkdtemp(prefix="speechlm-serve-")
    atexit.register(_remove_tree, tmp)  # again at exit, after threads that were still writing
    os.environ["GRADIO_TEMP_DIR"] = tmp
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    state = None
    try:
        try:
            import fastapi  # noqa: F401
            import multipart  # noqa: F401  (python-multipart: FastAPI's form parser)
            import uvicorn  # noqa: F401
            if args.what != "api":
                import gradio  # noqa: F401
        except ImportError as e:
            print(f"speechlm serve: {e.name} is not installed; serving needs fastapi, uvicorn, "
                  "python-multipart and (for the demo) gradio: pip install 'speechlm[serve]'",
                  file=sys.stderr)
            return 1
        state = build_state(args)
        state.warm_up()  # models load once, before the port opens
        app = build_app(state, args.what)
        sock = _listen(args.host, args.port)
        host, port = sock.getsockname()[:2]
        paths = {"all": "/demo/ and /v1/ (docs: /docs)", "api": "/v1/ (docs: /docs)",
                 "demo": "/demo/"}[args.what]
        print(f"speechlm serve: http://{host}:{port} {paths}; temp dir {tmp}", flush=True)
        server = _server(app, state)
        # uvicorn shuts down gracefully on SIGTERM, then re-raises it under the handler it
        # found: make that an exit that runs the cleanup below, not the default kill.
        signal.signal(signal.SIGTERM, _exit_on_signal)
        server.run(sockets=[sock])
    finally:
        if state is not None:
            state.close()
        _remove_tree(tmp)
    return 0


def main(argv: list[str] | None = None) -> int:
    return command_main("speechlm serve", __doc__, add_arguments, run, argv)


if __name__ == "__main__":
    sys.exit(main())
