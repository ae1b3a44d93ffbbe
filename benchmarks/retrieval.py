"""Ingest throughput and query latency: this project's pipeline vs plain langchain-chroma, same run.

    python -m benchmarks.retrieval            # writes benchmarks/results/retrieval.json, prints a table

Every measurement runs in its own process, warmed up; the pipelines take turns (which one runs first rotates),
each is run --repeats times and the median over the runs is reported. All use the packaged MiniLM with the
same embedding batch size (embedding.batch_size) and the same torch threads. Two langchain-chroma baselines:
`baseline` is given this project's embedder object (so the two differ only in the pipeline around it), `plain`
embeds as a LangChain user does, through sentence-transformers' `encode` (what langchain-huggingface's
`HuggingFaceEmbeddings` calls; that package itself is not installed, it pins huggingface-hub below 2).
- Ingest: the first files of kb-pagerduty-ir (about --ingest-chunks chunks), from files to a persisted
  store, the model loaded and warmed up before the clock starts. Both get the same chunks (same texts,
  ids and metadata, cut by this project's loaders and chunker inside the timed region). Ours:
  `ingest_paths` (embedding in groups of ingest.write_batch, Chroma upsert, manifest commit, BM25 index).
  Baselines: `Chroma.from_texts(texts, embeddings, metadatas, ids)`.
- Query: stores of 10k and 100k chunks. Embedding 100k chunks is out of reach on a 2-core CPU (about
  12 chunks/s), so the stores are built from real chunk texts (kb-pagerduty-ir and the starter guide)
  embedded once and cached under var/bench/, each vector reused with a small Gaussian perturbation
  (sigma 0.02, renormalized) and its text tagged with its copy number; so every word's document
  frequency is the real corpus's times the number of copies. One store per size, built once by our
  write path (Chroma plus the BM25 index) and opened by both: ours through `build_retriever` (dense and
  hybrid timed alternately, query by query), the baselines through langchain-chroma's
  `Chroma(persist_directory=...)` and `similarity_search(k=4)`. Latency includes embedding the query on
  1 thread (ours and `baseline`: ONNX Runtime for a query since issue 20; `plain`: `encode` in torch);
  queries are the 40 dev questions, 10 warm-up, then --passes timed passes.
- The 1-minute load average is recorded by every worker, and the machine's CPU steal share (time the host gave
  other guests) by every measurement: on a shared machine absolute times move with both, and only figures
  from the same run (ours vs baseline, hybrid vs dense) compare.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from langchain_core.embeddings import Embeddings

from configs.settings import PROJECT_ROOT, EmbeddingSettings, load_settings
from retrieval.embeddings import build_embeddings, load_sentence_model

KB = PROJECT_ROOT.parent / "shared" / "data" / "kb-pagerduty-ir"
CACHE_DIR = PROJECT_ROOT / "var" / "bench"
RESULTS = PROJECT_ROOT / "benchmarks" / "results" / "retrieval.json"
SIGMA = 0.02
COLLECTION = "bench"
K = 4
PIPELINES = ("ours", "baseline", "plain")


class PlainEmbeddings(Embeddings):
    """Embeddings as langchain-huggingface's `HuggingFaceEmbeddings` makes them: `SentenceTransformer.encode`
    on the texts as given (it sorts them by characters itself), normalized for the cosine collection."""

    def __init__(self, settings: EmbeddingSettings) -> None:
        self.model = load_sentence_model(settings.name_or_path, settings.device)
        self.batch_size = settings.batch_size

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.model.encode(
            texts, batch_size=self.batch_size, normalize_embeddings=True, show_progress_bar=False
        ).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


def _embedder(pipeline: str, settings: EmbeddingSettings) -> Embeddings:
    return PlainEmbeddings(settings) if pipeline == "plain" else build_embeddings(settings)


def _settings(persist_dir: Path, **extra: Any):
    return load_settings(
        overrides={"vector_store.persist_dir": persist_dir, "vector_store.collection": COLLECTION, **extra}
    )


def _load() -> float:
    return round(os.getloadavg()[0], 2)


def _real_chunks(limit: int) -> list[tuple[str, str]]:
    """(source, text) of the chunks of the dev corpus and the starter guide (the first `limit`; 0: all)."""
    from ingest.chunking import chunk_document
    from ingest.loaders import load_document

    settings = load_settings()
    chunks = []
    for root in (KB / "docs", settings.ingest.starter_kb_dir):
        for path in sorted(root.rglob("*.md")):
            source = f"{root.name}/{path.relative_to(root).as_posix()}"
            chunks += [(source, c.text) for c in chunk_document(load_document(path), source, settings.ingest)]
    return chunks[:limit] if limit else chunks


def _cached_vectors(cache_dir: Path, limit: int) -> tuple[list[tuple[str, str]], np.ndarray]:
    chunks = _real_chunks(limit)
    cache = cache_dir / f"chunk_vectors_{len(chunks)}.npz"
    if cache.is_file():
        return chunks, np.load(cache)["vectors"]
    from retrieval.embeddings import build_embeddings

    texts = [text for _, text in chunks]
    vectors = np.asarray(build_embeddings(load_settings().embedding).embed_documents(texts), dtype=np.float32)
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.savez(cache, vectors=vectors)
    return chunks, vectors


def _synthetic(size: int, cache_dir: Path, limit: int):
    chunks, vectors = _cached_vectors(cache_dir, limit)
    rng = np.random.default_rng(0)
    picks = np.arange(size) % len(chunks)
    noisy = vectors[picks] + rng.normal(0, SIGMA, (size, vectors.shape[1])).astype(np.float32)
    noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
    texts = [f"{chunks[p][1]} [copy {i // len(chunks)}]" for i, p in enumerate(picks)]
    metadatas = [{"source": f"{chunks[p][0]}#{i // len(chunks)}"} for i, p in enumerate(picks)]
    return [f"c{i}" for i in range(size)], texts, noisy, metadatas


def _store_dir(cache_dir: Path, size: int, limit: int) -> Path:
    return cache_dir / f"store_{size}_{limit or 'all'}_sigma{SIGMA}"


def _questions() -> list[str]:
    rows = [json.loads(line) for line in (KB / "qa.jsonl").read_text().splitlines() if line.strip()]
    return [row["turns"][-1] for row in rows]


def _summary(timings: list[float]) -> dict[str, float]:
    ordered = sorted(timings)
    return {
        "p50_ms": round(statistics.median(ordered), 2),
        "p95_ms": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 2),
        "queries": len(ordered),
    }


def _time_queries(searches: dict[str, Callable[[str], object]], questions: list[str], passes: int) -> dict:
    """Each search warmed up, then timed alternately question by question."""
    for question in questions[:10]:
        for search in searches.values():
            search(question)
    timings: dict[str, list[float]] = {name: [] for name in searches}
    for _ in range(passes):
        for question in questions:
            for name, search in searches.items():
                started = time.perf_counter()
                search(question)
                timings[name].append((time.perf_counter() - started) * 1000)
    return {name: _summary(values) for name, values in timings.items()}


# ---- workers: each runs in its own process and prints one JSON line ----


def _ingest_files(limit: int, workdir: Path) -> Path:
    """Copies of the first corpus files holding about `limit` chunks."""
    from ingest.chunking import chunk_document
    from ingest.loaders import load_document

    docs = workdir / "docs"
    docs.mkdir()
    total = 0
    settings = load_settings()
    for path in sorted((KB / "docs").rglob("*.md")):
        if total >= limit:
            break
        total += len(chunk_document(load_document(path), "x", settings.ingest))
        target = docs / path.relative_to(KB / "docs")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(path.read_bytes())
    return docs


def _chunks_of(docs: Path, settings) -> tuple[list[str], list[str], list[dict[str, Any]]]:
    """The chunks `ingest_paths` makes of the folder: ids, texts, metadata."""
    from ingest.chunking import chunk_document
    from ingest.loaders import load_document
    from ingest.pipeline import discover_files

    ids, texts, metadatas = [], [], []
    for file in discover_files([docs])[0]:
        for chunk in chunk_document(load_document(file.path, settings.ingest), file.source, settings.ingest):
            ids.append(chunk.id)
            texts.append(chunk.text)
            metadatas.append(chunk.metadata)
    return ids, texts, metadatas


def worker_ingest(pipeline: str, limit: int) -> dict[str, Any]:
    load_before = _load()
    with tempfile.TemporaryDirectory() as tmp:
        settings = _settings(Path(tmp) / "chroma")
        docs = _ingest_files(limit, Path(tmp))
        embeddings = _embedder(pipeline, settings.embedding)
        embeddings.embed_documents(["warm-up sentence"] * settings.embedding.batch_size * 2)
        if pipeline == "ours":
            from ingest.pipeline import ingest_paths
            from retrieval.store import open_store

            started = time.perf_counter()
            store = open_store(settings)
            ingest_paths([docs], settings, store=store)
        else:
            from langchain_chroma import Chroma

            started = time.perf_counter()
            ids, texts, metadatas = _chunks_of(docs, settings)
            store = Chroma.from_texts(
                texts,
                embeddings,
                metadatas=metadatas,
                ids=ids,
                collection_name=COLLECTION,
                persist_directory=str(settings.vector_store.persist_dir),
                collection_metadata={"hnsw:space": "cosine"},
            )
        seconds = time.perf_counter() - started
        # What was written, read back after the clock stopped: both must hold the same chunks.
        stored = sorted(store._collection.get(include=[])["ids"])
    return {
        "chunks": len(stored),
        "ids_sha256": hashlib.sha256("\n".join(stored).encode()).hexdigest()[:16],
        "seconds": round(seconds, 2),
        "ingest_chunks_per_s": round(len(stored) / seconds, 2),
        "load_1min": [load_before, _load()],
    }


def worker_build(size: int, cache_dir: Path, limit: int) -> dict[str, Any]:
    """The shared query store of one size, written once by our write path (Chroma and the BM25 index)."""
    from ingest.manifest import FileUpdate, Manifest
    from retrieval.store import index_path, open_store, write_embedded

    ids, texts, vectors, metadatas = _synthetic(size, cache_dir, limit)
    settings = _settings(_store_dir(cache_dir, size, limit))
    started = time.perf_counter()
    write_embedded(open_store(settings), ids, texts, vectors.tolist(), metadatas)
    manifest = Manifest(index_path(settings))
    manifest.commit([FileUpdate("bench", "-", list(zip(ids, texts, strict=True)))])
    manifest.close()
    (settings.vector_store.persist_dir / "complete").write_text(str(size))
    return {"chunks": size, "seconds": round(time.perf_counter() - started, 1)}


def worker_query(pipeline: str, size: int, passes: int, cache_dir: Path, limit: int) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)
    load_before = _load()
    settings = _settings(_store_dir(cache_dir, size, limit))
    if pipeline == "ours":
        from retrieval.retriever import build_retriever

        retriever = build_retriever(settings)
        searches = {
            "dense": lambda q: retriever.search(q, k=K, hybrid=False),
            "hybrid": lambda q: retriever.search(q, k=K, hybrid=True),
        }
    else:
        from langchain_chroma import Chroma

        store = Chroma(
            collection_name=COLLECTION,
            embedding_function=_embedder(pipeline, settings.embedding),
            persist_directory=str(settings.vector_store.persist_dir),
        )
        searches = {"dense": lambda q: store.similarity_search(q, k=K)}
    result = _time_queries(searches, _questions(), passes)
    return {**result, "load_1min": [load_before, _load()]}


def _cpu_ticks() -> tuple[int, int] | None:
    """(steal, total) CPU ticks since boot from /proc/stat (Linux; None elsewhere)."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    return (fields[7] if len(fields) > 7 else 0), sum(fields[:8])


