from supportagent.config import BrandParams
from supportagent.data.placeholders import NO_LINK, fill, has_mask, serve


def test_url_mask_becomes_the_brands_link():
    assert fill("Send us a note at <url> so we can help.", "https://help.example.com") == \
        "Send us a note at https://help.example.com so we can help."


def test_without_a_link_the_sentence_with_the_mask_is_dropped():
    assert (
        fill("Sorry about that! Send us a note at <url> so we can help. We're on it.")
        == "Sorry about that! We're on it."
    )
    assert fill("Meet us in DM and we'll continue from there. <url>") == "Meet us in DM and we'll continue from there."


def test_a_reply_that_is_only_masks_becomes_the_fallback_sentence():
    assert fill("<url>") == NO_LINK and fill("Ask @user here: <url>", "https://x.example") == NO_LINK


def test_handles_are_never_sent_and_plain_text_is_untouched():
    assert not has_mask(fill("Thanks! Tell @user we said hi. Enjoy.", "https://x.example"))
    assert fill("All good here, enjoy!") == "All good here, enjoy!"
    assert has_mask("ping @user") and has_mask("see <url>")


def test_serve_uses_the_brands_params():
    brands = {"AppleSupport": BrandParams(support_url="https://support.apple.com/contact")}
    assert serve("DM us: <url>", "AppleSupport", brands) == "DM us: https://support.apple.com/contact"
    assert serve("DM us: <url>", "DeltaAssist", brands) == NO_LINK
    assert serve("", "AppleSupport", brands) == serve("  ", "AppleSupport", brands) == NO_LINK  # never sent empty


def test_a_brand_agents_initials_copied_by_the_model_are_not_sent():
    brands = {"SpotifyCares": BrandParams(support_url="https://support.spotify.com/contact-spotify-support/")}
    link = brands["SpotifyCares"].support_url
    assert serve("We'll take a look backstage /JM <url>", "SpotifyCares", brands) == \
        f"We'll take a look backstage {link}"
    assert serve("Take a look /DM /BT <url>", "SpotifyCares", brands) == f"Take a look {link}"
    assert serve("We'll take a look /N<url>", "SpotifyCares", brands) == f"We'll take a look {link}"
    assert serve("Thanks for waiting! /JM", "SpotifyCares", brands) == "Thanks for waiting!"
    # a slash inside the text is no signature
    for kept in ("Go to Settings/General <url>", "Try the A/B option <url>", "Tap /AB then save <url>"):
        assert serve(kept, "SpotifyCares", brands) == kept.replace("<url>", link)


def test_a_last_sentence_twitter_cut_is_not_sent_and_a_cut_reply_is_flagged():
    from supportagent.inference.checks import Context, check_reply

    brands = {"SpotifyCares": BrandParams(support_url="https://support.spotify.com/contact-spotify-support/")}
    link = brands["SpotifyCares"].support_url
    assert serve("No worries! Give us a shout if you need us again. We'll be... <url>", "SpotifyCares", brands) == \
        f"No worries! Give us a shout if you need us again. {link}"
    assert serve("We can help. We’d be… <url> 🙂", "SpotifyCares", brands) == f"We can help. {link} 🙂"
    assert serve("Got it! We'll take a look backstage / <url>", "SpotifyCares", brands) == \
        f"Got it! We'll take a look backstage {link}"
    # an ellipsis inside the reply stays; a reply that is nothing but the cut stays too, and the checks flag it
    assert serve("Hmm... that's odd. Can you DM us? <url>", "SpotifyCares", brands) == \
        f"Hmm... that's odd. Can you DM us? {link}"
    cut = serve("Just give us a... <url>", "SpotifyCares", brands)
    assert cut == f"Just give us a... {link}"
    assert [f.check for f in check_reply(cut, Context("thanks!", support_url=link))] == ["unfinished"]
