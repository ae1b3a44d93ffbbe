"""The settings schema: one pydantic model per area, loaded once per process.

Precedence, highest first: explicit overrides (CLI flags) > environment (``APP__SECTION__KEY``)
> the YAML profile (``--config``) > the defaults below. This module imports nothing of the project.
"""

from __future__ import annotations

import contextvars
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from configs.errors import AppError

CONFIG_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = CONFIG_DIR.parent
DEFAULT_CACHE_DIR = Path.home() / ".cache" / "aligned-rag"
# The public data sets (training, evaluation) beside the checkout; `data_dir` below is the one setting for them.
SHARED_DATA_DIR = PROJECT_ROOT.parent / "shared" / "data"

EMBEDDED_GENERATOR = "embedded:smollm2-135m-instruct"
EMBEDDED_EMBEDDER = "embedded:all-minilm-l6-v2"
# The ULMA adapter shipped for the embedded generator (see its README.md): the Quickstart serves it.
EMBEDDED_ADAPTER = PROJECT_ROOT / "finetune" / "adapters" / "smollm2-ulma"


class ConfigError(AppError, ValueError):
    """A settings file or value that cannot be used; the message says how to fix it."""


def validation_problems(exc: ValidationError) -> str:
    """pydantic's errors as one line: `section.key: what is wrong; ...`."""
    return "; ".join(f"{'.'.join(map(str, err['loc'])) or 'file'}: {err['msg']}" for err in exc.errors())


class QuantizationSettings(BaseModel):
    """bitsandbytes 4-bit settings; one place builds BitsAndBytesConfig from them."""

    load_in_4bit: Literal["auto", "always", "never"] = Field(
        "auto", description="auto: 4-bit NF4 where CUDA is present, full precision on CPU"
    )
    quant_type: Literal["nf4", "fp4"] = "nf4"
    double_quant: bool = True
    compute_dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"
    quant_storage: Literal["uint8", "bfloat16", "float16", "float32"] = Field(
        "uint8",
        description="dtype the packed 4-bit weights are stored in; FSDP shards them only as a float dtype",
    )


class LoraSettings(BaseModel):
    r: int = Field(16, gt=0)
    alpha: int = Field(32, gt=0)
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: list[str] | Literal["all-linear"] = "all-linear"


class EngineSettings(BaseModel):
    """How concurrent generations share the model."""

    kind: Literal["auto", "sequential", "continuous"] = Field(
        "auto",
        description="sequential: one generation at a time, in arrival order (suits a small CPU, where one "
        "already uses every core); continuous: transformers' continuous batching (paged KV cache, CUDA graphs), "
        "every stream in one batch; auto: continuous on CUDA, sequential on CPU",
    )
    max_concurrent: int = Field(64, gt=0, description="generations in flight at once with continuous batching")
    kv_cache_memory_percent: float = Field(
        0.8, gt=0.0, le=0.95, description="share of the GPU memory left free after loading that the KV cache takes"
    )
    max_batch_tokens: int | None = Field(
        None, gt=0, description="tokens in one forward step; None: sized by transformers from the memory"
    )
    cuda_graphs: bool = Field(
        True,
        description="replay each step as a CUDA graph (no launch overhead per kernel); transformers turns them off "
        "by default for SDPA attention, which pads the graphs, but without flash-attn they are the main lever",
    )
    # transformers pads queries to 64 tokens and keys to 16,384 so that few graphs cover every step; with SDPA
    # every step then attends over 16,384 keys. Finer padding measured 3.3x faster for one stream and 1.4x for
    # 32 on an H200 (python -m benchmarks.engine_settings) for a few more graphs (captured once each).
    query_padding_tokens: int = Field(
        16, gt=0, description="a step's query tokens are padded up to a multiple of this (one graph per size)"
    )
    key_padding_tokens: int = Field(
        512, gt=0, description="a step's cached key tokens are padded up to a multiple of this (one graph per size)"
    )
    # Without a flash kernel transformers' engine runs SDPA over the concatenated keys of every request in the
    # step behind a dense mask, so a step's attention grows with requests x total context; FlashAttention's
    # variable-length kernel attends each request over its own keys only.
    attention: Literal["auto", "sdpa", "flash_attention_2", "flash_attention_3", "flash_attention_4"] = Field(
        "auto",
        description="attention kernel of the engine; auto: FlashAttention 4 on Hopper or newer GPUs where the "
        "flash-attn-4 package is installed, else transformers' own choice (FlashAttention 3 or 2 if installed, "
        "else SDPA)",
    )