def _run_worker(*args: str) -> dict[str, Any]:
    """One measurement in its own process; the machine's CPU steal share during it is recorded beside it, since
    on a virtual machine time taken by the host's other guests stretches every timing."""
    ticks_before = _cpu_ticks()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False"}
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.retrieval", "--worker", *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"worker {' '.join(args)} failed: {done.stderr[-2000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    ticks_after = _cpu_ticks()
    if ticks_before and ticks_after and ticks_after[1] > ticks_before[1]:
        result["cpu_steal_share"] = round(
            (ticks_after[0] - ticks_before[0]) / (ticks_after[1] - ticks_before[1]), 3
        )
    return result


def _median(runs: list[dict[str, Any]], *path: str) -> float:
    values = []
    for run in runs:
        for key in path:
            run = run[key]
        values.append(run)
    return round(statistics.median(values), 2)


def _ratios(table: dict[str, dict[str, Any]], sizes: list[int]) -> dict[str, float]:
    """Ours over each baseline: ingest chunks/s, and dense query p95 per store size."""
    ratios = {}
    for other in PIPELINES[1:]:
        ours, theirs = table["ours"], table[other]
        ratios[f"ingest_ours_over_{other}"] = round(ours["ingest_chunks_per_s"] / theirs["ingest_chunks_per_s"], 2)
        for size in sizes:
            ratio = ours[str(size)]["query_p95_ms"] / theirs[str(size)]["query_p95_ms"]
            ratios[f"query_p95_ours_over_{other}_{size}"] = round(ratio, 2)
    return ratios


def _rotating(repeats: int) -> list[tuple[str, ...]]:
    """The pipelines in turn, the order rotated each repeat: none always runs first or last."""
    return [PIPELINES[i % len(PIPELINES) :] + PIPELINES[: i % len(PIPELINES)] for i in range(repeats)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ingest-chunks", type=int, default=300)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--repeats", type=int, default=2, help="processes per pipeline and measurement")
    parser.add_argument("--passes", type=int, default=2, help="timed passes over the 40 dev questions")
    parser.add_argument("--base-chunks", type=int, default=0, help="real chunks the stores copy (0: all)")
    parser.add_argument("--cache-dir", type=Path, default=CACHE_DIR)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        kind, *rest = args.worker
        if kind == "ingest":
            result = worker_ingest(rest[0], int(rest[1]))
        elif kind == "build":
            result = worker_build(int(rest[0]), Path(rest[1]), int(rest[2]))
        else:
            result = worker_query(rest[0], int(rest[1]), int(rest[2]), Path(rest[3]), int(rest[4]))
        print(json.dumps(result))
        return 0

    load_start = _load()
    _cached_vectors(args.cache_dir, args.base_chunks)  # embed the real chunks once, before any timing
    builds = {}
    for size in args.sizes:
        if not (_store_dir(args.cache_dir, size, args.base_chunks) / "complete").is_file():
            builds[str(size)] = _run_worker("build", str(size), str(args.cache_dir), str(args.base_chunks))
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {pipeline: {"ingest": []} for pipeline in PIPELINES}
    for order in _rotating(args.repeats):
        for pipeline in order:
            runs[pipeline]["ingest"].append(_run_worker("ingest", pipeline, str(args.ingest_chunks)))
    for size in args.sizes:
        for order in _rotating(args.repeats):
            for pipeline in order:
                runs[pipeline].setdefault(str(size), []).append(
                    _run_worker(
                        "query",
                        pipeline,
                        str(size),
                        str(args.passes),
                        str(args.cache_dir),
                        str(args.base_chunks),
                    )
                )

    table: dict[str, dict[str, Any]] = {}
    for pipeline in PIPELINES:
        table[pipeline] = {"ingest_chunks_per_s": _median(runs[pipeline]["ingest"], "ingest_chunks_per_s")}
        for size in args.sizes:
            row = {
                "query_p50_ms": _median(runs[pipeline][str(size)], "dense", "p50_ms"),
                "query_p95_ms": _median(runs[pipeline][str(size)], "dense", "p95_ms"),
            }
            if pipeline == "ours":
                row["hybrid_p50_ms"] = _median(runs[pipeline][str(size)], "hybrid", "p50_ms")
                row["hybrid_p95_ms"] = _median(runs[pipeline][str(size)], "hybrid", "p95_ms")
                row["hybrid_over_dense_p95"] = round(row["hybrid_p95_ms"] / row["query_p95_ms"], 2)
            table[pipeline][str(size)] = row
    ingest_chunks = {run["chunks"] for p in PIPELINES for run in runs[p]["ingest"]}
    digests = {run["ids_sha256"] for p in PIPELINES for run in runs[p]["ingest"]}
    every_run = [run for pipeline in runs.values() for measured in pipeline.values() for run in measured]
    loads = [value for run in every_run for value in run["load_1min"]]
    steals = [run["cpu_steal_share"] for run in every_run if "cpu_steal_share" in run]
    import chromadb
    import sentence_transformers
    import torch

    output = {
        **table,
        "ratios": _ratios(table, args.sizes),
        "same_ingest_chunks": len(ingest_chunks) == 1 and len(digests) == 1,
        "load_average_1min": {
            "at_start": load_start,
            "min": min(loads),
            "max": max(loads),
            "cores": os.cpu_count(),
        },
        "cpu_steal_share": {"min": min(steals), "max": max(steals)} if steals else None,
        "baseline_what": "langchain-chroma Chroma.from_texts (ingest) and similarity_search (query), this "
        "project's embedder object and batch size, cosine collection",
        "plain_what": "the same langchain-chroma calls with sentence-transformers' encode as the embedder (as "
        "langchain-huggingface's HuggingFaceEmbeddings), the same model and batch size, cosine collection",
        "runs": runs,
        "store_builds": builds,
        "method": __doc__.split("\n\n", 2)[2].strip(),
        "command": "python -m benchmarks.retrieval " + " ".join(argv if argv is not None else sys.argv[1:]),
        "device": f"CPU {platform.processor() or platform.machine()}, {os.cpu_count()} cores, shared with other jobs",
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "chromadb": chromadb.__version__,
            "langchain_chroma": _version("langchain-chroma"),
            "sentence_transformers": sentence_transformers.__version__,
            "tantivy": _version("tantivy"),
        },
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(output, indent=2) + "\n")
    _print_table(table, args.sizes, output["load_average_1min"], output["cpu_steal_share"])
    return 0


def _version(distribution: str) -> str:
    from importlib.metadata import version

    return version(distribution)


def _print_table(
    table: dict[str, dict[str, Any]], sizes: list[int], load: dict[str, Any], steal: dict[str, float] | None
) -> None:
    header = " ".join(f"{f'p50@{s}':>10} {f'p95@{s}':>10} {f'hyb95@{s}':>10}" for s in sizes)
    print(f"{'':10} {'ingest/s':>9} {header}")
    for pipeline in PIPELINES:
        cells = [f"{table[pipeline]['ingest_chunks_per_s']:9.1f}"]
        for size in sizes:
            row = table[pipeline][str(size)]
            hybrid = row.get("hybrid_p95_ms", float("nan"))
            cells.append(f"{row['query_p50_ms']:10.1f} {row['query_p95_ms']:10.1f} {hybrid:10.1f}")
        print(f"{pipeline:10} " + " ".join(cells))
    print(f"1-minute load average during the run: {load['min']}-{load['max']} on {load['cores']} cores")
    if steal:
        print(f"CPU time taken by the host's other guests (steal) per measurement: {steal['min']:.1%}-{steal['max']:.1%}")


if __name__ == "__main__":
    sys.exit(main())
