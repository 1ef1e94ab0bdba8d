"""Full-text search over assets, columns and their descriptions: an in-memory inverted index.

Words are lower-cased; text in Japanese (or any script without spaces) is indexed as overlapping
character pairs, so ``売上`` finds ``日別売上``. Every query word must match (the last one as a
prefix, so results come while typing); a match in a name weighs more than one in a description.
Building the index for 5,000 assets takes well under a second and a query a millisecond or two.

Typos are forgiven: a Latin word (three letters or more) that matches nothing, not even as a prefix, is
looked up again among the words (with the same first letter) whose beginning is within one edit of it (two
from six letters on), with
``rapidfuzz``'s edit distance — ``ordr`` finds ``orders``, ``custmer`` finds ``customers``. Such a match
weighs half as much as an exact one.
"""

from __future__ import annotations

import bisect
import heapq
import re
from collections.abc import Iterable
from dataclasses import dataclass

from rapidfuzz import process
from rapidfuzz.distance import Levenshtein

from kiban.catalog.dictionary import AssetDoc

_WORD = re.compile(r"[a-z0-9]+|[^\sa-z0-9\W_]+", re.IGNORECASE)
MAX_WORDS = 8
FUZZY = 0.5  # the weight of a match found by forgiving a typo
WEIGHTS = {"key": 8.0, "column": 4.0, "tag": 3.0, "owner": 2.0, "description": 1.0, "column_description": 0.8}


@dataclass(frozen=True)
class Hit:
    asset: str
    column: str | None  # None: the asset itself
    score: float
    text: str  # the description that matched (or the name)


def tokens(text: str) -> list[str]:
    out: list[str] = []
    for word in _WORD.findall(text.lower()):
        if word.isascii():
            out.append(word)
            parts = [p for p in word.split("_") if p]
            if len(parts) > 1:
                out.extend(parts)
        elif len(word) == 1:
            out.append(word)
        else:
            out.extend(word[i:i + 2] for i in range(len(word) - 1))
    return out


def _query_tokens(text: str) -> list[str]:
    out: list[str] = []
    for word in re.findall(r"[a-z0-9]+|[^\sa-z0-9\W_]+", text.lower()):
        if word.isascii() or len(word) == 1:
            out.append(word)
        else:
            out.extend(word[i:i + 2] for i in range(len(word) - 1))
    return out


class SearchIndex:
    """Documents are assets and their columns; ``search`` returns the best hits first."""

    def __init__(self, assets: Iterable[AssetDoc]) -> None:
        self.docs: list[tuple[str, str | None, str]] = []
        self.postings: dict[str, dict[int, float]] = {}
        for asset in assets:
            self._add(asset.key, None, asset.description or asset.key, [
                (asset.key.replace(".", " ") + " " + asset.key, "key"), (asset.description, "description"),
                (" ".join(asset.tags), "tag"), (asset.owner or "", "owner")])
            for column in asset.columns:
                self._add(asset.key, column.name, column.description or column.name, [
                    (column.name, "column"), (column.description, "column_description"),
                    (" ".join(column.tags) + (" pii" if column.pii else ""), "tag"),
                    (asset.key.replace(".", " "), "column_description")])
        self.words = sorted(self.postings)
        self._tier_cache: dict[str, list[tuple[float, set[int]]]] = {}
        # the words by first letter, and cut to n letters, for typo-tolerant prefixes
        self._heads: dict[tuple[str, int], tuple[list[str], list[str]]] = {}

    def near(self, word: str) -> list[tuple[str, float]]:
        """Words of the index that begin within one edit of ``word`` (two from six letters on). The first letter
        is taken as typed: it keeps the search to a few thousand words even on a large index."""
        if len(word) < 3 or not word.isascii():
            return []
        most = 1 if len(word) < 6 else 2
        found: dict[str, float] = {}
        for size in (len(word) - 1, len(word), len(word) + 1):
            cut = self._heads.get((word[0], size))
            if cut is None:
                start = bisect.bisect_left(self.words, word[0])
                end = bisect.bisect_left(self.words, chr(ord(word[0]) + 1))
                same = self.words[start:end]
                cut = self._heads[(word[0], size)] = (same, [w[:size] for w in same])
            for _head, _dist, i in process.extract(word, cut[1], scorer=Levenshtein.distance, score_cutoff=most,
                                                   limit=None):
                found[cut[0][i]] = FUZZY
        return sorted(found.items())

    def _add(self, asset: str, column: str | None, text: str, fields: list[tuple[str, str]]) -> None:
        doc = len(self.docs)
        self.docs.append((asset, column, text))
        for value, kind in fields:
            for token in tokens(value):
                weights = self.postings.setdefault(token, {})
                weights[doc] = weights.get(doc, 0.0) + WEIGHTS[kind]

    def _expand(self, word: str, prefix: bool) -> list[tuple[str, float]]:
        """The tokens a query word matches, each with its factor (an exact word counts fully)."""
        if not prefix:
            return [(word, 1.0)] if word in self.postings else []
        lists = []
        for i in range(bisect.bisect_left(self.words, word), len(self.words)):
            token = self.words[i]
            if not token.startswith(word):
                break
            lists.append((token, 1.0 if token == word else 0.7))
        return lists

    def _tiers(self, token: str) -> list[tuple[float, set[int]]]:
        """A token's documents grouped by weight, heaviest first (weights take a handful of values)."""
        found = self._tier_cache.get(token)
        if found is None:
            groups: dict[float, set[int]] = {}
            for doc, weight in self.postings[token].items():
                groups.setdefault(weight, set()).add(doc)
            found = sorted(groups.items(), key=lambda item: -item[0])
            self._tier_cache[token] = found
        return found

    def _word_tiers(self, lists: list[tuple[str, float]]) -> list[tuple[float, set[int]]]:
        """Per document the best weight any matching token gives it, as tiers (set operations only)."""
        merged: dict[float, set[int]] = {}
        for token, factor in lists:
            for weight, docs in self._tiers(token):
                merged.setdefault(round(weight * factor, 6), set()).update(docs)
        tiers: list[tuple[float, set[int]]] = []
        seen: set[int] = set()
        for weight in sorted(merged, reverse=True):
            docs = merged[weight] - seen
            if docs:
                tiers.append((weight, docs))
                seen |= docs
        return tiers

    def search(self, text: str, limit: int = 20) -> list[Hit]:
        """The best ``limit`` documents matching every word of ``text`` (the last one, or any ASCII word, as a
        prefix). Scores add up per word; documents are ranked by whole tiers of equal score, using only set
        operations, so a query over tens of thousands of documents stays in the low milliseconds."""
        words = _query_tokens(text)
        if not words:
            return []
        matched = [self._expand(word, prefix=word.isascii()) or self.near(word) for word in words]
        if not all(matched) or len(words) > MAX_WORDS:
            return []
        combos: list[tuple[float, set[int]]] | None = None
        for lists in sorted(matched, key=len):
            tiers = self._word_tiers(lists)
            combos = tiers if combos is None else [(score + weight, both) for score, docs in combos
                                                   for weight, docs2 in tiers if (both := docs & docs2)]
            if not combos:
                return []
        assert combos is not None
        ranked: list[tuple[int, float]] = []
        for score, docs in sorted(combos, key=lambda item: -item[0]):
            ranked.extend((doc, score) for doc in heapq.nsmallest(limit - len(ranked), docs))
            if len(ranked) >= limit:
                break
        ranked.sort(key=lambda item: (-item[1], item[0]))
        return [Hit(self.docs[d][0], self.docs[d][1], round(s, 3), self.docs[d][2]) for d, s in ranked[:limit]]