class OpenAIBackendSettings(BaseModel):
    """A server speaking OpenAI's Chat Completions API (vLLM, llama.cpp, TGI, OpenAI...) that generates instead
    of a model loaded in this process (`model.backend: openai`)."""

    base_url: str | None = Field(None, description="the server's API root, e.g. http://vllm:8000/v1")
    model: str | None = Field(None, description="the model name to request, e.g. the adapter's --lora-modules name")
    api_key: SecretStr | None = Field(
        None, description="bearer token for the server (set it through APP__MODEL__OPENAI__API_KEY); none: no key"
    )
    connect_timeout_s: float = Field(5.0, gt=0, description="longest wait to open a connection")
    read_timeout_s: float = Field(60.0, gt=0, description="longest wait for the server's next bytes")
    max_retries: int = Field(0, ge=0, description="retries on connection errors, 429 and 5xx before any token")
    max_concurrent_requests: int = Field(
        8, gt=0, description="answers one service process generates at once (the server batches them)"
    )
    max_input_chars: int = Field(
        24_000, gt=0,
        description="prompt budget in characters (no tokenizer here): the oldest turns after the system prompt "
        "are left out beyond it; keep it under the server's context (vLLM --max-model-len) at ~4 characters a token",
    )
    extra_body: dict[str, Any] = Field(
        default_factory=dict,
        description="extra request fields the server understands, e.g. vLLM's repetition_penalty",
    )


class ModelSettings(BaseModel):
    """The generator: a hub id or local path, or the embedded default; or a remote OpenAI-compatible server."""

    backend: Literal["local", "openai"] = Field(
        "local", description="local: load name_or_path in this process; openai: call model.openai's server"
    )
    openai: OpenAIBackendSettings = OpenAIBackendSettings()
    name_or_path: str = EMBEDDED_GENERATOR
    adapter_path: str | None = Field(
        "auto",
        description="LoRA adapter directory from `python -m finetune`; 'auto': the shipped ULMA adapter when the "
        "base is the embedded model, none otherwise; 'none': the bare base",
    )
    cache_dir: Path = DEFAULT_CACHE_DIR / "models"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    quantization: QuantizationSettings = QuantizationSettings()
    max_new_tokens: int = Field(
        96, gt=0, description="the longest answer in tokens; short by default: on a small CPU every token costs"
    )
    temperature: float = Field(0.0, ge=0.0, description="0 means greedy decoding")
    top_p: float = Field(0.9, gt=0.0, le=1.0)
    repetition_penalty: float = Field(
        1.1, ge=1.0, description="sequential engine only: transformers' continuous batching does not support it"
    )
    max_input_tokens: int = Field(1536, gt=0)

    @model_validator(mode="after")
    def _remote_server_named(self) -> ModelSettings:
        if self.backend == "openai" and not (self.openai.base_url and self.openai.model):
            raise ValueError("model.backend 'openai' needs model.openai.base_url and model.openai.model "
                             "(e.g. http://vllm:8000/v1 and the served adapter's name)")
        return self

    @model_validator(mode="after")
    def _resolve_adapter(self) -> ModelSettings:
        if self.adapter_path == "auto":
            self.adapter_path = str(EMBEDDED_ADAPTER) if self.name_or_path == EMBEDDED_GENERATOR else None
        elif self.adapter_path in ("none", ""):
            self.adapter_path = None
        return self

    cpu_threads: int | None = Field(
        None, gt=0, description="torch intra-op threads when serving on CPU; None: half the cores"
    )
    engine: EngineSettings = EngineSettings()


# What runs the MiniLM encoders' forward (retrieval.hidden_states chooses for `auto`).
EncoderRuntime = Literal["auto", "onnx", "torch", "cuda_graphs"]


