"""Prompt sets and their runs in a real browser (Debian's Chromium under Playwright) against a
real `lfgate serve` on the scripted box double, with a LlamaFactory saves/ tree
(tests/rig/saves_tree.py): several models on one base, so a run goes as batches. The double
answers "Echo #1 from <base> + <adapter>: <prompt>" (each prompt is asked alone), and "long"
in a prompt gives a long reply (seconds of it: a run to stop)."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.gateway_process import GatewayProcess
from tests.rig.saves_tree import make_saves
from tests.test_ui import MODELS, open_page
from tests.ui_rig import (
    FAST_PACE_S,
    SCRIPTED_BASE,
    module_gateway,
    on_shared,
    set_pace,
)

expect.set_options(timeout=20_000)

A, A10 = "tiny--lora--sft-a", "tiny--lora--sft-a--checkpoint-10"
B100 = "tiny--lora--sft-b--checkpoint-100"
# What the double says each model is: the basenames of its base and adapter.
ECHO = {"default": "tiny-base + tiny-adapter", A: "tiny-base + sft-a",
        A10: "tiny-base + checkpoint-10", B100: "tiny-base + checkpoint-100"}
PHONE = {"width": 375, "height": 740}
PROGRESS = "[role='progressbar'][aria-label='Replies done']"
CELL = "td.run-cell"
METRICS = ("bleu", "chrf", "rouge_l")


def echo(model: str, prompt: str) -> str:
    return f"Echo #1 from {ECHO[model]}: {prompt}"


def jsonl(records: list[dict]) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


def shown(value: float | None) -> str:
    """A score as the page shows it: JavaScript's toFixed(1) (half up on the exact value)."""
    if value is None:
        return "–"
    return str(Decimal(value).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP))


shared_gateway_process = module_gateway("ui-sets", with_saves=True)


@pytest.fixture
def gateway(shared_gateway_process: GatewayProcess) -> Iterator[GatewayProcess]:
    """A scripted gateway on a saves tree, shared by the module's tests that only look at
    sets and runs of their own (tests/ui_rig.py shared_scripted_gateway)."""
    yield from on_shared(shared_gateway_process)


@pytest.fixture
def own_gateway(make_scripted_gateway, tmp_path: Path) -> GatewayProcess:
    """The same, for this test alone: it reads what the whole gateway holds (every set, the
    leaderboard)."""
    saves = tmp_path / "saves"
    make_saves(saves, SCRIPTED_BASE)
    return make_scripted_gateway(env={"ADAPTER_DIRS": str(saves)})


def open_sets(page: Page, gateway: GatewayProcess) -> None:
    open_page(page, gateway)
    if page.locator("button[aria-label='Show chats']").is_visible():  # a phone
        page.click("button[aria-label='Show chats']")
    page.get_by_role("button", name="Prompt sets").click()
    expect(page).to_have_url(re.compile(r"#/sets$"))
    expect(page.locator("main[aria-label='Prompt sets']")).to_have_attribute("aria-busy",
                                                                           "false")


def set_item(page: Page, name: str) -> Locator:
    return page.locator(".set-item").filter(
        has=page.locator(".set-name").get_by_text(name, exact=True))


def upload(page: Page, filename: str, text: str) -> None:
    """Choose a file in the page's file input, as a user does."""
    page.get_by_label("Prompt set file").set_input_files(files=[{
        "name": filename, "mimeType": "text/plain", "buffer": text.encode()}])


def add_set(page: Page, filename: str, text: str, count: int) -> Locator:
    with page.expect_response(lambda r: r.url.endswith("/api/prompt-sets")
                              and r.request.method == "POST") as posted:
        upload(page, filename, text)
    assert posted.value.status == 201, posted.value.text()
    item = set_item(page, filename)
    expect(item.locator(".set-count")).to_have_text(f"{count} prompts")
    return item


