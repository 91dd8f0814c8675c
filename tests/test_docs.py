"""README.md stays a newcomer's page and every link in it and in docs/ leads somewhere: a file that exists and, for a
Markdown page, a heading that does."""

from __future__ import annotations

import posixpath
import re

from tests.documentation import EVERY_PAGE, README, REPO

README_MOST_LINES = 250
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def prose(text: str) -> str:
    """The text outside fenced code blocks and inline code, where a link or a heading is one."""
    outside = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", outside)


def anchors(text: str) -> set[str]:
    """The anchors GitHub gives the headings of a page: lower case, punctuation dropped, spaces as hyphens, and a
    repeated one numbered (`-1`, `-2`)."""
    seen: dict[str, int] = {}
    found = set()
    for heading in re.findall(r"^#{1,6} (.+)$", re.sub(r"^```.*?^```", "", text, flags=re.S | re.M), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def local_links(page: str) -> list[tuple[str, str]]:
    """(path from the repository root, anchor or "") of every link on `page` that stays in the repository."""
    links = []
    for target in LINK.findall(prose(EVERY_PAGE[page])):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        links.append((posixpath.normpath(posixpath.join(posixpath.dirname(page), path)) if path else page, anchor))
    return links


def test_readme_is_a_newcomers_page() -> None:
    lines = len(README.splitlines())
    assert lines <= README_MOST_LINES, f"README.md has {lines} lines; move the detail to docs/"


def test_every_link_in_readme_and_docs_resolves_to_a_file_and_heading() -> None:
    broken = []
    for page in EVERY_PAGE:
        for path, anchor in local_links(page):
            if not (REPO / path).exists():
                broken.append(f"{page}: {path} does not exist")
            elif anchor and path.endswith(".md") and anchor not in anchors((REPO / path).read_text()):
                broken.append(f"{page}: {path} has no heading #{anchor}")
    assert broken == []


def test_every_page_in_docs_is_reached_from_the_readme() -> None:
    reached, queue = {"README.md"}, ["README.md"]
    while queue:
        for path, _ in local_links(queue.pop()):
            if path in EVERY_PAGE and path not in reached:
                reached.add(path)
                queue.append(path)
    assert set(EVERY_PAGE) - reached == set()


def test_the_anchors_follow_githubs_rules() -> None:
    page = "# The sandbox, for your own tests\n```sh\n# not a heading\n```\n## `Tools`: results\n## Limits\n## Limits\n"
    assert anchors(page) == {"the-sandbox-for-your-own-tests", "tools-results", "limits", "limits-1"}
