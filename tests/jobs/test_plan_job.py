import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from jobs.main import register_resolvers
from jobs import JOBS, get_job
from jobs.config import plan_key_inputs, plan_options
from jobs.plan import run
from pipeline.text.plan import read_plan

register_resolvers()  # the ${stem:...} resolver the config uses
PROJECT_ROOT = Path(__file__).resolve().parents[2]
SAMPLE = PROJECT_ROOT / "pipeline" / "samples" / "sample_book.md"


def config(*overrides: str):
    with initialize_config_dir(config_dir=str(PROJECT_ROOT / "conf"), version_base=None):
        return compose(config_name="config", overrides=list(overrides))


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    return subprocess.run([sys.executable, "-m", "pipeline.run", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_defaults():
    cfg = config()
    assert cfg.job.name == "narrate"  # the main job is the default
    assert cfg.input == "pipeline/samples/sample_book.md"
    assert cfg.output == "outputs/sample_book"
    assert cfg.lexicon is None and cfg.language == "auto"
    options = plan_options(cfg)  # typed dataclasses from here on
    assert (options.target_seconds, options.max_seconds) == (18.0, 30.0)
    assert "cover" in options.read.skip_kinds and options.read.chapter_pattern is None
    assert plan_key_inputs(cfg).decoding["audio_top_k"] == 25


def test_plan_job_writes_the_plan_and_prints_a_summary(tmp_path, capsys):
    cfg = config(f"input={SAMPLE}", f"output={tmp_path / 'out'}")
    summary = run(cfg)
    printed = capsys.readouterr().out
    segments, metadata = read_plan(tmp_path / "out" / "plan.parquet")
    assert summary.chapters == 3 and summary.segments == len(segments) > 3
    assert summary.characters == sum(len(s.text) for s in segments)
    assert summary.seconds == pytest.approx(sum(s.est_frames for s in segments) / 12.5)
    for line in ("chapters:   3", f"segments:   {len(segments)}", "characters:", "estimated narration time:",
                 "warnings (0): none"):
        assert line in printed
    assert metadata["book"] == "The Lighthouse Keeper's Ledger"
    assert segments[0].model_text == "Chapter one: The Ledger"


def test_plan_job_options_reach_the_plan(tmp_path):
    lexicon = tmp_path / "lexicon.tsv"
    lexicon.write_text("Gannet Point\tGAN-it Point\nUnused\tun-yoozd\n", encoding="utf-8")
    cfg = config(f"input={SAMPLE}", f"output={tmp_path / 'out'}", f"lexicon={lexicon}", "plan.max_seconds=12",
                 "plan.target_seconds=6", "narration.voice_id=other")
    summary = run(cfg)
    segments, metadata = read_plan(tmp_path / "out" / "plan.parquet")
    assert max(s.est_frames for s in segments) <= 12 * 12.5
    assert any(s.lexicon_entries == ("Gannet Point",) and "GAN-it Point" in s.model_text for s in segments)
    assert summary.warnings == ["lexicon entries that matched nothing: 'Unused' (line 2)"]
    assert metadata["key_inputs"]["voice_id"] == "other"


def test_registry_lists_valid_choices():
    assert "plan" in JOBS and callable(get_job("plan"))
    with pytest.raises(ValueError, match="unknown job 'narate'; valid choices: finish, narrate, plan"):
        get_job("narate")


def test_cli_runs_without_chdir_or_litter(tmp_path):
    out = tmp_path / "out"
    result = cli("job=plan", f"input={SAMPLE}", f"output={out}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "plan: The Lighthouse Keeper's Ledger" in result.stdout
    assert (out / "plan.parquet").is_file() and (out / "config.yaml").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # nothing else written where it ran


def test_cli_reports_bad_input_without_a_traceback(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    result = cli("job=plan", f"input={empty}", f"output={tmp_path / 'out'}", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {empty}: the file is empty. What to do:")
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out" / "plan.parquet").exists()


def test_cli_unknown_job_lists_the_choices(tmp_path):
    result = cli("job.name=narate", f"output={tmp_path / 'out'}", cwd=PROJECT_ROOT)
    assert result.returncode != 0
    assert "unknown job 'narate'; valid choices: finish, narrate, plan" in result.stderr
    result = cli("job=narate", f"output={tmp_path / 'out'}", cwd=PROJECT_ROOT)
    assert result.returncode != 0
    assert "Available options in 'job'" in result.stderr and "plan" in result.stderr


CODE_BOOK = """# Listings

## One

The program prints a greeting.

```
print("hello from the listing")
```

That is all it does.
"""


def plan_texts(tmp_path: Path, book: Path, *overrides: str) -> list[str]:
    out = tmp_path / f"out{len(list(tmp_path.glob('out*')))}"
    run(config(f"input={book}", f"output={out}", *overrides))
    return [s.text for s in read_plan(out / "plan.parquet")[0]]


def test_keep_code_reads_a_markdown_code_block_aloud(tmp_path):
    book = tmp_path / "listings.md"
    book.write_text(CODE_BOOK, encoding="utf-8")
    default = " ".join(plan_texts(tmp_path, book))
    kept = " ".join(plan_texts(tmp_path, book, "plan.keep_code=true"))
    assert "greeting" in default and "hello from the listing" not in default
    assert "hello from the listing" in kept


def test_keep_page_numbers_reads_epub_page_breaks_aloud(tmp_path):
    from tests.jobs.test_bad_inputs import epub

    page = (b'<?xml version="1.0"?><html xmlns="http://www.w3.org/1999/xhtml" xmlns:epub="http://www.idpf.org/2007/ops">'
            b'<head><title>One</title></head><body><h1>One</h1><p>The tide came in at dawn.</p>'
            b'<span epub:type="pagebreak" role="doc-pagebreak" id="p417">417</span>'
            b'<p>The gulls were loud.</p></body></html>')
    book = epub(tmp_path / "pages.epub", {"OEBPS/c1.xhtml": page})
    default = " ".join(plan_texts(tmp_path, book))
    kept = " ".join(plan_texts(tmp_path, book, "plan.keep_page_numbers=true"))
    assert "gulls" in default and "417" not in default
    assert "417" in kept


def test_every_language_has_a_speaking_rate_that_reaches_the_plan(tmp_path):
    from pipeline.text.segment import SpeakingRates

    cfg = config()
    assert plan_options(cfg).rates == SpeakingRates()  # the config's rates are the pipeline's defaults
    book = tmp_path / "ja.md"
    book.write_text("# 本\n\n## 一\n\n今日はとても良い天気です。明日も晴れるでしょう。\n", encoding="utf-8")
    frames = []
    for rate in ("7.0", "3.5"):
        out = tmp_path / f"ja{rate}"
        run(config(f"input={book}", f"output={out}", "language=ja", f"plan.speaking_rate.ja={rate}"))
        frames.append(sum(s.est_frames for s in read_plan(out / "plan.parquet")[0]))
    assert frames[1] > 1.8 * frames[0]  # half the rate, about twice the estimated time


@pytest.mark.parametrize("setting, message", [
    ("plan.keep_code=maybe", "plan.keep_code=maybe: must be true or false"),
    ("plan.keep_page_numbers=2", "plan.keep_page_numbers=2: must be true or false"),
    ("plan.speaking_rate.ko=0", "plan.speaking_rate.ko=0: must be a number > 0 and <= 100"),
    ("narration.language_tags=maybe", "narration.language_tags=maybe: valid choices: auto, true, false"),
])
def test_a_bad_reading_or_rate_setting_exits_2_naming_it(setting, message, tmp_path):
    result = cli("job=plan", f"input={SAMPLE}", f"output={tmp_path / 'out'}", setting, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_language_tags_follow_the_model_and_reach_the_keys(tmp_path):
    from pipeline.narration.models import language_tags_setting

    assert language_tags_setting("auto", "moss_tts_v1_5") and not language_tags_setting("auto", "moss_tts")
    assert language_tags_setting("auto", "/models/mine", "/models/MOSS-TTS-v1.5")
    assert not language_tags_setting("auto", "tiny") and language_tags_setting(True, "tiny")
    assert plan_key_inputs(config("model=moss_tts_v1_5")).language_tags
    assert not plan_key_inputs(config("model=moss_tts")).language_tags
    assert not plan_key_inputs(config("model=moss_tts_v1_5", "narration.language_tags=false")).language_tags
    untagged = plan_texts_and_keys(tmp_path, "model=tiny")
    tagged = plan_texts_and_keys(tmp_path, "model=tiny", "narration.language_tags=true")
    assert [t for t, _ in untagged] == [t for t, _ in tagged]
    assert all(a != b for (_, a), (_, b) in zip(untagged, tagged))


def plan_texts_and_keys(tmp_path: Path, *overrides: str) -> list[tuple[str, str]]:
    out = tmp_path / f"keys{len(list(tmp_path.glob('keys*')))}"
    run(config(f"input={SAMPLE}", f"output={out}", *overrides))
    return [(s.text, s.key) for s in read_plan(out / "plan.parquet")[0]]