def start_run(page: Page, set_name: str, models: list[str], *,
              max_new_tokens: int | None = None, temperature: float | None = None) -> str:
    """Open the set's Run chooser, pick `models` (a picker each), start; the run's id."""
    page.get_by_role("button", name=f"Run {set_name}", exact=True).click()
    chooser = page.locator(f"form[aria-label='Run {set_name}']")
    picks = chooser.locator(".run-pick")
    expect(picks).not_to_have_count(0)
    while picks.count() < len(models):
        chooser.get_by_role("button", name="+ Model").click()
    while picks.count() > len(models):
        chooser.get_by_role("button", name=f"Remove model {picks.count()}").click()
    for index, model in enumerate(models):
        trigger = chooser.locator(f"[aria-label='Model {index + 1}'] button.model-trigger")
        trigger.click()
        page.locator(f"{MODELS} [role='option'][data-model='{model}']").click()
        expect(page.locator(MODELS)).to_have_count(0)
        expect(trigger.locator(".trigger-id")).to_have_text(model)
    if max_new_tokens is not None:
        chooser.get_by_label("Max new tokens").fill(str(max_new_tokens))
    if temperature is not None:
        chooser.get_by_label("Temperature").fill(str(temperature))
    with page.expect_response(lambda r: r.url.endswith("/runs")
                              and r.request.method == "POST") as posted:
        chooser.get_by_role("button", name="Start the run").click()
    assert posted.value.status == 201, posted.value.text()
    run_id = posted.value.json()["id"]
    expect(page).to_have_url(re.compile(rf"#/run/{run_id}$"))
    return run_id


def wait_run(page: Page, status: str, total: int) -> None:
    """The run on screen ended (`status`), read again as stored, every cell in its place."""
    expect(page.locator(".run-head .run-status")).to_have_text(status)
    bar = page.locator(PROGRESS)
    expect(bar).to_have_attribute("aria-valuemax", str(total))
    if status == "complete":
        expect(bar).to_have_attribute("aria-valuenow", str(total))
        expect(page.locator(f"{CELL}:not(.status-complete)")).to_have_count(0)
    expect(page.locator(f"{CELL}[aria-busy='true']")).to_have_count(0)
    expect(page.locator("main[aria-label='Run']")).to_have_attribute("aria-busy", "false")


def row(page: Page, number: int) -> Locator:
    return page.locator(f"table.run-table tbody tr[aria-label='Prompt {number}']")


def run_of(gateway: GatewayProcess, run_id: str) -> dict:
    response = gateway.http.get(f"/api/runs/{run_id}")
    assert response.status_code == 200, response.text
    return response.json()


