"""Grain pipelines: determinism, sharding, skipping bad records, exact state round-trip."""

import io
import json

from array_record.python.array_record_module import ArrayRecordWriter
import ml_collections
import numpy as np
from PIL import Image
import pytest

from jarl.data import pipeline, sources, tokenizer

TOK = tokenizer.load("shapes")


def _png(value: int) -> bytes:
  buf = io.BytesIO()
  Image.fromarray(np.full([20, 24, 3], value, np.uint8)).save(buf, format="PNG")
  return buf.getvalue()


def _words(k: int) -> str:
  # Distinct captions the shapes tokenizer spells exactly.
  colours, shapes_ = (
    ["red", "green", "blue", "yellow", "purple"],
    ["circle", "square", "triangle", "diamond"],
  )
  return f"a {colours[k % 5]} {shapes_[(k // 5) % 4]} and {['one', 'two', 'three'][k // 20]} shapes"


def _write(path, records):
  w = ArrayRecordWriter(str(path), "group_size:1")
  for r in records:
    w.write(r)
  w.close()


@pytest.fixture(scope="module")
def record_files(tmp_path_factory):
  root = tmp_path_factory.mktemp("records")
  good = [sources.encode_record({"captions": [_words(k)]}, _png(8 * k)) for k in range(30)]
  _write(root / "good.arrayrecord", good)
  bad = [sources.encode_record({"captions": [_words(k)]}, _png(8 * k)) for k in range(12)]
  bad += [b"garbage", b"JRL1\xff\xff\xff\xff"]  # bad_record
  bad += [sources.encode_record({"captions": ["a red circle"]}, b"\x89PNG broken")] * 2  # bad_image
  bad += [sources.encode_record({"questions": ["what"]}, _png(1))] * 2  # missing_field
  bad += [sources.encode_record({"captions": ["   "]}, _png(1))] * 2  # empty_text
  _write(root / "mixed.arrayrecord", bad)
  _write(root / "allbad.arrayrecord", [b"nope"] * 5)
  return root


def _config(sources_, **kw):
  d = ml_collections.ConfigDict(
    dict(
      image_size=16,
      tokenizer="shapes",
      text_len=12,
      target_len=12,
      shuffle_seed=0,
      num_workers=0,
      read_threads=0,
      augment=True,
      sources=sources_,
      sampling=dict(policy="loss", update_every=2, tau=1.0, epsilon=0.05, smoothing=0.5),
    )
  )
  d.update(kw)
  return d


def _mixed_config(files, **kw):
  return _config(
    [
      dict(name="shapes_cap", source="shapes:train", task="caption", weight=1.0),
      dict(name="shapes_vqa", source="shapes:train", task="vqa", weight=1.0),
      dict(
        name="records",
        source=f"arrayrecord:{files}/mixed.arrayrecord",
        task="prefix_lm",
        weight=2.0,
      ),
    ],
    **kw,
  )


def _take(td, n, feed=True, start=1):
  out = []
  for step in range(start, start + n):
    b = next(td)
    out.append(b)
    if feed:  # synthetic per-source losses so the adaptive weights really move
      td.update(b["dataset_id"], 1.0 + b["dataset_id"].astype(np.float32), step)
  return out


def _assert_same(xs, ys):
  assert len(xs) == len(ys)
  for x, y in zip(xs, ys):
    assert x.keys() == y.keys()
    for k in x:
      np.testing.assert_array_equal(x[k], y[k], err_msg=k)


def test_batch_layout_and_values(record_files):
  td = pipeline.make_train_data(
    _mixed_config(record_files), global_batch_size=16, seed=0, process_index=0, process_count=1
  )
  b = next(td)
  td.close()
  assert b["image"].dtype == np.float32 and b["image"].shape == (16, 16, 16, 3)
  assert -1 <= b["image"].min() < b["image"].max() <= 1
  assert b["text"].dtype == b["target"].dtype == np.int32 and b["target"].shape == (16, 12)
  assert b["dataset_id"].dtype == np.int32 and set(b["dataset_id"]) <= {0, 1, 2}
  assert b["mask"].dtype == bool and b["mask"].all()
  for t in b["target"]:  # eos right after the last real id, then padding
    n = int(np.sum(t != 0))
    assert t[n - 1] == TOK.eos_id and np.all(t[n:] == 0)
  for ids, text in zip(b["dataset_id"], b["text"]):
    assert TOK.decode(text).split()[0] == ["caption", "answer", "continue"][ids]


