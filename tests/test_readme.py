"""README says what is true: its two commands come first, its Python example runs as
written, its command line exists flag for flag, and its links lead to files.

The benchmark tables live in docs/benchmarks.md (tests/test_docs.py checks them)."""

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def test_readme_starts_with_the_two_commands():
    text = README.read_text()
    first = re.search(r"```sh\n(.*?)```", text, flags=re.S)
    assert first and text.index("```") == first.start(), "README's first block is not sh"
    commands = [line.split("#")[0].strip() for line in first.group(1).strip().splitlines()]
    assert commands == ["make demo", "make test"]
    makefile = (ROOT / "Makefile").read_text()
    for target in ("demo", "test", "docs"):
        assert re.search(rf"^{target}:", makefile, flags=re.M), f"no make {target}"


def test_readme_example_runs():
    text = README.read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "README.md has no python example"
    example = blocks[0]
    assert len(example.strip().splitlines()) <= 12
    namespace: dict = {}
    exec(compile(example, str(README), "exec"), namespace)  # noqa: S102
    # the example ends by checking its own result against the dense SVD
    assert namespace["err"] < 1e-4


def test_readme_command_line_exists(capsys):
    """Every command of README's command-line block is a subcommand, and every flag it
    shows is one of that subcommand's flags."""
    from jacscope.cli import main

    text = README.read_text()
    section = text[text.index("## Command line") :]
    block = re.search(r"```\n(.*?)```", section, flags=re.S).group(1)
    usages: dict[str, set[str]] = {}
    for line in block.splitlines():
        match = re.match(r"jacscope ([a-z-]+)(.*)", line.split("#")[0])
        assert match, f"not a jacscope command: {line!r}"
        usages.setdefault(match.group(1), set()).update(re.findall(r"--[a-z0-9-]+", line))
    for command, flags in usages.items():
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_info:
            main([command, "--help"])
        assert exit_info.value.code == 0, f"jacscope {command} --help failed"
        help_text = capsys.readouterr().out
        for flag in flags:
            assert re.search(rf"{flag}\b", help_text), f"jacscope {command} has no {flag}"


def test_readme_links_lead_to_files():
    text = README.read_text()
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    local = [link for link in links if not re.match(r"[a-z]+://", link)]
    assert any(link.startswith("docs/") for link in local), "README links to no docs page"
    for link in local:
        assert (ROOT / link).exists(), f"README links to {link}, which does not exist"