def test_a_file_with_references_is_added_and_a_bad_one_names_its_line(page: Page,
                                                                      own_gateway) -> None:
    gateway = own_gateway
    open_sets(page, gateway)
    expect(page.locator(".board-empty")).to_contain_text("No prompt sets yet")
    records = [{"prompt": "What is LoRA?", "reference": "A low-rank adapter."},
               {"prompt": "And QLoRA?", "system": "Be brief.", "reference": "LoRA, quantised."},
               {"instruction": "Translate to French", "input": "good morning",
                "output": "bonjour"}]  # LlamaFactory's alpaca record
    item = add_set(page, "eval.jsonl", jsonl(records), 3)
    expect(item.locator(".set-refs")).to_have_text("3 with a reference")
    expect(item.locator(".badge")).to_have_text("jsonl")
    expect(page.locator(".set-added")).to_contain_text("Added “eval.jsonl”: 3 prompts, 3 with a")
    [stored] = gateway.http.get("/api/prompt-sets").json()["sets"]
    assert (stored["name"], stored["count"], stored["references"]) == ("eval.jsonl", 3, 3)

    # A CSV whose third line has a field too many: refused whole, the line named.
    bad = "prompt,reference\nfirst,one\nsecond,two,three\nfourth,four\n"
    with page.expect_response(lambda r: r.url.endswith("/api/prompt-sets")
                              and r.request.method == "POST") as posted:
        upload(page, "bad.csv", bad)
    assert posted.value.status == 400
    assert posted.value.json()["detail"]["line"] == 3
    alert = page.locator(".set-add [role='alert']")
    expect(alert).to_contain_text(re.compile(r"bad\.csv: line 3: 3 fields where the header has 2"))
    expect(page.locator(".set-added")).to_have_count(0)
    expect(page.locator(".set-item")).to_have_count(1)
    assert len(gateway.http.get("/api/prompt-sets").json()["sets"]) == 1

    # Pasted text, its format chosen and a name given: newest first; the alert clears.
    page.get_by_label("Name (optional)").fill("smoke prompts")
    page.get_by_label("Format").select_option("lines")
    page.get_by_label("Or paste the prompts").fill("hello there\n\nhow are you?\n")
    page.get_by_role("button", name="Add the pasted prompts").click()
    pasted = set_item(page, "smoke prompts")
    expect(pasted.locator(".set-count")).to_have_text("2 prompts")
    expect(pasted.locator(".set-refs")).to_have_text("0 with a reference")
    expect(page.locator(".set-name")).to_have_text(["smoke prompts", "eval.jsonl"])
    expect(alert).to_have_text("")
    expect(page.get_by_label("Or paste the prompts")).to_have_value("")

    # Delete, after a confirm.
    pasted.get_by_role("button", name="Delete smoke prompts").click()
    pasted.locator("[role='alertdialog']").get_by_role("button", name="Delete").click()
    expect(page.locator(".set-item")).to_have_count(1)
    assert [s["name"] for s in gateway.http.get("/api/prompt-sets").json()["sets"]] == [
        "eval.jsonl"]
    page.reload()  # the page is in the URL
    expect(page.locator(".set-name")).to_have_text(["eval.jsonl"])
    # Chromium logs the refused upload; nothing else went wrong.
    assert page.js_errors == ["console.error: Failed to load resource: the server responded "
                              "with a status of 400 (Bad Request)"]

    # Deleted elsewhere meanwhile (another tab): the refused delete is said, and stays said
    # once the list has reloaded without the set (a reload once wiped it at once).
    assert gateway.http.delete(f"/api/prompt-sets/{stored['id']}").status_code == 204
    kept = set_item(page, "eval.jsonl")
    kept.get_by_role("button", name="Delete eval.jsonl").click()
    kept.locator("[role='alertdialog']").get_by_role("button", name="Delete").click()
    refused = page.locator("main[aria-label='Prompt sets'] .board-inner > .notice.error")
    expect(refused).to_be_visible()
    expect(page.locator(".set-item")).to_have_count(0)  # the list has reloaded
    expect(page.locator(".board-empty")).to_be_visible()
    expect(refused).to_be_visible()


