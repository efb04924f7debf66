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


def test_a_link_to_read_gets_the_help_site_and_a_link_to_reach_the_contact_page():
    """In the brands' real replies "the steps here: <url>" was a help article: the contact page would mislabel it."""
    brands = {"SpotifyCares": BrandParams(support_url="https://support.spotify.com/contact-spotify-support/",
                                          help_url="https://support.spotify.com"),
              "ChipotleTweets": BrandParams(support_url="https://www.chipotle.com/contact-us")}
    contact, helps = brands["SpotifyCares"].support_url, brands["SpotifyCares"].help_url
    for to_read in ("Just follow the steps here: <url> Let us know how it goes", "More info here: <url>",
                    "This article should help: <url>", "Let's back up and update: <url>"):
        assert serve(to_read, "SpotifyCares", brands) == to_read.replace("<url>", helps)
    for to_reach in ("Send us a note at <url>", "Please reach out to us for more information: <url>",
                     "DM us the details here <url>", "Sorry about that! Write to us here: <url>",
                     "Here are the steps. <url>"):  # the clause before the link is its own sentence
        assert serve(to_reach, "SpotifyCares", brands) == to_reach.replace("<url>", contact)
    # a brand without a help site: its contact page, whatever the words
    chipotle = brands["ChipotleTweets"].support_url
    assert serve("Follow the steps here: <url>", "ChipotleTweets", brands) == f"Follow the steps here: {chipotle}"


def test_a_link_the_words_give_to_someone_else_is_never_the_brands():
    """A past reply's "You can contact tunecore here: <url>" linked tunecore's page: the brand's would be mislabelled,
    so the sentence goes, as for any mask that cannot be filled."""
    brands = {"SpotifyCares": BrandParams(support_url="https://support.spotify.com/contact-spotify-support/")}
    link = brands["SpotifyCares"].support_url
    assert serve("Our friends at Artist Services can help with this. You can reach them at <url>", "SpotifyCares",
                 brands) == "Our friends at Artist Services can help with this."
    assert serve("Sorry! You can contact tunecore here: <url>", "SpotifyCares", brands) == "Sorry!"
    for ours in ("Please contact us here: <url>", "Please contact support here: <url>",
                 "Please reach out to us with our contact information: <url>", "You can reach us at <url>"):
        assert serve(ours, "SpotifyCares", brands) == ours.replace("<url>", link)


SPOTIFY = {"SpotifyCares": BrandParams(support_url="https://support.spotify.com/contact-spotify-support/")}
LINK = SPOTIFY["SpotifyCares"].support_url


def spotify(text: str) -> str:
    return serve(text, "SpotifyCares", SPOTIFY)


def test_a_brand_agents_initials_copied_by_the_model_are_not_sent():
    assert spotify("We'll take a look backstage /JM <url>") == f"We'll take a look backstage {LINK}"
    assert spotify("Take a look /DM /BT <url>") == f"Take a look {LINK}"
    assert spotify("We'll take a look /N<url>") == f"We'll take a look {LINK}"
    assert spotify("Thanks for waiting! /JM") == "Thanks for waiting!"
    # a slash inside the text is no signature
    for kept in ("Go to Settings/General <url>", "Try the A/B option <url>", "Tap /AB then save <url>"):
        assert spotify(kept) == kept.replace("<url>", LINK)


def test_a_last_sentence_twitter_cut_is_not_sent_and_a_cut_reply_is_flagged():
    from supportagent.inference.checks import Context, check_reply

    assert spotify("No worries! Give us a shout if you need us again. We'll be... <url>") == \
        f"No worries! Give us a shout if you need us again. {LINK}"
    assert spotify("We can help. We’d be… <url> 🙂") == f"We can help. {LINK} 🙂"
    assert spotify("Got it! We'll take a look backstage / <url>") == f"Got it! We'll take a look backstage {LINK}"
    # an ellipsis inside the reply stays; a reply that is nothing but the cut stays too, and the checks flag it
    assert spotify("Hmm... that's odd. Can you DM us? <url>") == f"Hmm... that's odd. Can you DM us? {LINK}"
    cut = spotify("Just give us a... <url>")
    assert cut == f"Just give us a... {LINK}"
    assert [f.check for f in check_reply(cut, Context("thanks!", support_url=LINK))] == ["unfinished"]


def test_the_number_that_opens_a_brands_thread_is_not_sent():
    assert spotify("1: Thanks! It looks like it isn't available in your country. More info: <url>") == \
        f"Thanks! It looks like it isn't available in your country. More info: {LINK}"
    assert spotify("1/2 Thanks for waiting!") == "Thanks for waiting!"
    for kept in ("1 more thing: try a restart", "10:30 works for us", "1.5 GB is the limit"):
        assert spotify(kept) == kept


def test_a_link_nothing_in_the_reply_points_to_is_not_sent():
    """ "That's great! <url>": the brands' link there was a GIF or a picture; the contact page would answer a pleased
    customer with a place to complain. A link the reply offers (to reach, to read, help) keeps the brand's page."""
    brands = {"SpotifyCares": BrandParams(support_url="https://support.spotify.com/contact-spotify-support/",
                                          help_url="https://support.spotify.com")}
    for alone, sent in (("That's great! <url>", "That's great!"),
                        ("Awesome, that's what we like to hear! <url>", "Awesome, that's what we like to hear!"),
                        ("Thanks. Great detective work! 🙂 <url>", "Thanks. Great detective work!"),
                        ("No worries!  <url>", "No worries!"),
                        ("Glad we could help! <url>", "Glad we could help!")):
        assert serve(alone, "SpotifyCares", brands) == sent
    for offered in ("You're welcome! Let us know if you ever need us again. <url>",  # to reach
                    "Glad it worked! Tips: <url>",  # to read
                    "We're here to help! <url>", "We can help. <url>",  # help offered
                    "Got it. Let's meet in DM. We'll keep going from there. <url>",
                    "Thanks for the shout out <url>", "Enjoy!<url>",  # no full sentence before the link
                    "You're welcome! We're... <url> Have a great day"):  # words after it
        assert "https://support.spotify.com" in serve(offered, "SpotifyCares", brands)  # help site or contact page
