r"""Input pipeline speed against the train step's consumption, on this machine.

    python -m benchmarks.input_pipeline          # demo config, 40 batches, 20 timed steps
    python -m benchmarks.input_pipeline --quick  # CI smoke

`pipeline_over_step` = examples/s the Grain pipeline produces (with the config's
`data.num_workers`) / examples/s the train step consumes. At >= 3 data never stalls
training, even when the host is busy with other work. The last line is one JSON object.
"""

import argparse
import time

from benchmarks import record
from benchmarks.step_timer import time_train_step
from configs import pretrain
from jarl import batch as batch_lib
from jarl.data import pipeline


def pipeline_examples_per_sec(config, num_batches):
  data = pipeline.make_train_data(
    config.data,
    global_batch_size=config.global_batch_size,
    seed=config.seed,
    process_index=0,
    process_count=1,
    fields=batch_lib.batch_spec(config),
  )
  try:
    next(data)  # worker start-up and first reads are not steady state
    start = time.perf_counter()
    for _ in range(num_batches):
      next(data)
    return num_batches * config.global_batch_size / (time.perf_counter() - start)
  finally:
    data.close()


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--variant", default="demo", choices=pretrain.VARIANTS)
  parser.add_argument("--num_batches", type=int, default=40)
  parser.add_argument("--steps", type=int, default=20)
  parser.add_argument("--quick", action="store_true")
  args = parser.parse_args()
  config = pretrain.get_config(args.variant)
  produced = pipeline_examples_per_sec(config, 5 if args.quick else args.num_batches)
  seconds, _ = time_train_step(config, steps=3 if args.quick else args.steps)
  consumed = config.global_batch_size / seconds
  print(f"pipeline {produced:9.1f} examples/s ({config.data.num_workers} workers)")
  print(f"step     {consumed:9.1f} examples/s (batch {config.global_batch_size})")
  record.emit(
    f"input_pipeline_{args.variant}",
    dict(
      variant=args.variant,
      num_workers=config.data.num_workers,
      pipeline_examples_per_sec=produced,
      step_examples_per_sec=consumed,
      pipeline_over_step=produced / consumed,
    ),
    args,
  )


if __name__ == "__main__":
  main()