def test_a_run_over_three_models_fills_the_table_with_scores_and_a_chart(
        page: Page, gateway) -> None:
    models = ["default", A, B100]
    prompts = ["name the capital of France", "what is two plus two", "say something kind"]
    # References are what sft-a will say: it scores 100, the others less.
    open_sets(page, gateway)
    add_set(page, "refs.jsonl", jsonl([{"prompt": p, "reference": echo(A, p)}
                                       for p in prompts]), 3)
    run_id = start_run(page, "refs.jsonl", models, max_new_tokens=200, temperature=0.5)
    wait_run(page, "complete", 9)
    expect(page.locator(".progress-count")).to_have_text("9 / 9")
    expect(page.locator(".progress-elapsed")).to_contain_text("elapsed")
    expect(page.locator("button[aria-label='Stop the run']")).to_have_count(0)
    expect(page.locator("button[aria-label='Resume the run']")).to_have_count(0)

    # One column per model, one row per prompt, each cell the model's echo.
    expect(page.locator("table.run-table thead th.col-model")).to_have_text(models)
    expect(page.locator("table.run-table tbody tr")).to_have_count(3)
    for number, prompt in enumerate(prompts, start=1):
        expect(row(page, number).locator(".prompt-text")).to_have_text(prompt)
        expect(row(page, number).locator(".reference-text")).to_have_text(echo(A, prompt))
        for slot, model in enumerate(models):
            cell = row(page, number).locator(f"{CELL}[data-slot='{slot}']")
            expect(cell.locator(".markdown")).to_have_text(echo(model, prompt))
            expect(cell.locator(".t-total")).to_have_text(re.compile(r"[\d.]+ m?s total"))
        expect(row(page, number).locator(f"{CELL}[data-slot='1'] .score-bleu")).to_have_text(
            "BLEU 100.0")

    stored = run_of(gateway, run_id)
    assert stored["params"] == {"max_new_tokens": 200, "temperature": 0.5}
    assert stored["mode"] == "batch"
    for number, record in enumerate(stored["rows"], start=1):
        for cell in record["cells"]:
            shown_scores = row(page, number).locator(
                f"{CELL}[data-slot='{cell['slot']}'] .cell-scores")
            expect(shown_scores).to_have_text(
                f"BLEU {shown(cell['scores']['bleu'])}chrF {shown(cell['scores']['chrf'])}"
                f"ROUGE-L {shown(cell['scores']['rouge_l'])}")

    # The averages: bars (inline SVG, a value over each) and the same numbers in the table.
    averages = stored["averages"]
    assert averages[A]["bleu"] == pytest.approx(100)
    assert averages["default"]["bleu"] < 100
    chart = page.locator("svg.score-chart")
    expect(chart).to_be_visible()
    for metric in METRICS:
        expect(chart.locator(f"g[data-metric='{metric}'] .bar-value")).to_have_text(
            [shown(averages[m][metric]) for m in models])
        expect(chart.locator(f"g[data-metric='{metric}'] rect")).to_have_count(3)
    for model in models:
        numbers = page.locator(f"table.score-table tr[data-model='{model}']")
        for metric in METRICS:
            expect(numbers.locator(f".score-{metric}")).to_have_text(
                shown(averages[model][metric]))
        expect(numbers.locator(".scored")).to_have_text("3")

    # The set lists its run, with its status and progress; it opens the run again.
    page.get_by_role("link", name="← Prompt sets").click()
    listed = set_item(page, "refs.jsonl").locator(f".set-run[data-run='{run_id}']")
    expect(listed.locator(".run-status")).to_have_text("complete")
    expect(listed.locator(".set-run-count")).to_have_text("9 / 9")
    listed.get_by_role("link").click()
    expect(page).to_have_url(re.compile(rf"#/run/{run_id}$"))
    wait_run(page, "complete", 9)
    assert page.js_errors == []


