"""Ingest throughput and query latency: this project's pipeline vs plain langchain-chroma, same run.

    python -m benchmarks.retrieval            # writes benchmarks/results/retrieval.json, prints a table

Every measurement runs in its own process, ours and the baseline alternating. Both use the same
chunks, the same packaged MiniLM embedder and the same embedding batch size.
- Ingest: the first files of kb-pagerduty-ir (about --ingest-chunks chunks), end to end from files
  (ours: `ingest_paths`; baseline: the same chunks through `Chroma.from_texts`), model already loaded.
- Query: stores of 10k and 100k chunks. Embedding 100k chunks is out of reach on a 2-core CPU (about
  12 chunks/s), so the stores are built from real chunk texts (kb-pagerduty-ir and the starter guide)
  embedded once and cached under var/, each vector reused with a small Gaussian perturbation
  (sigma 0.02, renormalized) and its text tagged with its copy number. Latency includes embedding the
  query (torch on 1 thread); queries are the dev questions, warmed up, then timed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from configs.settings import PROJECT_ROOT, load_settings

KB = PROJECT_ROOT.parent / "shared" / "data" / "kb-pagerduty-ir"
CACHE = PROJECT_ROOT / "var" / "bench" / "chunk_vectors.npz"
RESULTS = PROJECT_ROOT / "benchmarks" / "results" / "retrieval.json"
SIGMA = 0.02


def _settings(persist_dir: Path, **extra: Any):
    return load_settings(overrides={"vector_store.persist_dir": persist_dir, "vector_store.collection": "bench",
                                    **extra})


def _real_chunks() -> list[tuple[str, str]]:
    """(source, text) of every chunk of the dev corpus and the starter guide."""
    from ingest.chunking import chunk_document
    from ingest.loaders import load_document

    settings = load_settings()
    chunks = []
    for root in (KB / "docs", settings.ingest.starter_kb_dir):
        for path in sorted(root.rglob("*.md")):
            source = f"{root.name}/{path.relative_to(root).as_posix()}"
            chunks += [(source, c.text) for c in chunk_document(load_document(path), source, settings.ingest)]
    return chunks


def _cached_vectors() -> tuple[list[tuple[str, str]], np.ndarray]:
    chunks = _real_chunks()
    if CACHE.is_file():
        cached = np.load(CACHE)
        if cached["vectors"].shape[0] == len(chunks):
            return chunks, cached["vectors"]
    from retrieval.embeddings import build_embeddings

    vectors = np.asarray(build_embeddings(load_settings().embedding).embed_documents([t for _, t in chunks]),
                         dtype=np.float32)
    CACHE.parent.mkdir(parents=True, exist_ok=True)
    np.savez(CACHE, vectors=vectors)
    return chunks, vectors


def _synthetic(size: int) -> tuple[list[str], list[str], np.ndarray, list[dict[str, Any]]]:
    chunks, vectors = _cached_vectors()
    rng = np.random.default_rng(0)
    picks = np.arange(size) % len(chunks)
    noisy = vectors[picks] + rng.normal(0, SIGMA, (size, vectors.shape[1])).astype(np.float32)
    noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
    texts = [f"{chunks[p][1]} [copy {i // len(chunks)}]" for i, p in enumerate(picks)]
    sources = [f"{chunks[p][0]}#{i // len(chunks)}" for i, p in enumerate(picks)]
    ids = [f"c{i}" for i in range(size)]
    return ids, texts, noisy, [{"source": s} for s in sources]


def _questions() -> list[str]:
    rows = [json.loads(line) for line in (KB / "qa.jsonl").read_text().splitlines() if line.strip()]
    return [row["turns"][-1] for row in rows]


def _time_queries(search, questions: list[str], repeats: int) -> dict[str, float]:
    for question in questions[:10]:  # warm-up
        search(question)
    timings = []
    for _ in range(repeats):
        for question in questions:
            started = time.perf_counter()
            search(question)
            timings.append((time.perf_counter() - started) * 1000)
    timings.sort()
    return {"p50_ms": round(statistics.median(timings), 2), "p95_ms": round(timings[int(0.95 * len(timings))], 2),
            "queries": len(timings)}


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


def worker_ingest(pipeline: str, limit: int) -> dict[str, Any]:
    from retrieval.embeddings import build_embeddings

    with tempfile.TemporaryDirectory() as tmp:
        settings = _settings(Path(tmp) / "chroma")
        docs = _ingest_files(limit, Path(tmp))
        embeddings = build_embeddings(settings.embedding)
        embeddings.embed_documents(["warm-up"])
        if pipeline == "ours":
            from ingest.pipeline import ingest_paths
            from retrieval.store import open_store

            store = open_store(settings)
            started = time.perf_counter()
            chunks = ingest_paths([docs], settings, store=store).chunks_added
        else:
            from langchain_chroma import Chroma
            from langchain_text_splitters import Language, RecursiveCharacterTextSplitter

            splitter = RecursiveCharacterTextSplitter.from_language(
                Language.MARKDOWN, chunk_size=settings.ingest.chunk_size, chunk_overlap=settings.ingest.chunk_overlap)
            started = time.perf_counter()
            texts, metadatas = [], []
            for path in sorted(docs.rglob("*.md")):
                pieces = splitter.split_text(path.read_text())
                texts += pieces
                metadatas += [{"source": str(path)}] * len(pieces)
            Chroma.from_texts(texts, embeddings, metadatas=metadatas, collection_name="bench",
                              persist_directory=str(Path(tmp) / "baseline"),
                              collection_metadata={"hnsw:space": "cosine"})
            chunks = len(texts)
        seconds = time.perf_counter() - started
    return {"chunks": chunks, "seconds": round(seconds, 2), "ingest_chunks_per_s": round(chunks / seconds, 2)}


def worker_query(pipeline: str, size: int, repeats: int) -> dict[str, Any]:
    import torch

    torch.set_num_threads(1)
    ids, texts, vectors, metadatas = _synthetic(size)
    questions = _questions()
    with tempfile.TemporaryDirectory() as tmp:
        settings = _settings(Path(tmp) / "chroma")
        if pipeline == "ours":
            from ingest.manifest import FileUpdate, Manifest
            from retrieval.retriever import build_retriever
            from retrieval.store import index_path, open_store, write_embedded

            store = open_store(settings)
            write_embedded(store, ids, texts, vectors.tolist(), metadatas)
            manifest = Manifest(index_path(settings))
            manifest.commit([FileUpdate("bench", "-", list(zip(ids, texts, strict=True)))])
            manifest.close()
            retriever = build_retriever(settings, store)
            result = {"dense": _time_queries(lambda q: retriever.search(q, k=4, hybrid=False), questions, repeats),
                      "hybrid": _time_queries(lambda q: retriever.search(q, k=4, hybrid=True), questions, repeats)}
        else:
            from langchain_chroma import Chroma

            from retrieval.embeddings import build_embeddings

            store = Chroma(collection_name="bench", embedding_function=build_embeddings(settings.embedding),
                           persist_directory=str(Path(tmp) / "baseline"),
                           collection_metadata={"hnsw:space": "cosine"})
            for start in range(0, size, 5000):
                store._collection.add(ids=ids[start:start + 5000], documents=texts[start:start + 5000],
                                      embeddings=vectors[start:start + 5000].tolist(),
                                      metadatas=metadatas[start:start + 5000])
            result = {"dense": _time_queries(lambda q: store.similarity_search(q, k=4), questions, repeats)}
    return result


def _run_worker(*args: str) -> dict[str, Any]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False"}
    done = subprocess.run([sys.executable, "-m", "benchmarks.retrieval", "--worker", *args], cwd=PROJECT_ROOT,
                          env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ingest-chunks", type=int, default=300)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--repeats", type=int, default=3, help="passes over the 40 dev questions")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        kind, pipeline, *rest = args.worker
        result = (worker_ingest(pipeline, int(rest[0])) if kind == "ingest"
                  else worker_query(pipeline, int(rest[0]), int(rest[1])))
        print(json.dumps(result))
        return 0

    _cached_vectors()  # embed the real chunks once, before any timing
    results: dict[str, Any] = {"ours": {}, "baseline": {}}
    for pipeline in ("baseline", "ours"):
        results[pipeline]["ingest"] = _run_worker("ingest", pipeline, str(args.ingest_chunks))
    for size in args.sizes:
        for pipeline in ("ours", "baseline"):
            results[pipeline][str(size)] = _run_worker("query", pipeline, str(size), str(args.repeats))
    table = {}
    for pipeline in ("ours", "baseline"):
        table[pipeline] = {"ingest_chunks_per_s": results[pipeline]["ingest"]["ingest_chunks_per_s"]}
        for size in args.sizes:
            row = results[pipeline][str(size)]
            table[pipeline][str(size)] = {"query_p50_ms": row["dense"]["p50_ms"], "query_p95_ms": row["dense"]["p95_ms"]}
            if "hybrid" in row:
                table[pipeline][str(size)].update(hybrid_p50_ms=row["hybrid"]["p50_ms"], hybrid_p95_ms=row["hybrid"]["p95_ms"])
    import chromadb
    import langchain_chroma
    import sentence_transformers
    import torch

    output = {
        **table,
        "raw": results,
        "method": __doc__.split("\n\n", 2)[2].strip(),
        "baseline": {**table["baseline"], "what": "langchain-chroma Chroma.from_texts (ingest) and similarity_search "
                     "(query), same embedder object and batch size, cosine collection"},
        "command": "python -m benchmarks.retrieval " + " ".join(argv if argv is not None else sys.argv[1:]),
        "device": f"CPU {platform.processor() or platform.machine()}, {os.cpu_count()} cores, shared with other jobs",
        "versions": {"python": platform.python_version(), "torch": torch.__version__, "chromadb": chromadb.__version__,
                     "langchain_chroma": langchain_chroma.__version__ if hasattr(langchain_chroma, "__version__") else "?",
                     "sentence_transformers": sentence_transformers.__version__},
        "date": time.strftime("%Y-%m-%d"),
    }
    RESULTS.write_text(json.dumps(output, indent=2) + "\n")
    print(f"{'':10} {'ingest/s':>9} " + " ".join(f"{f'p50@{s}':>10} {f'p95@{s}':>10} {f'hyb95@{s}':>10}" for s in args.sizes))
    for pipeline in ("ours", "baseline"):
        cells = [f"{table[pipeline]['ingest_chunks_per_s']:9.1f}"]
        for size in args.sizes:
            row = table[pipeline][str(size)]
            cells.append(f"{row['query_p50_ms']:10.1f} {row['query_p95_ms']:10.1f} {row.get('hybrid_p95_ms', float('nan')):10.1f}")
        print(f"{pipeline:10} " + " ".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