def test_same_seed_same_batches_other_seed_other_batches(record_files):
  cfg = _mixed_config(record_files)
  runs = []
  for seed in (0, 0, 1):
    td = pipeline.make_train_data(
      cfg, global_batch_size=8, seed=seed, process_index=0, process_count=1
    )
    runs.append(_take(td, 3))
    td.close()
  _assert_same(runs[0], runs[1])
  assert not np.array_equal(runs[0][0]["image"], runs[2][0]["image"])


def test_state_round_trip_resumes_the_exact_sequence(record_files):
  cfg = _mixed_config(record_files)
  kw = dict(global_batch_size=8, seed=3, process_index=0, process_count=1)
  a = pipeline.make_train_data(cfg, **kw)
  _take(a, 5)
  state = json.loads(json.dumps(a.get_state()))
  stats_at_save = a.stats()
  expected = _take(a, 6, start=6)
  b = pipeline.make_train_data(cfg, **kw)
  b.set_state(state)
  assert b.stats() == stats_at_save
  _assert_same(_take(b, 6, start=6), expected)
  assert a.stats() == b.stats()
  assert a.stats()["data/weight/records"] != pytest.approx(0.5)  # weights did adapt
  a.close()
  b.close()


def test_state_saved_at_the_end_of_a_chunk_resumes_at_the_next_one(record_files):
  # One source of good records and a batch of exactly one chunk: the state is saved with
  # the row position at the chunk's end (a preempted fine-tuning crashed here on resume).
  cfg = _config(
    [
      dict(
        name="good",
        source=f"arrayrecord:{record_files}/good.arrayrecord",
        task="caption",
        weight=1.0,
      )
    ]
  )
  kw = dict(global_batch_size=pipeline.CHUNK, seed=0, process_index=0, process_count=1)
  a = pipeline.make_train_data(cfg, **kw)
  _take(a, 1)
  state = json.loads(json.dumps(a.get_state()))
  expected = _take(a, 2, start=2)
  b = pipeline.make_train_data(cfg, **kw)
  b.set_state(state)
  _assert_same(_take(b, 2, start=2), expected)
  a.close()
  b.close()