def test_stop_mid_run_then_resume_asks_only_what_was_left(page: Page, gateway) -> None:
    # Three chunks (a chunk shares one system prompt): two quick prompts, two long ones (the
    # double's long reply takes seconds), one more quick one.
    records = [{"prompt": "first quick question"}, {"prompt": "second quick question"},
               {"prompt": "tell me a long story", "system": "You tell stories."},
               {"prompt": "another long story please", "system": "You tell stories."},
               {"prompt": "last quick question", "system": "Be brief."}]
    open_sets(page, gateway)
    add_set(page, "stoppable.jsonl", jsonl(records), 5)
    run_id = start_run(page, "stoppable.jsonl", ["default", A])
    bar = page.locator(PROGRESS)
    expect(bar).to_have_attribute("aria-valuemax", "10")
    # Live: the first chunk's cells arrive in place while the long ones are being asked.
    expect(bar).to_have_attribute("aria-valuenow", "4")
    expect(row(page, 3).locator(f"{CELL}[aria-busy='true']")).to_have_count(2)
    expect(page.locator(".run-head .run-status")).to_have_text("running")
    expect(page.locator(".progress-eta")).to_contain_text("ETA")
    expect(row(page, 1).locator(f"{CELL}[data-slot='0'] .markdown")).to_have_text(
        echo("default", "first quick question"))
    with page.expect_response(lambda r: r.url.endswith("/stop")) as stopped:
        page.click("button[aria-label='Stop the run']")
    assert stopped.value.ok, stopped.value.text()

    wait_run(page, "stopped", 10)
    expect(bar).to_have_attribute("aria-valuenow", "4")
    expect(page.locator("button[aria-label='Stop the run']")).to_have_count(0)
    expect(row(page, 5).locator(f"{CELL}.status-pending")).to_have_count(2)
    expect(row(page, 5).locator(".cell-pending").first).to_have_text("Not asked yet")
    for number in (3, 4):
        expect(row(page, number).locator(f"{CELL}.status-complete")).to_have_count(0)
    expect(page.locator(f"{CELL}.status-complete")).to_have_count(4)
    # No vote on a row not answered by every model yet.
    expect(row(page, 5).get_by_role("button", name="Tie on prompt 5")).to_have_count(0)
    before = run_of(gateway, run_id)
    assert before["status"] == "stopped"
    statuses = [[c["status"] for c in r["cells"]] for r in before["rows"]]
    assert statuses[:2] == [["complete"] * 2] * 2
    assert statuses[4] == ["pending"] * 2
    assert all(s in ("stopped", "pending") for s in statuses[2] + statuses[3])
    answered = [[(c["content"], c["attempts"], c["total_ms"]) for c in r["cells"]]
                for r in before["rows"][:2]]

    page.click("button[aria-label='Resume the run']")
    expect(page.locator(".run-head .run-status")).to_have_text("running")
    set_pace(gateway, FAST_PACE_S)  # resumed: the long replies need not take seconds now
    wait_run(page, "complete", 10)
    after = run_of(gateway, run_id)
    assert after["status"] == "complete"
    assert all(c["status"] == "complete" for r in after["rows"] for c in r["cells"])
    # What was answered before the stop is kept as it was, never asked again.
    assert [[(c["content"], c["attempts"], c["total_ms"]) for c in r["cells"]]
            for r in after["rows"][:2]] == answered
    assert all(c["attempts"] == 1 for c in after["rows"][4]["cells"])
    for number in (3, 4):
        for cell in after["rows"][number - 1]["cells"]:
            assert cell["content"].endswith("This is senten")  # the whole long reply
    # A long reply is folded, with Show all.
    long_cell = row(page, 3).locator(f"{CELL}[data-slot='0']")
    toggle = long_cell.get_by_role("button", name="Show all")
    box = long_cell.locator(".clamp-box")
    folded = box.evaluate("b => b.clientHeight")
    toggle.click()
    expect(long_cell.get_by_role("button", name="Show less")).to_have_attribute(
        "aria-expanded", "true")
    assert box.evaluate("b => b.clientHeight") > folded * 3
    assert page.js_errors == []