class EmbeddingSettings(BaseModel):
    name_or_path: str = EMBEDDED_EMBEDDER
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    batch_size: int = Field(32, gt=0)
    runtime: EncoderRuntime = Field(
        "auto",
        description="what runs the MiniLM encoders (retrieval and the guard): onnx, ONNX Runtime on the CPU (the "
        "same float32 results at about half the CPU; exported once, cached under ~/.cache/aligned-rag/onnx); "
        "cuda_graphs, the torch model replayed from CUDA graphs on a CUDA GPU (one launch per forward instead of "
        "about a hundred, next to a model server on the same GPU); torch; auto: onnx on the CPU, cuda_graphs on "
        "CUDA",
    )


class VectorStoreSettings(BaseModel):
    persist_dir: Path = PROJECT_ROOT / "var" / "chroma"
    collection: str = Field("knowledge_base", min_length=3, max_length=512)
    server_url: str | None = Field(
        None, description="http://host:port of a Chroma server; several processes can share it"
    )


class IngestSettings(BaseModel):
    chunk_size: int = Field(800, gt=50, description="characters per chunk")
    chunk_overlap: int = Field(120, ge=0)
    starter_kb_dir: Path = PROJECT_ROOT / "ingest" / "starter_kb"
    ingest_starter_on_startup: bool = True
    write_batch: int = Field(
        1024, gt=0,
        description="chunks embedded and committed together; one commit is all-or-nothing. Larger groups pad "
        "less (each embedding batch holds texts of about one length); a killed run redoes at most one group",
    )
    jsonl_text_field: str = Field("text", min_length=1, description="JSONL: the field holding a record's text")
    jsonl_metadata_fields: list[str] = Field(
        default_factory=list, description="JSONL: record fields copied into every chunk's metadata"
    )


class RetrievalSettings(BaseModel):
    top_k: int = Field(4, gt=0, le=50)
    min_relevance: float = Field(0.25, ge=0.0, le=1.0, description="cosine similarity floor")
    search_type: Literal["similarity", "mmr"] = Field(
        "similarity", description="mmr: maximal marginal relevance, trading similarity for diversity"
    )
    fetch_k: int = Field(20, gt=0, le=500, description="candidates per list before MMR or fusion")
    mmr_lambda: float = Field(0.5, ge=0.0, le=1.0, description="1: pure similarity, 0: pure diversity")
    hybrid: bool = Field(True, description="fuse BM25 (a tantivy index beside the collection) with dense search")
    fusion: Literal["convex", "rrf"] = Field(
        "convex",
        description="convex: (1 - lexical_weight) x cosine + lexical_weight x BM25 / the query's best BM25; "
        "rrf: reciprocal rank fusion, sum 1 / (rrf_k + rank)",
    )
    lexical_weight: float = Field(0.1, ge=0.0, le=1.0, description="BM25's share of a convex fusion score")
    rrf_k: int = Field(60, gt=0, description="reciprocal rank fusion constant: score = sum 1 / (rrf_k + rank)")


class SafetySettings(BaseModel):
    backend: Literal["classifier", "llama_guard", "generator_judge"] = "classifier"
    classifier_path: Path = PROJECT_ROOT / "agents" / "safety" / "weights"
    llama_guard_model: str = "meta-llama/Llama-Guard-3-1B"
    request_threshold: float | None = Field(None, ge=0.0, le=1.0, description="None: the trained one")
    response_threshold: float | None = Field(None, ge=0.0, le=1.0)
    category_min_probability: float = Field(
        0.35, ge=0.0, le=1.0, description="besides the most likely hazard, list others at least this probable"
    )
    llama_guard_categories: list[str] = Field(
        default_factory=lambda: [f"S{i}" for i in range(1, 15)],
        description="hazard codes put in the Llama Guard prompt (Llama-Guard-3-1B's card lists S1..S13)",
    )
    fail_closed: bool = Field(True, description="an unreadable judge/Llama Guard answer counts as unsafe")
    seed: int = Field(0, description="fixes samples, splits and training of the embedded classifier")


