"""Load a GGUF through llama.cpp's C API: quiet logs, GPU offload, tokens and chat templates.

This and decoder.py are the only modules that import llama_cpp, and only when a model is
actually loaded: `think --help` must not pay for the shared library.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelError
from ..text import Json

GGUF_MAGIC = b"GGUF"
_LOG_LOCK = threading.Lock()
_log_state: Json = {"installed": False, "callback": None, "errors": []}


def _install_log_sink() -> None:
    """Route llama.cpp's logs into memory (errors kept for our messages); THINK_DEBUG passes them on."""
    import llama_cpp

    with _LOG_LOCK:
        if _log_state["installed"]:
            return
        debug = bool(os.environ.get("THINK_DEBUG"))

        @llama_cpp.llama_log_callback
        def _sink(level: int, text: bytes, _user: ctypes.c_void_p) -> None:
            message = text.decode("utf-8", errors="replace") if text else ""
            if debug:
                os.write(2, message.encode())
            if level == 4 and message.strip():  # GGML_LOG_LEVEL_ERROR
                errors = _log_state["errors"]
                errors.append(message.strip())
                del errors[:-20]

        _log_state["callback"] = _sink  # a reference must outlive every llama.cpp call
        llama_cpp.llama_log_set(_sink, ctypes.c_void_p(0))
        llama_cpp.llama_backend_init()
        _log_state["installed"] = True


def last_llama_error() -> str:
    errors = _log_state["errors"]
    return errors[-1] if errors else ""


def check_gguf_file(path: Path) -> None:
    """Fail early, in one line, on what llama.cpp would report cryptically."""
    if not path.exists():
        raise ModelError(f"model file not found: {path}")
    if not path.is_file():
        raise ModelError(f"not a file: {path}")
    try:
        with path.open("rb") as handle:
            magic = handle.read(4)
    except OSError as exc:
        raise ModelError(f"cannot read {path}: {exc.strerror}") from None
    if magic != GGUF_MAGIC:
        raise ModelError(f"not a GGUF model file: {path}")


