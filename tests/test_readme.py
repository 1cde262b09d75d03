"""README.md tells the truth: its two commands, its settings table."""

import re
import subprocess
import sys
import urllib.request
from pathlib import Path

from conftest import ServerProcess, fastwsgi_env

from fastwsgi.config import markdown_table

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def commands() -> list[str]:
    block = re.search(r"```sh\n(.*?)```", README, re.S)
    assert block, "README has no leading sh block"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_readme_leads_with_two_commands():
    first_block = README.index("```sh")
    assert README.index("```") == first_block, "the commands come first"
    cmds = commands()
    assert len(cmds) == 2
    assert "pip install ." in cmds[0] and "fastwsgi examples.hello:app" in cmds[0]
    assert cmds[1] == "scripts/test"
    assert (ROOT / "scripts" / "test").stat().st_mode & 0o111


def test_readme_settings_table_is_generated():
    table = re.search(r"<!-- settings-table-begin -->\n(.*?)<!-- settings-table-end -->",
                      README, re.S)
    assert table and table.group(1) == markdown_table()


def test_example_app_serves_as_the_readme_says():
    # The same app spec, from the repository root, with the installed server.
    server = ServerProcess("examples.hello:app", cwd=ROOT)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/") as r:
            assert r.status == 200
            assert r.read() == b"Hello, World!\n"
    finally:
        server.stop()
        server.cleanup()


def test_help_lists_every_setting():
    out = subprocess.run([sys.executable, "-c", "import sys; from fastwsgi.cli import main;"
                          " sys.argv=['fastwsgi','--help']; main()"],
                         capture_output=True, text=True, cwd="/", env=fastwsgi_env())
    for row in markdown_table().splitlines()[2:]:
        option = row.split("|")[2].strip()
        assert option == "APP, the argument" or option.strip("`") in out.stdout, row