class AgenticSettings(BaseModel):
    """The agentic workflow: every decision is a threshold here, so it can be tuned and tested without the model."""

    prompts_path: Path = CONFIG_DIR / "prompts_agentic.yaml"
    max_retrieval_retries: int = Field(2, ge=0, le=5, description="query rewrites after a failed grade")
    min_relevant_chunks: int = Field(1, ge=1, description="graded chunks needed to answer")
    relevance_score: float = Field(0.40, ge=0.0, le=1.0, description="cosine score that alone passes a chunk")
    relevance_floor: float = Field(0.25, ge=0.0, le=1.0, description="cosine score below which a chunk fails")
    relevance_overlap: float = Field(
        0.34, ge=0.0, le=1.0, description="share of query terms a chunk between floor and score must contain"
    )
    grounding_similarity: float = Field(0.55, ge=0.0, le=1.0, description="sentence-chunk cosine that supports")
    grounding_overlap: float = Field(0.6, ge=0.0, le=1.0, description="share of sentence terms found in chunks")
    grounded_share: float = Field(0.5, ge=0.0, le=1.0, description="supported sentences needed to pass")
    evidence_sentences: int = Field(
        3, ge=1, le=3, description="most sentences quoted when an answer stays unsupported after the retry"
    )
    evidence_similarity_weight: float = Field(
        0.5, ge=0.0, le=1.0,
        description="weight of question-sentence cosine against question-term overlap when choosing evidence",
    )
    evidence_quantity_bonus: float = Field(
        0.2, ge=0.0, le=1.0,
        description="added to the score of a sentence stating a number when the question asks how long, "
        "often, many or much (the expected answer type)",
    )
    evidence_heading_context: bool = Field(
        True,
        description="score each sentence together with its section's heading path, as a reader sees it under "
        "the heading (a glossary entry under its term, a bullet under the task it belongs to)",
    )
    evidence_following_chunks: bool = Field(
        True,
        description="quotes may also come from the chunk that follows each kept chunk in its file: a list cut "
        "from its lead-in, a paragraph cut at a chunk boundary (cited as a source of its own when quoted)",
    )
    evidence_section_openings: bool = Field(
        True,
        description="quotes may also come from the chunk before each kept chunk when it lies in the same section "
        "(the same heading path): the section's opening statement, cut off by a chunk boundary (cited as a source "
        "of its own when quoted)",
    )
    excerpt_sentences: int = Field(
        4, ge=0, description="sentences of each chunk shown to the generator (the best matching); 0: whole chunks"
    )
    recursion_limit: int = Field(40, ge=10, description="LangGraph super-steps per turn (a backstop)")
    answer_with: Literal["auto", "generator", "quotes"] = Field(
        "auto",
        description="how a knowledge question is answered: generator (generated, grounding-checked, quoted "
        "evidence if it stays unsupported), quotes (the quoted evidence at once, no generation); auto: "
        "quotes for the embedded 135M generator, whose answers fail the grounding check (README, agent "
        "evaluation), generator for any other model",
    )


class AgentSettings(BaseModel):
    checkpointer: Literal["sqlite", "postgres", "memory"] = "sqlite"
    sqlite_path: Path = PROJECT_ROOT / "var" / "checkpoints.sqlite"
    postgres_url: str | None = None
    prompts_path: Path = CONFIG_DIR / "prompts.yaml"
    history_turns: int = Field(6, ge=0, description="earlier messages given to the generator")
    check_stream_sentences: bool = Field(
        True,
        description="release streamed answer text only after the output guard passed each sentence; "
        "false streams raw tokens and retracts the answer if the final check fails",
    )
    workflow: Literal["linear", "agentic"] = Field(
        "agentic",
        description="linear: safety_in -> retrieve -> generate -> safety_out; agentic: adds routing, relevance "
        "grading with bounded query rewrites, and a grounding check that quotes the evidence when an answer "
        "stays unsupported (agents/agentic)",
    )
    agentic: AgenticSettings = AgenticSettings()