def test_process_shards_are_disjoint_and_cover_the_source(record_files):
  cfg = _config(
    [
      dict(
        name="r", source=f"arrayrecord:{record_files}/good.arrayrecord", task="caption", weight=1.0
      )
    ]
  )
  seen = []
  for p in range(3):
    ds, n = pipeline.train_source_dataset(cfg, 0, seed=0, process_index=p, process_count=3)
    it = iter(ds)
    idx = np.concatenate([next(it)["index"] for _ in range(-(-n // pipeline.CHUNK))])[:n]
    assert len(set(idx)) == n == 10
    seen.append(set(idx.tolist()))
  assert not (seen[0] & seen[1]) and not (seen[1] & seen[2]) and not (seen[0] & seen[2])
  assert set.union(*seen) == set(range(30))


def test_bad_records_are_skipped_and_counted(record_files):
  cfg = _config(
    [
      dict(
        name="m", source=f"arrayrecord:{record_files}/mixed.arrayrecord", task="caption", weight=1.0
      )
    ]
  )
  ev = pipeline.make_eval_data(
    cfg,
    dict(
      source=f"arrayrecord:{record_files}/mixed.arrayrecord",
      task="caption",
      num_examples=20,
      batch_size=8,
    ),
    batch_size=8,
    process_index=0,
    process_count=1,
  )
  batches = list(ev)
  assert ev.skipped == {"bad_record": 2, "bad_image": 2, "missing_field": 2, "empty_text": 2}
  assert sum(int(b["mask"].sum()) for b in batches) == 12
  td = pipeline.make_train_data(cfg, global_batch_size=24, seed=0, process_index=0, process_count=1)
  b = next(td)  # two epochs' worth of good records
  stats = td.stats()
  td.close()
  assert {TOK.decode(t) for t in b["target"]} == {_words(k) for k in range(12)}
  for reason in pipeline.SKIP_REASONS:
    assert 2 <= stats[f"data/skipped/{reason}"] <= 4


def test_a_source_with_nothing_usable_fails_naming_it(record_files):
  spec = f"arrayrecord:{record_files}/allbad.arrayrecord"
  cfg = _config([dict(name="dead", source=spec, task="caption", weight=1.0)])
  td = pipeline.make_train_data(cfg, global_batch_size=4, seed=0, process_index=0, process_count=1)
  with pytest.raises(RuntimeError, match="allbad.arrayrecord.*dead.*none of the 5 records"):
    next(td)
  td.close()


def test_a_small_shard_with_bad_images_yields_its_good_records_and_logs_the_bad(tmp_path, caplog):
  # Each epoch is reshuffled, so the 2 bad records can end one epoch and start the next:
  # 4 bad rows in a row from a 4-record shard. This used to fail as "nothing usable"
  # (with seed 0 at the 5th batch).
  recs = [
    sources.encode_record(
      {"captions": [_words(k)], "key": f"photo{k}.jpg"},
      _png(8 * k) if k % 2 == 0 else b"\xff\xd8\xff truncated phone photo",
    )
    for k in range(4)
  ]
  _write(tmp_path / "four.arrayrecord", recs)
  spec = f"arrayrecord:{tmp_path}/four.arrayrecord"
  cfg = _config([dict(name="four", source=spec, task="caption", weight=1.0)])
  td = pipeline.make_train_data(cfg, global_batch_size=8, seed=0, process_index=0, process_count=1)
  with caplog.at_level("WARNING"):
    batches = [next(td) for _ in range(10)]  # 80 examples: 40 epochs of 2 usable records
  stats = td.stats()
  td.close()
  assert {TOK.decode(t) for b in batches for t in b["target"]} == {_words(0), _words(2)}
  assert stats["data/skipped/bad_image"] >= 70 and stats["data/examples"] == 80
  logged = sorted(r.getMessage() for r in caplog.records if "skipped record" in r.getMessage())
  assert len(logged) == 2  # each bad record named once, however often it comes round
  for m, k in zip(logged, (1, 3)):
    assert "four.arrayrecord' (four)" in m
    assert m.endswith(f"skipped record {k} (key 'photo{k}.jpg'): bad_image")


def test_only_the_first_few_bad_records_of_a_source_are_named(record_files, caplog):
  spec = f"arrayrecord:{record_files}/mixed.arrayrecord"
  cfg = _config([dict(name="m", source=spec, task="caption", weight=1.0)])
  ev = pipeline.make_eval_data(
    cfg,
    dict(source=spec, task="caption", batch_size=8),
    batch_size=8,
    process_index=0,
    process_count=1,
  )
  with caplog.at_level("WARNING"):
    list(ev)
    list(ev)  # a second pass names nothing again
  logged = [r.getMessage() for r in caplog.records if "skipped record" in r.getMessage()]
  assert sum(ev.skipped.values()) == 8 and len(logged) == pipeline.LOG_BAD
  assert "record 12: bad_record" in logged[0] and "config.evals.eval.source" in logged[0]
  assert "record 14: bad_image" in logged[2] and "only counted" in logged[-1]


def test_eval_counts_every_example_once_across_processes(record_files):
  spec = f"arrayrecord:{record_files}/good.arrayrecord"
  cfg = _config([dict(name="r", source=spec, task="caption", weight=1.0)])
  eval_cfg = dict(source=spec, task="caption", num_examples=17, batch_size=6)
  texts, lengths = [], []
  for p in range(3):
    ev = pipeline.make_eval_data(cfg, eval_cfg, batch_size=6, process_index=p, process_count=3)
    first = [TOK.decode(t) for b in ev for t, m in zip(b["target"], b["mask"]) if m]
    again = [TOK.decode(t) for b in ev for t, m in zip(b["target"], b["mask"]) if m]
    assert first == again  # re-iterable from the start
    lengths.append(len(list(ev)))
    for b in ev:
      assert b["image"].shape[0] == 2 and not b["image"][~b["mask"]].any()
      assert np.all(b["dataset_id"] == 0)
    texts += first
  assert sorted(texts) == sorted(_words(k) for k in range(17))
  assert lengths == [3, 3, 3]


def test_vqa_eval_batches_carry_reference_answers():
  cfg = _config([dict(name="s", source="shapes:validation", task="vqa", weight=1.0)])
  ev = pipeline.make_eval_data(
    cfg,
    dict(source="shapes:validation", task="vqa", num_examples=8, batch_size=8),
    batch_size=8,
    process_index=0,
    process_count=1,
  )
  (b,) = list(ev)
  for t, ans in zip(b["target"], b["answers"]):
    assert TOK.decode(t) == ans[0]
  assert {a[0] for a in b["answers"]} <= set(
    [
      "yes",
      "no",
      "small",
      "large",
      "red",
      "green",
      "blue",
      "yellow",
      "purple",
      "orange",
      "circle",
      "square",
      "triangle",
      "diamond",
      "zero",
      "one",
      "two",
      "three",
      "four",
      "five",
      "six",
    ]
  )


def test_flip_mirrors_the_image_and_swaps_left_and_right():
  assert pipeline._swap_left_right("a red circle left of a square, right?") == (
    "a red circle right of a square, left?"
  )
  image = np.zeros([10, 10, 3], np.uint8)
  image[:, :3] = 255
  for seed in range(20):
    out, flipped = pipeline.preprocess_image(image, 10, np.random.default_rng(seed))
    bright_left = out[:, :3].mean() > out[:, -3:].mean()
    assert bright_left != flipped


def test_unknown_source_spec_names_the_config_key():
  cfg = _config([dict(name="x", source="webdataset:/tmp/x", task="caption", weight=1.0)])
  with pytest.raises(ValueError, match=r"config.data.sources\[0\].source='webdataset:/tmp/x'"):
    pipeline.make_train_data(cfg, global_batch_size=4, seed=0, process_index=0, process_count=1)
  cfg = _config([dict(name="x", source="shapes:train", task="captioning", weight=1.0)])
  with pytest.raises(ValueError, match=r"config.data.sources\[0\].task='captioning'"):
    pipeline.make_train_data(cfg, global_batch_size=4, seed=0, process_index=0, process_count=1)


def test_canonical_maps_common_tfds_field_names():
  rec = sources.canonical({"image": b"x", "captions": {"text": np.array([b"a cat", b"a dog"])}})
  assert rec["captions"] == ["a cat", "a dog"]
  rec = sources.canonical(
    {"image": b"x", "question": b"what colour", "answers": np.array([b"red", b"red", b"blue"])}
  )
  assert rec["questions"] == ["what colour"] and rec["answers"] == [["red", "red", "blue"]]
  rec = sources.canonical(
    {"image": b"x", "hypothesis": "a cat sleeps", "label": 2},
    label_names=["entailment", "neutral", "contradiction"],
  )
  assert rec["hypotheses"] == ["a cat sleeps"] and rec["labels"] == ["contradiction"]


@pytest.mark.parametrize("workers,threads", [(0, 4), (2, 0)])
def test_state_round_trip_with_prefetch_threads_and_worker_processes(
  record_files, workers, threads
):
  cfg = _mixed_config(record_files, num_workers=workers, read_threads=threads)
  serial = _mixed_config(record_files)
  kw = dict(global_batch_size=8, seed=3, process_index=0, process_count=1)
  a = pipeline.make_train_data(cfg, **kw)
  _take(a, 3)
  state = json.loads(json.dumps(a.get_state()))
  expected = _take(a, 3, start=4)
  a.close()
  b = pipeline.make_train_data(cfg, **kw)
  b.set_state(state)
  _assert_same(_take(b, 3, start=4), expected)
  b.close()
  if workers == 0:  # threads never change the data; worker processes batch their own
    c = pipeline.make_train_data(serial, **kw)  # slices, so the order depends on their number
    _assert_same(_take(c, 6)[3:], expected)
    c.close()
