"""Tokenization, fielded BM25 and the splitting of multi-intent requests."""

from __future__ import annotations

import numpy as np
import pytest

from orchestra.retrieval.intents import split_intents
from orchestra.retrieval.lexical import FieldedBM25, split_identifier, tokenize


class TestTokenize:
    def test_identifiers_are_split_into_words(self) -> None:
        assert split_identifier("getHealthWorkforce") == "get Health Workforce"
        assert split_identifier("PDF&URLTool") == "PDF URL Tool"
        assert split_identifier("send_email-v2") == "send email v2"

    def test_stop_words_and_request_filler_are_dropped_and_words_stemmed(self) -> None:
        """'Can you help me …' carries no information about which tool fits."""
        assert tokenize("Can you help me converting the invoices?") == ["convert", "invoic"]

    def test_a_camel_case_name_matches_its_words(self) -> None:
        assert set(tokenize("sendEmailReceipt")) == set(tokenize("send the email receipts"))


class TestFieldedBM25:
    def test_scores_follow_term_matches_and_field_weights(self) -> None:
        docs = [
            {"name": tokenize("send_email"), "description": tokenize("Send a message")},
            {
                "name": tokenize("get_weather"),
                "description": tokenize("Forecast for a city; email alerts"),
            },
            {"name": tokenize("noop"), "description": tokenize("does nothing")},
        ]
        bm = FieldedBM25(docs, weights={"name": 2.0, "description": 1.0})
        s = bm.scores(tokenize("email"))
        assert s[0] > s[1] > s[2] == 0  # the name field outweighs the description

    def test_unknown_and_empty_queries_score_zero(self) -> None:
        bm = FieldedBM25([{"name": ["a"]}, {"name": ["b"]}])
        assert not np.any(bm.scores(["zzz"]))
        assert not np.any(bm.scores([]))


class TestSplitIntents:
    @pytest.mark.parametrize(
        ("request_text", "parts"),
        [
            (
                "convert the amount, then email the receipt",
                ["convert the amount", "email the receipt"],
            ),
            (
                "Look up the customer. After that, send them an SMS with the total",
                ["Look up the customer", "send them an SMS with the total"],
            ),
            (
                "I want to know the latest news about Tesla and how it has impacted the stock market.",
                [
                    "I want to know the latest news about Tesla",
                    "how it has impacted the stock market",
                ],
            ),
            (
                "Translate this text and additionally summarize it",
                ["Translate this text", "summarize it"],
            ),
        ],
    )
    def test_requests_with_several_actions_are_split(
        self, request_text: str, parts: list[str]
    ) -> None:
        assert split_intents(request_text) == parts

    @pytest.mark.parametrize(
        "request_text",
        [
            "Find salt and pepper recipes",
            "Can I find any peer-reviewed papers?",
            "weather in Paris",
        ],
    )
    def test_single_intent_requests_stay_whole(self, request_text: str) -> None:
        """'and' between two short phrases is a list of things, not two tasks."""
        assert split_intents(request_text) == [request_text]

    def test_fragments_without_content_are_merged_and_parts_capped(self) -> None:
        many = ". ".join(f"Then do task number {i} with care" for i in range(12))
        parts = split_intents(many, max_parts=4)
        assert len(parts) == 4
        assert "task number 11" in parts[-1]
        # "Then." has no content word: it is a connective, dropped with its punctuation
        assert split_intents("Book it. Then.") == ["Book it"]
        assert split_intents("   ") == []
