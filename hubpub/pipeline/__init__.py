"""The stages composed: fetch -> build -> port -> export -> parity -> pack -> formats, per variant
(`build`), over the collection with a worker pool, shards or a Dask cluster (`collection`, `workers`,
`cluster`), skipping what is up to date (`incremental`); parity on demand (`checks`). These modules only
sequence library stages; the work is done in the stage modules."""

from hubpub.pipeline.build import (
    Timings,
    build_ported,
    build_variant,
    default_formats,
    default_parity_sizes,
    feature_extractor_of,
    has_reference,
    measure_preprocess_gap,
)
from hubpub.pipeline.checks import parity_for_variant, verify_parity_report
from hubpub.pipeline.cluster import RESOURCE, Scheduler, parse_scheduler
from hubpub.pipeline.collection import (
    CollectionResult,
    build_all,
    build_collection,
    clean_interrupted,
    collected,
    demo_checkpoint,
    execute_notebooks,
    select_shard,
)
from hubpub.pipeline.incremental import LOCK_NAME, check_pinned, inputs_key, read_lock, up_to_date, write_lock
from hubpub.pipeline.workers import VariantJob, VariantResult, run_variant, worker_threads

__all__ = [
    "LOCK_NAME", "RESOURCE", "CollectionResult", "Scheduler", "Timings", "VariantJob", "VariantResult",
    "build_all", "build_collection", "build_ported", "build_variant", "check_pinned",
    "clean_interrupted", "collected", "default_formats", "default_parity_sizes", "demo_checkpoint",
    "execute_notebooks", "feature_extractor_of", "has_reference", "inputs_key", "measure_preprocess_gap",
    "parity_for_variant", "parse_scheduler", "read_lock", "run_variant", "select_shard", "up_to_date",
    "verify_parity_report", "worker_threads", "write_lock",
]
