"""``groundbench perf``: how close a run comes to the speed of the model, and how flat its memory.

The physical limit of a run is the model passes its method needs (Grad-CAM: one forward and one
backward to the target layer per batch; RISE: ``n_masks`` forwards per image). Everything else a
run does (decode and resize images from disk, attribute, upsample maps to each image, score
every metric, write the rows) should hide behind those passes. This package measures, in one
process and one run, for a ResNet-50 (:mod:`bench.perf.resnet`, random weights: speed does not
depend on them) and EfficientNet-Lite0 at 224x224, per method and batch size:

1. **limit**: the method's model passes alone, on inputs already on the device;
2. **pipeline**: the real engine (:func:`bench.engine.run_config`) on a folder of COCO-sized
   JPEGs (640x480, polygon masks, COCO layout, read by the ``coco`` loader in DataLoader
   workers), every applicable registered metric, rows written to disk;

and prints images/s of both, their ratio, and the share of the pipeline's time in each engine
stage (:class:`StageTimer`, the engine's ``timer`` hook). Both are steady-state rates: the first
batch (worker start-up, allocator warm-up, lazy initialisation) is not counted.

It also prints the peak resident memory of a small and a large harbor run (memory must not grow
with the number of samples), the metrics' per-sample cost beside Quantus's equivalents (through
``benchmarks/metrics_bench.py`` where the source checkout has it and Quantus is installed), and
the host synchronisations found in the loop (:class:`SyncDetector`: device-agnostic, so it
runs on a CPU too; on CUDA, also ``torch.cuda.set_sync_debug_mode``).

Timing conventions: on CUDA the throughput pass never synchronises except where the engine does
(once per batch, for the score rows); stage shares come from a second pass whose timer
synchronises at every stage boundary, because without that a stage's time is only the host's
time to queue its kernels. On a CPU the one pass gives both.

One module per job:

- :mod:`bench.perf.resnet`: the ResNet-50 (torchvision's layout, no torchvision);
- :mod:`bench.perf.coco_folder`: the folder of COCO-sized JPEGs the pipeline reads;
- :mod:`bench.perf.timing`: :class:`StageTimer`, the engine's ``timer`` hook;
- :mod:`bench.perf.limit`: the method's model passes alone (the limit) and the method alone;
- :mod:`bench.perf.pipeline`: the engine from files to rows, at steady state;
- :mod:`bench.perf.syncs`: :class:`SyncDetector`, host synchronisations in the loop;
- :mod:`bench.perf.memory`: peak resident memory of a harbor run in a fresh process;
- :mod:`bench.perf.quantus_timing`: metric cost beside Quantus;
- :mod:`bench.perf.benchmark`: all of them in one :class:`PerfReport`;
- :mod:`bench.perf.render`: that report as text and JSON.

The package sits above the engine and below the CLI: it imports nothing from :mod:`bench.cli`.
"""

from bench.perf.benchmark import PerfOptions, PerfReport, Row, quick_options, run_benchmark
from bench.perf.coco_folder import perf_classes, targets_per_image, write_image_folder
from bench.perf.limit import measure_limit, measure_method, model_passes
from bench.perf.memory import harbor_memory_config, own_peak_rss_mb, peak_rss_mb
from bench.perf.pipeline import PipelineResult, measure_pipeline, model_entry, pipeline_config, pipeline_metrics
from bench.perf.quantus_timing import metrics_vs_quantus
from bench.perf.render import render, to_json
from bench.perf.resnet import SPEC as RESNET50_SPEC
from bench.perf.resnet import resnet50
from bench.perf.syncs import SyncCheck, SyncDetector, SyncSite, find_syncs
from bench.perf.timing import STAGES, StageTimer, synchronize

__all__ = [
    "PerfOptions", "PerfReport", "Row", "quick_options", "run_benchmark",
    "perf_classes", "targets_per_image", "write_image_folder",
    "measure_limit", "measure_method", "model_passes",
    "harbor_memory_config", "own_peak_rss_mb", "peak_rss_mb",
    "PipelineResult", "measure_pipeline", "model_entry", "pipeline_config", "pipeline_metrics",
    "metrics_vs_quantus", "render", "to_json", "RESNET50_SPEC", "resnet50",
    "SyncCheck", "SyncDetector", "SyncSite", "find_syncs", "STAGES", "StageTimer", "synchronize",
]