def test_votes_count_in_the_leaderboard_and_the_run_exports(page: Page,
                                                             own_gateway) -> None:
    gateway = own_gateway
    prompts = ["first question to judge", "second question to judge"]
    open_sets(page, gateway)
    add_set(page, "judge.jsonl", jsonl([{"prompt": p, "reference": echo(A, p)}
                                        for p in prompts]), 2)
    run_id = start_run(page, "judge.jsonl", ["default", A])
    wait_run(page, "complete", 4)
    assert gateway.http.get("/api/leaderboard").json()["votes"] == 0

    first = row(page, 1)
    best = first.get_by_role("button", name=f"{A} is best on prompt 1")
    with page.expect_response(lambda r: r.url.endswith("/votes")) as posted:
        best.click()
    assert posted.value.json() == {"index": 0, "winner": "1", "reason": None}
    expect(best).to_have_attribute("aria-pressed", "true")
    expect(first.locator(".row-voted")).to_have_text(f"Voted: {A} is best")
    expect(first.locator(f"{CELL}[data-slot='1']")).to_have_class(re.compile("verdict-best"))
    assert gateway.http.get("/api/leaderboard").json()["votes"] == 1

    second = row(page, 2)
    second.get_by_role("button", name="Tie on prompt 2").click()
    expect(second.locator(".row-voted")).to_have_text("Voted: Tie")
    expect(second.get_by_role("button", name="Tie on prompt 2")).to_have_attribute(
        "aria-pressed", "true")
    board = gateway.http.get("/api/leaderboard").json()
    assert board["votes"] == 2
    assert {s["model"] for s in board["standings"]} == {"default", A}

    # Voting again replaces the vote.
    first.get_by_role("button", name="Both bad on prompt 1").click()
    expect(first.locator(".row-voted")).to_have_text("Voted: Both bad")
    expect(best).to_have_attribute("aria-pressed", "false")
    assert gateway.http.get("/api/leaderboard").json()["votes"] == 2
    votes = [r["vote"] for r in run_of(gateway, run_id)["rows"]]
    assert [v["winner"] for v in votes] == ["both_bad", "tie"]
    page.reload()  # stored: the votes come back
    expect(row(page, 1).locator(".row-voted")).to_have_text("Voted: Both bad")
    expect(row(page, 2).locator(".row-voted")).to_have_text("Voted: Tie")

    # Export: Markdown, JSONL and CSV, each a download of the run.
    menu_button = page.get_by_role("button", name="Export run")
    menu_button.click()
    items = page.locator("[role='menu'][aria-label='Export as'] [role='menuitem']")
    expect(items).to_have_text(["Markdown (.md)", "JSONL, a line a prompt (.jsonl)",
                                "CSV, a row a reply (.csv)"])
    kinds = {"md": "text/markdown", "jsonl": "application/x-ndjson", "csv": "text/csv"}
    texts = {}
    for index, (extension, media) in enumerate(kinds.items()):
        if not items.first.is_visible():
            menu_button.click()
        link = items.nth(index)
        href = link.get_attribute("href")
        response = gateway.http.get(f"/{href}")
        assert response.headers["content-type"].startswith(media), response.headers
        assert "attachment" in response.headers["content-disposition"]
        with page.expect_download() as download:
            link.click()
        assert download.value.suggested_filename.endswith(f".{extension}")
        texts[extension] = Path(download.value.path()).read_text()
    assert texts["md"].startswith("# judge.jsonl")
    assert echo(A, prompts[0]) in texts["md"]
    lines = [json.loads(line) for line in texts["jsonl"].splitlines()]
    assert [line["prompt"] for line in lines] == prompts
    assert [line["vote"]["winner"] for line in lines] == ["both_bad", "tie"]
    assert [r["content"] for r in lines[1]["replies"]] == [echo("default", prompts[1]),
                                                         echo(A, prompts[1])]
    table = list(csv.DictReader(io.StringIO(texts["csv"])))
    assert [(r["index"], r["model"]) for r in table] == [("0", "default"), ("0", A),
                                                        ("1", "default"), ("1", A)]
    assert all(r["status"] == "complete" for r in table)
    assert page.js_errors == []


