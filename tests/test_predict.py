"""jarl.predict: checkpoint directory -> answers for image files, equal to the evaluator's."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image
import pytest
import train_fixtures

from configs import finetune_vqa
from jarl import checkpoint, predict, sharding, train
from jarl.data import shapes
from jarl.evaluation import registry
from jarl.models import decode

NUM = 4


def _config():
  config = train_fixtures.tiny_config(data__text_len=24, model__text__max_len=24)
  config.evals = {
    "val": dict(
      type="vqa",
      task="vqa",
      source="shapes:validation",
      every_steps=1,
      num_examples=NUM,
      batch_size=8,
    )
  }
  return config


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  """A workdir laid out as training leaves it (config.json + checkpoints/<step>), holding
  perturbed tiny-model parameters (so answers differ between inputs), and the evaluator's
  records for the first NUM validation scenes with those parameters."""
  workdir = tmp_path_factory.mktemp("predict_run")
  config = _config()
  mesh = sharding.make_mesh(config.mesh)
  with jax.set_mesh(mesh):
    trainer = train.make_trainer(config, mesh)
    state = train.initial_state(config, trainer)
    rng = np.random.default_rng(0)
    params = jax.tree.map(
      lambda x: jax.device_put(
        np.asarray(x) + rng.normal(0, 0.3, x.shape).astype(x.dtype), x.sharding
      ),
      state.params,
    )
    state = state.replace(params=params)
    ckpt = checkpoint.Checkpointer(str(workdir), every_steps=1, keep=1)
    ckpt.save(7, state, {})
    ckpt.close()
    train.save_config(config, str(workdir))
    (ev,) = registry.make_evaluators(
      config, model=trainer.model, mesh=mesh, param_shardings=trainer.state_sharding.params
    )
    records = ev.predictions(params)
  images = []
  for i in range(NUM):
    path = workdir / f"scene_{i}.png"
    Image.fromarray(shapes.example("validation", i, image_size=16)["image"]).save(path)
    images.append(str(path))
  questions = [r["text"].removeprefix("answer ") for r in records]
  return workdir, records, images, questions


def test_predictor_answers_like_the_evaluator(run, caplog):
  workdir, records, images, questions = run
  expected = [r["prediction"] for r in records]
  assert len(set(expected)) > 1  # the check would be empty if every answer were alike
  p = predict.Predictor.from_checkpoint(str(workdir), batch_size=3)  # 2 batches, 2 pad rows
  assert not caplog.records  # Orbax's "Metadata file does not exist" is not a problem here
  assert p.answer(images, questions) == expected
  assert p.answer(images[1], questions[1]) == expected[1]  # one image -> one string
  # A step directory works as well as the workdir.
  step_dir = os.path.join(workdir, "checkpoints", "7")
  assert predict.Predictor.from_checkpoint(step_dir).answer(images, questions) == expected
  captions = p.caption(images)
  assert len(captions) == NUM and all(isinstance(c, str) for c in captions)


def test_image_formats_modes_and_sizes_go_through_the_eval_preprocessing(tmp_path):
  rgb = shapes.example("validation", 0, image_size=64)["image"]
  base = Image.fromarray(rgb)
  ref = predict.read_image(base, 16)
  assert ref.shape == (16, 16, 3) and ref.dtype == np.float32
  assert -1.0 <= ref.min() and ref.max() <= 1.0
  files = {"rgb.png": base, "rgba.png": base.convert("RGBA"), "lossless.webp": base}
  for name, im in files.items():
    kwargs = dict(lossless=True) if name.endswith("webp") else {}
    im.save(tmp_path / name, **kwargs)
    np.testing.assert_array_equal(predict.read_image(str(tmp_path / name), 16), ref)
  base.convert("L").save(tmp_path / "grey.png")
  grey = predict.read_image(str(tmp_path / "grey.png"), 16)
  np.testing.assert_array_equal(grey[..., 0], grey[..., 2])
  base.convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
  base.save(tmp_path / "palette.gif")
  base.resize((300, 170)).save(tmp_path / "big.jpg", quality=95)
  for name in ("cmyk.jpg", "palette.gif", "big.jpg"):
    out = predict.read_image(str(tmp_path / name), 16)
    assert out.shape == (16, 16, 3)
    # Same picture, lossy: close to the reference on average.
    assert np.abs(out - ref).mean() < 0.15, name


def test_task_warning_names_what_the_checkpoint_was_trained_for():
  config = finetune_vqa.get_config("tiny")
  assert predict.checkpoint_tasks(config) == ["vqa"]
  assert predict.task_warning(config, "vqa") is None
  message = predict.task_warning(config, "caption")
  assert "trained for vqa" in message and "configs/finetune_caption.py" in message


def test_cli_shows_an_empty_text_and_warns_for_a_task_not_trained(run, monkeypatch, capsys):
  workdir, _, images, _ = run
  # Generation stubbed to all padding: the decoded text is "".
  blank = lambda model, params, image, text, *, max_len, **_: (
    jnp.zeros([image.shape[0], max_len], jnp.int32),
    jnp.zeros([image.shape[0]]),
  )
  monkeypatch.setattr(decode, "generate", blank)
  args = [f"--checkpoint={workdir}", f"--image={images[0]}", f"--image={images[1]}"]
  assert predict.main([*args, "--task=entailment", "--question=there is a red circle"]) == 0
  out, err = capsys.readouterr()
  assert out.splitlines() == [f"{images[0]}\t<empty>", f"{images[1]}\t<empty>"]
  (line,) = err.splitlines()  # once per run, not per image
  assert line.startswith("jarl.predict: warning: task 'entailment': ")
  assert "trained for caption, prefix_lm, vqa" in line  # the fixture's sources and evals


def _cli(*args):
  return subprocess.Popen(
    [sys.executable, "-m", "jarl.predict", *args],
    cwd=train_fixtures.repo_root(),
    env=train_fixtures.main_env(),
    stdout=subprocess.PIPE,
    stderr=subprocess.PIPE,
    text=True,
  )


def test_cli_answers_and_bad_inputs_exit_2_with_one_line(run, tmp_path):
  workdir, records, images, questions = run
  (tmp_path / "empty.png").write_bytes(b"")
  (tmp_path / "text.png").write_text("not an image at all")
  png = open(images[0], "rb").read()
  (tmp_path / "truncated.png").write_bytes(png[: len(png) // 2])
  (tmp_path / "no_config").mkdir()
  (tmp_path / "bad_config").mkdir()
  (tmp_path / "bad_config" / "config.json").write_text('{"model": {"vocab_size": 1}}')
  good_q = f"--question={questions[0]}"
  cases = {  # args -> the file the error line must name
    "missing": (
      [f"--checkpoint={workdir}", f"--image={tmp_path}/nope.png", good_q],
      f"{tmp_path}/nope.png",
    ),
    "empty": (
      [f"--checkpoint={workdir}", f"--image={images[0]}", f"--image={tmp_path}/empty.png", good_q],
      f"{tmp_path}/empty.png",
    ),
    "undecodable": (
      [f"--checkpoint={workdir}", f"--image={tmp_path}/text.png", good_q],
      f"{tmp_path}/text.png",
    ),
    "truncated": (
      [f"--checkpoint={workdir}", f"--image={tmp_path}/truncated.png", good_q],
      f"{tmp_path}/truncated.png",
    ),
    "no_config": (
      [f"--checkpoint={tmp_path}/no_config", f"--image={images[0]}", good_q],
      f"{tmp_path}/no_config",
    ),
    "bad_config": (
      [f"--checkpoint={tmp_path}/bad_config", f"--image={images[0]}", good_q],
      f"{tmp_path}/bad_config/config.json",
    ),
  }
  good = _cli(
    f"--checkpoint={workdir}",
    *[f"--image={p}" for p in images],
    *[f"--question={q}" for q in questions],
  )
  procs = {name: _cli(*args) for name, (args, _) in cases.items()}
  out, err = good.communicate(timeout=240)
  assert good.returncode == 0, err
  assert err == ""  # no Orbax warning, no task warning (the fixture evaluates VQA)
  shown = [r["prediction"] if r["prediction"].strip() else "<empty>" for r in records]
  assert out.splitlines() == [f"{p}\t{text}" for p, text in zip(images, shown)]
  for name, proc in procs.items():
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 2, (name, err)
    assert out == "", (name, out)
    (line,) = err.strip().splitlines()  # one line: no traceback, no log noise
    assert line.startswith("jarl.predict: error: ") and cases[name][1] in line, (name, err)
