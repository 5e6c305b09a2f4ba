"""The shared CLI helpers print library text as text: brackets in it are not rich markup."""

from __future__ import annotations

import pytest
import typer

from binsort.cli._common import print_warnings, user_errors
from binsort.errors import BinsortError


def test_warnings_print_brackets_as_written(capsys):
    print_warnings(["x.ensemble[member 0] overlaps", "bottle [red].jpg"])
    err = capsys.readouterr().err
    assert "WARNING: x.ensemble[member 0] overlaps" in err
    assert "WARNING: bottle [red].jpg" in err
    assert len(err.strip().splitlines()) == 2


def test_user_errors_print_brackets_as_written(capsys):
    with pytest.raises(typer.Exit) as exit_info, user_errors():
        raise BinsortError("no such file: bottle [red].jpg")
    assert exit_info.value.exit_code == 1
    assert "error: no such file: bottle [red].jpg" in capsys.readouterr().err