def test_on_a_phone_nothing_overflows_and_the_table_scrolls(make_page, gateway) -> None:
    page = make_page(viewport=PHONE, color_scheme="dark")
    open_sets(page, gateway)
    expect(page.locator("nav[aria-label='Chats']")).not_to_be_visible()
    prompts = ["a question for a small screen",
               "a second one, with a reply that wraps over a few lines on a phone"]
    add_set(page, "phone.jsonl", jsonl([{"prompt": p, "reference": echo(A, p)}
                                        for p in prompts]), 2)
    page.get_by_role("button", name="Run phone.jsonl", exact=True).click()
    chooser = page.locator("form[aria-label='Run phone.jsonl']")
    expect(chooser.locator(".run-pick")).to_have_count(2)
    chooser.locator("[aria-label='Model 2'] button.model-trigger").click()  # its popover too
    expect(page.locator(MODELS)).to_be_visible()
    sets = page.locator("main[aria-label='Prompt sets']")
    assert sets.evaluate("m => m.scrollWidth <= m.clientWidth")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    page.keyboard.press("Escape")
    expect(page.locator(MODELS)).to_have_count(0)
    chooser.get_by_role("button", name="Cancel").click()
    start_run(page, "phone.jsonl", ["default", A, B100])
    wait_run(page, "complete", 6)
    expect(page.locator("svg.score-chart")).to_be_visible()

    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    assert page.evaluate("document.body.scrollWidth") <= PHONE["width"]
    main = page.locator("main[aria-label='Run']")
    assert main.evaluate("m => m.scrollWidth <= m.clientWidth")
    chart = page.locator("svg.score-chart").bounding_box()
    assert chart and chart["x"] >= 0 and chart["x"] + chart["width"] <= PHONE["width"]
    # The table scrolls inside its own box, sideways.
    table = page.locator(".run-table-wrap")
    assert table.evaluate("t => t.scrollWidth > t.clientWidth")
    table.evaluate("t => { t.scrollLeft = t.scrollWidth; }")
    page.wait_for_function(
        "() => document.querySelector('.run-table-wrap').scrollLeft > 0")
    last = row(page, 2).locator(f"{CELL}[data-slot='2']")
    last.get_by_role("button", name=f"{B100} is best on prompt 2").click()
    expect(row(page, 2).locator(".row-voted")).to_have_text(f"Voted: {B100} is best")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]

    # Every control on the page has a name.
    unnamed = page.evaluate("""() => [...document.querySelectorAll(
        'button, select, input, textarea, a[href], [tabindex]')].filter(el => {
          const label = el.getAttribute('aria-label') || el.textContent.trim()
            || (el.labels && el.labels[0] && el.labels[0].textContent.trim());
          return !label; }).map(el => el.outerHTML)""")
    assert unnamed == []
    assert page.js_errors == []


# The opacity of a scrolling table's edge fade (scroll_x.js): "::before" the left, "::after"
# the right; "none" where no gradient is drawn there at all.
FADE = """([label, side]) => {
  const edge = getComputedStyle(document.querySelector(
    `[role='region'][aria-label='${label}']`).parentElement, side);
  const drawn = edge.content !== 'none' && edge.backgroundImage.includes('gradient');
  return drawn ? edge.opacity : 'none';
}"""


def test_on_a_phone_the_tables_show_that_they_scroll_sideways(make_page, gateway) -> None:
    """Issue 23: at 375 px the results table cut its columns off with no sign that it
    scrolls."""
    page = make_page(viewport=PHONE)
    open_sets(page, gateway)
    prompts = ["one for a narrow screen", "and a second"]
    add_set(page, "sideways.jsonl", jsonl([{"prompt": p, "reference": echo(A, p)}
                                           for p in prompts]), 2)
    start_run(page, "sideways.jsonl", ["default", A, B100])
    wait_run(page, "complete", 6)
    for label in ("Replies", "Averages table"):
        region = page.get_by_role("region", name=label)
        around = page.locator(".scroll-x").filter(has=region)
        hint = around.locator(".scroll-hint")
        assert region.evaluate("r => r.scrollWidth > r.clientWidth"), label  # it does scroll
        # At its start: more to the right, and it says so.
        expect(hint).to_have_text("More columns: scroll sideways →")
        expect(hint).to_be_visible()
        expect(around).to_have_class("scroll-x more-right")
        page.wait_for_function(f"(args) => ({FADE})(args) === '1'", arg=[label, "::after"])
        assert page.evaluate(FADE, [label, "::before"]) == "0"
        # At its end: more to the left.
        region.evaluate("r => { r.scrollLeft = r.scrollWidth; }")
        expect(around).to_have_class("scroll-x more-left")
        expect(hint).to_have_text("← Scroll back for the first columns")
        page.wait_for_function(f"(args) => ({FADE})(args) === '1'", arg=[label, "::before"])
        page.wait_for_function(f"(args) => ({FADE})(args) === '0'", arg=[label, "::after"])
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    assert page.js_errors == []
