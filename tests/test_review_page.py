"""The blind review page in a real browser (Debian's Chromium, driven by Playwright): rate with the keyboard
alone, reload, resume, and find the ratings in the CSV."""
import pytest

from supportagent.app.server import create_app
from supportagent.evaluation.review import ReviewSet, read_ratings
from supportagent.reporting import plots
from test_plots import needs_browser
from test_server import live, write_predictions

pytestmark = needs_browser


@pytest.fixture
def page():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=plots.chromium(), args=["--no-sandbox", "--disable-gpu"])
        yield browser.new_page()
        browser.close()


def test_rate_three_items_with_the_keyboard_reload_and_resume(tmp_path, page):
    write_predictions(tmp_path / "predictions", n=5)
    review = ReviewSet(tmp_path / "predictions", ["qlora", "prompt_tuning"], n=5, seed=3)
    ratings = tmp_path / "ratings.csv"
    with live(create_app(None, None, review, ratings)) as url:
        page.goto(f"{url}/review")
        page.fill("#name", "ana")
        page.keyboard.press("Enter")
        page.wait_for_selector("#message")
        assert page.inner_text("#progress") == "Item 1 of 5 (0 rated)"
        assert "qlora" not in page.inner_text("#item").replace("qlora says", "")  # names hidden
        keys = {1: "453224a", 2: "111555b", 3: "333333t"}  # six scores (A then B), then the preferred reply
        shown = []
        for n, seq in keys.items():
            shown.append(int(page.inner_text("#message").split()[-1]))
            for key in seq:
                page.keyboard.press(key)
            assert page.is_enabled("#submit")
            page.keyboard.press("Enter")
            page.wait_for_function(f"document.getElementById('progress').textContent.includes('({n} rated)')")

        # a half-rated item survives a reload, and the page resumes where the reviewer was
        page.keyboard.press("2")
        page.reload()
        page.wait_for_selector("#message")
        assert page.inner_text("#progress") == "Item 4 of 5 (3 rated)"
        assert page.locator(".row.cursor").count() == 1 and page.locator(".row button.on").inner_text() == "2"

    df = read_ratings(ratings)
    assert len(df) == 6 and df["item"].drop_duplicates().tolist() == shown and set(df["reviewer"]) == {"ana"}
    first = df[df["item"] == shown[0]]
    order = review.order("ana", shown[0])
    assert first["system"].tolist() == order
    assert first[["helpfulness", "tone", "coherence"]].values.tolist() == [[4, 5, 3], [2, 2, 4]]
    assert set(first["preferred"]) == {order[0]}
    assert set(df[df["item"] == shown[1]]["preferred"]) == {review.order("ana", shown[1])[1]}
    assert set(df[df["item"] == shown[2]]["preferred"]) == {"tie"}


def test_thirty_items_with_the_keyboard_alone(tmp_path, page):
    write_predictions(tmp_path / "predictions", n=30)
    review = ReviewSet(tmp_path / "predictions", ["qlora", "prompt_tuning"], n=30, seed=0)
    with live(create_app(None, None, review, tmp_path / "ratings.csv")) as url:
        page.goto(f"{url}/review?reviewer=bo")
        for n in range(1, 31):
            page.wait_for_function(f"document.getElementById('progress').textContent.includes('({n - 1} rated)')")
            page.keyboard.type("345543")
            page.keyboard.press("a" if n % 3 else "t")
            page.keyboard.press("Enter")
        page.wait_for_selector("#done", state="visible")
        assert page.inner_text("#progress") == "30 of 30 rated"
    df = read_ratings(tmp_path / "ratings.csv")
    assert len(df) == 60 and df["item"].nunique() == 30 and (df["tone"] == 4).all()
