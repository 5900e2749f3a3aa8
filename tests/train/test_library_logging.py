"""`run_training` inside a user's program: it logs (never prints), so the program decides what is shown."""

from __future__ import annotations

import logging

from efficientformer.train.job import TrainJob, run_training
from efficientformer.train.recipes import get_recipe


def _job(colour_folder, output) -> TrainJob:
    # One bad image (skipped: a warning) and, without tensorboard or matplotlib, info-level notes.
    recipe = get_recipe("default").replace(epochs=1, warmup_epochs=0, batch_size=7)
    return TrainJob(output=str(output), data=str(colour_folder.root), val_split=0.25, on_bad_image="skip",
                    model="efficientformerv2_test", recipe=recipe)


def test_nothing_reaches_stdout_with_logging_disabled(colour_folder, tmp_path, capfd):
    logging.disable(logging.CRITICAL)
    try:
        summary = run_training(_job(colour_folder, tmp_path / "run"))
    finally:
        logging.disable(logging.NOTSET)
    assert summary["skipped_images"] == 1  # there was something to report
    captured = capfd.readouterr()
    assert captured.out == ""
    assert "skipped" not in captured.err and "unreadable" not in captured.err


def test_the_records_go_where_the_program_sends_them(colour_folder, tmp_path, caplog, capfd):
    with caplog.at_level(logging.INFO, logger="efficientformer"):
        run_training(_job(colour_folder, tmp_path / "run"))
    assert capfd.readouterr().out == ""
    (skipped,) = [r for r in caplog.records if "unreadable image" in r.getMessage()]
    assert skipped.levelno == logging.WARNING and skipped.name == "efficientformer.train.job"
    assert str(colour_folder.bad) in skipped.getMessage()
