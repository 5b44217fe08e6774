# Copyright (c) Res2Net-MMDet contributors. All rights reserved.
"""README.md and docs/*.md: relative links and their anchors resolve, the
README stays short and opens with the two commands."""
import re
from pathlib import Path
from typing import Iterator, List, Tuple

import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / 'README.md'
DOCS = sorted((REPO / 'docs').glob('*.md'))
PAGES = [README, *DOCS]
MAX_README_LINES = 250

FENCE = re.compile(r'^\s*(```|~~~)')
HEADING = re.compile(r'^(#{1,6})\s+(.*?)\s*#*\s*$')
CODE_SPAN = re.compile(r'`[^`\n]*`')
LINK = re.compile(r'!?\[([^\]]*)\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)')
EXTERNAL = ('http://', 'https://', 'mailto:')


def _prose(text: str) -> Iterator[Tuple[int, str]]:
    """The lines of a Markdown text outside fenced code blocks.

    Args:
        text: The Markdown text.

    Yields:
        ``(line number, line)`` for each line that is not inside a fenced
        code block (fences may be indented, as inside list items).
    """
    in_fence = False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        if not in_fence:
            yield number, line


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading.

    Link syntax keeps its text; the text is lower-cased; everything but
    letters, digits, ``_``, ``-`` and spaces (any script: ``\\w`` is
    Unicode-aware) is dropped, backticks and other punctuation included;
    each space becomes ``-``.

    Args:
        heading: The heading's text, without the leading ``#``.

    Returns:
        The anchor, without ``#``.
    """
    text = LINK.sub(r'\1', heading).strip().lower()
    text = re.sub(r'[^\w\- ]', '', text)
    return text.replace(' ', '-')


def anchors(page: Path) -> List[str]:
    """The anchors of every heading of a page, in order.

    A repeated anchor gets ``-1``, ``-2``, ... as on GitHub.

    Args:
        page: A Markdown file.

    Returns:
        The anchors, without ``#``.
    """
    seen, result = {}, []
    for _, line in _prose(page.read_text(encoding='utf-8')):
        match = HEADING.match(line)
        if not match:
            continue
        anchor = slug(match.group(2))
        count = seen.get(anchor, 0)
        seen[anchor] = count + 1
        result.append(anchor if count == 0 else f'{anchor}-{count}')
    return result


def relative_links(page: Path) -> Iterator[Tuple[int, str]]:
    """The relative link targets of a page, outside code.

    Args:
        page: A Markdown file.

    Yields:
        ``(line number, target)`` of each ``[text](target)`` and
        ``![alt](target)`` that is not an http(s) or mailto link.
    """
    for number, line in _prose(page.read_text(encoding='utf-8')):
        for match in LINK.finditer(CODE_SPAN.sub('``', line)):
            target = match.group(2)
            if not target.startswith(EXTERNAL):
                yield number, target


def _name(page: Path) -> str:
    return str(page.relative_to(REPO))


def test_the_slugs_are_githubs():
    assert slug('Reference results (COCO)') == 'reference-results-coco'
    assert slug('Multi-GPU and Slurm') == 'multi-gpu-and-slurm'
    assert slug("mmdet's `DetInferencer`") == 'mmdets-detinferencer'
    assert slug('Größe und Maße ×2') == 'größe-und-maße-2'
    assert slug('[Speed](speed.md) of snake_case') == 'speed-of-snake_case'


@pytest.mark.parametrize('page', PAGES, ids=_name)
def test_relative_links_and_anchors_resolve(page):
    problems = []
    for number, target in relative_links(page):
        path, _, anchor = target.partition('#')
        file = (page.parent / path).resolve() if path else page
        where = f'{_name(page)}:{number}: ({target})'
        if not file.exists():
            problems.append(f'{where}: no {file}')
        elif anchor and file.suffix == '.md' and \
                anchor not in anchors(file):
            problems.append(f'{where}: no heading #{anchor} in '
                            f'{file.relative_to(REPO)}')
    assert not problems, '\n'.join(problems)


def test_readme_is_short_and_opens_with_the_two_commands():
    text = README.read_text(encoding='utf-8')
    assert len(text.splitlines()) < MAX_README_LINES
    block = text.split('```', 2)[1]
    commands = [
        line.split('#', 1)[0].strip() for line in block.splitlines()[1:]
    ]
    assert [c for c in commands if c] == ['make demo', 'make test']


def test_the_readme_links_every_docs_page():
    linked = {(README.parent / target.partition('#')[0]).resolve()
              for _, target in relative_links(README)}
    assert [_name(page) for page in DOCS if page not in linked] == []


@pytest.mark.parametrize('page', DOCS, ids=_name)
def test_a_docs_page_opens_with_its_title_and_what_it_is(page):
    title, blank, what, *_ = page.read_text(encoding='utf-8').splitlines()
    assert title.startswith('# ') and title[2:].strip()
    assert blank == '' and what.strip() and not what.startswith('#')