def default_threads() -> int:
    """Decode threads when none are configured: half the logical cores (at least one).

    llama.cpp's workers spin while they wait for each other, so one thread that another process
    keeps off its core stalls every step: with all cores, one busy neighbour cut decoding 35-fold
    on a 2-core machine; with half, it degrades gently (benchmarks/bench_threads.py prints both)."""
    return max(1, (os.cpu_count() or 2) // 2)


@dataclass(frozen=True)
class ModelInfo:
    path: Path | None  # None: a model on a server
    name: str
    n_ctx_train: int
    n_vocab: int
    n_params: int
    size_bytes: int
    chat_template: str | None
    gpu_layers: int


class Model:
    """A loaded GGUF: weights, vocabulary, template. Contexts are made by the Decoder."""

    def __init__(self, path: Path, gpu_layers: int = 0, threads: int = 0):
        import llama_cpp

        _install_log_sink()
        check_gguf_file(path)
        self._lib = llama_cpp
        params = llama_cpp.llama_model_default_params()
        params.n_gpu_layers = 999 if gpu_layers < 0 else gpu_layers
        self.gpu_layers = params.n_gpu_layers
        model = llama_cpp.llama_model_load_from_file(str(path).encode(), params)
        if not model:
            detail = last_llama_error()
            hint = f" ({detail})" if detail else " (truncated or corrupt file?)"
            raise ModelError(f"llama.cpp could not load {path.name}{hint}")
        self.ptr = model
        self.path = path
        self.key = str(path)
        self.threads = threads or default_threads()
        self.vocab = llama_cpp.llama_model_get_vocab(model)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self.vocab)
        self.bos = llama_cpp.llama_vocab_bos(self.vocab)
        self.eos = llama_cpp.llama_vocab_eos(self.vocab)
        self.add_bos = bool(llama_cpp.llama_vocab_get_add_bos(self.vocab))
        self._pieces: dict[int, bytes] = {}
        self._eog: dict[int, bool] = {}
        template = llama_cpp.llama_model_chat_template(model, None)
        self.info = ModelInfo(
            path=path,
            name=self.meta("general.name") or path.stem,
            n_ctx_train=llama_cpp.llama_model_n_ctx_train(model),
            n_vocab=self.n_vocab,
            n_params=llama_cpp.llama_model_n_params(model),
            size_bytes=path.stat().st_size,
            chat_template=template.decode("utf-8", errors="replace") if template else None,
            gpu_layers=self.gpu_layers,
        )

    def meta(self, key: str) -> str | None:
        buf = ctypes.create_string_buffer(4096)
        n = self._lib.llama_model_meta_val_str(self.ptr, key.encode(), buf, len(buf))
        return buf.value.decode("utf-8", errors="replace") if n >= 0 else None

    # -- tokens ---------------------------------------------------------------------------
    def tokenize(self, text: str, add_bos: bool = False, special: bool = True) -> list[int]:
        data = text.encode("utf-8", errors="replace")  # a surrogate that got this far becomes "?", never a crash
        capacity = len(data) + 8
        buf = (self._lib.llama_token * capacity)()
        n = self._lib.llama_tokenize(self.vocab, data, len(data), buf, capacity, add_bos, special)
        if n < 0:
            capacity = -n
            buf = (self._lib.llama_token * capacity)()
            n = self._lib.llama_tokenize(self.vocab, data, len(data), buf, capacity, add_bos, special)
        return list(buf[:n])

    def piece(self, token: int) -> bytes:
        """Bytes of one token (special tokens rendered: tags like <think> must be seen)."""
        cached = self._pieces.get(token)
        if cached is None:
            buf = ctypes.create_string_buffer(64)
            n = self._lib.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, True)
            if n < 0:
                buf = ctypes.create_string_buffer(-n)
                n = self._lib.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, True)
            cached = buf.raw[:n]
            self._pieces[token] = cached
        return cached

    def is_end(self, token: int) -> bool:
        cached = self._eog.get(token)
        if cached is None:
            cached = bool(self._lib.llama_vocab_is_eog(self.vocab, token))
            self._eog[token] = cached
        return cached

    def prompt_tokens(self, text: str) -> list[int]:
        """Tokenize a rendered prompt, adding BOS only where the template did not already."""
        bos_text = self.piece(self.bos).decode("utf-8", errors="replace") if self.bos >= 0 else ""
        add_bos = self.add_bos and not (bos_text and text.startswith(bos_text))
        return self.tokenize(text, add_bos=add_bos, special=True)

    def prompt_bound(self, text: str) -> int | None:
        return None  # tokenizing in process costs microseconds: count exactly

    def close(self) -> None:
        if getattr(self, "ptr", None):
            self._lib.llama_model_free(self.ptr)
            self.ptr = None

    def __del__(self) -> None:  # pragma: no cover - best effort at interpreter exit
        with contextlib.suppress(Exception):
            self.close()


def gguf_chat_template(path: Path) -> str | None:
    """The chat template inside a GGUF, read with its vocabulary only (no weights: fast, little memory)."""
    import llama_cpp

    _install_log_sink()
    check_gguf_file(path)
    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True
    model = llama_cpp.llama_model_load_from_file(str(path).encode(), params)
    if not model:
        raise ModelError(f"llama.cpp could not read {path.name}")
    try:
        template = llama_cpp.llama_model_chat_template(model, None)
        return template.decode("utf-8", errors="replace") if template else None
    finally:
        llama_cpp.llama_model_free(model)


def backend_info() -> dict[str, object]:
    """What this llama.cpp build is and can do (for `think doctor`)."""
    import llama_cpp

    _install_log_sink()
    system = llama_cpp.llama_print_system_info().decode(errors="replace").strip()
    gpu = bool(llama_cpp.llama_supports_gpu_offload())
    upper = system.upper()
    backend = "CPU"
    if gpu:
        backend = next((name for name, tag in (("CUDA", "CUDA"), ("Metal", "METAL"), ("Vulkan", "VULKAN"))
                        if tag in upper), "GPU")
    library = Path(llama_cpp.__file__).parent / "lib"
    ggml = sorted(p.name.rsplit(".so.", 1)[-1] for p in library.glob("libggml.so.*.*")) if library.is_dir() else []
    return {
        "llama_cpp_python": llama_cpp.__version__,
        "llama_cpp": llama_cpp.llama_version().decode(errors="replace") if hasattr(llama_cpp, "llama_version") else None,
        "ggml": ggml[-1] if ggml else None,
        "backend": backend,
        "gpu_offload": gpu,
        "system_info": system,
    }