class ApiSettings(BaseModel):
    host: str = "127.0.0.1"
    port: int = Field(8000, gt=0, lt=65536)
    dev_mode: bool = Field(
        False, description="local development: no API keys; the service then binds 127.0.0.1 only"
    )
    api_keys: list[SecretStr] = Field(
        default_factory=list,
        description="bearer tokens the service accepts, raw or as 'sha256:<hex digest>'; required unless dev_mode",
    )
    max_message_chars: int = Field(4000, gt=0)
    max_messages: int = Field(
        32, gt=0, description="messages one /v1/chat/completions request may carry (bounded history)"
    )
    max_body_bytes: int = Field(262_144, gt=0, description="larger request bodies get 413 before parsing")
    rate_limit_per_minute: int = Field(60, ge=0, description="chat requests per key and minute; 0: unlimited")
    max_queued_turns: int = Field(
        8, gt=0, description="turns admitted at once (running or waiting for the generator); more get 503"
    )
    generation_timeout_s: float = Field(120.0, gt=0, description="a turn running longer is cancelled")
    shutdown_grace_s: int = Field(
        10, ge=0, description="on SIGTERM, in-flight requests get this long to finish, then are cancelled"
    )
    cors_origins: list[str] = Field(default_factory=list, description="browser origins allowed; empty: CORS off")
    model_id: str = Field("aligned-rag", description="the model name /v1/models lists")
    log_json: bool = True


class AppSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="APP__", env_nested_delimiter="__", extra="forbid")

    model: ModelSettings = ModelSettings()
    embedding: EmbeddingSettings = EmbeddingSettings()
    vector_store: VectorStoreSettings = VectorStoreSettings()
    ingest: IngestSettings = IngestSettings()
    retrieval: RetrievalSettings = RetrievalSettings()
    safety: SafetySettings = SafetySettings()
    agent: AgentSettings = AgentSettings()
    api: ApiSettings = ApiSettings()
    data_dir: Path = Field(
        SHARED_DATA_DIR, description="the public data sets the offline tools train and evaluate on"
    )

    @model_validator(mode="after")
    def _resolve_answer_with(self) -> AppSettings:
        agentic = self.agent.agentic
        if agentic.answer_with == "auto":
            embedded = self.model.backend == "local" and self.model.name_or_path == EMBEDDED_GENERATOR
            agentic.answer_with = "quotes" if embedded else "generator"
        return self

    @field_validator("api")
    @classmethod
    def _no_placeholder_keys(cls, api: ApiSettings) -> ApiSettings:
        if any(key.get_secret_value() in {"changeme", "secret", ""} for key in api.api_keys):
            raise ValueError("api.api_keys holds a placeholder key; set real keys or none")
        return api

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, env_settings, _YamlSource(settings_cls), file_secret_settings


# Read-only default: a ContextVar default is shared by every context.
_yaml_data: contextvars.ContextVar[Mapping[str, Any]] = contextvars.ContextVar(
    "yaml_data", default=MappingProxyType({})
)


class _YamlSource(PydanticBaseSettingsSource):
    """Feeds the YAML profile in below the environment, so env vars still override it."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return _yaml_data.get().get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(_yaml_data.get())


def read_yaml(path: Path | str) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of sections, not {type(data).__name__}")
    return data


def dotted_to_nested(overrides: dict[str, Any]) -> dict[str, Any]:
    """{"api.port": 9000} -> {"api": {"port": 9000}}; None values (unset CLI flags) are dropped."""
    nested: dict[str, Any] = {}
    for dotted, value in overrides.items():
        if value is None:
            continue
        *parents, leaf = dotted.split(".")
        node = nested
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return nested


def load_settings(config: Path | str | None = None, overrides: dict[str, Any] | None = None) -> AppSettings:
    """Build the settings: defaults < YAML profile < environment < overrides (dotted keys)."""
    token = _yaml_data.set(read_yaml(config) if config else {})
    try:
        return AppSettings(**dotted_to_nested(overrides or {}))
    except ValidationError as exc:
        raise ConfigError(f"invalid settings ({config or 'defaults'}): {validation_problems(exc)}") from exc
    finally:
        _yaml_data.reset(token)
